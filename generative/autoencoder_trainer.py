"""`AutoencoderTrainer`: trains an `Autoencoder` or a `VAE` on the `Trainer` base."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy

import engine
import optimizers
from engine import Tensor

from .autoencoder import Autoencoder
from .trainer import Trainer

__all__ = ["AutoencoderTrainer"]


class AutoencoderTrainer(Trainer):
    """Trains an `Autoencoder` (or a `VAE`) with Adam on `model.training_losses(x)["loss"]`.

    After each epoch: the test metrics (`test_<name>` for each training loss, e.g.
    `test_neg_elbo` for a VAE) when `test_data` is given, and for a plain autoencoder a refit of
    the latent Gaussian on the training images, so the per-epoch sample grid is drawn from it.
    `architecture` (JSON-able) is stored in checkpoints so `tensortape sample` can rebuild the
    model; `task` names the CLI verb that trained it.
    """

    def __init__(
        self,
        model: Autoencoder,
        lr: float = 1e-3,
        test_data: Any = None,
        task: str = "ae",
        architecture: dict | None = None,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        self.model = model.to(self.device)
        self.lr = lr
        self.test_data = test_data
        self.task = task
        self.checkpoint_meta = {"task": task}  # `tensortape sample` dispatches on it
        self.architecture = dict(architecture or {})
        self.networks = {"model": self.model}
        self.optimizers = {"model": optimizers.Adam(self.model.parameters(), lr=lr)}
        self.summary: dict[str, Any] = {}  # final numbers, written at the top of metrics.json
        self._fit_data: Any = None
        self.fixed_eps: Tensor | None = None

    @property
    def is_vae(self) -> bool:
        return hasattr(self.model, "elbo")

    def fit(self, loader: Iterable, epochs: int) -> dict:
        # A plain autoencoder refits its latent Gaussian on the training images, in order.
        dataset = getattr(loader, "dataset", None)
        self._fit_data = dataset if dataset is not None else loader
        return super().fit(loader, epochs)

    def train_step(self, batch: tuple) -> dict[str, Tensor]:
        opt = self.optimizers["model"]
        losses = self.model.training_losses(batch[0])
        opt.zero_grad()
        self.backward(losses["loss"])
        self.step(opt)
        return {k: v.detach() for k, v in losses.items()}

    def epoch_metrics(self) -> dict[str, float]:
        if not self.is_vae and self._fit_data is not None:
            self.model.fit_latent_gaussian(self._fit_data)
        if self.test_data is None:
            return {}
        tests = self.model.evaluate(self.test_data)
        if self.is_vae:
            tests["neg_elbo"] = tests.pop("loss")
        return {f"test_{k}": v for k, v in tests.items()}

    def _eps(self) -> Tensor:
        dim = self.model.latent_dim
        if self.fixed_eps is None or self.fixed_eps.shape[1] != dim:
            gen = numpy.random.default_rng(1234 if self.seed is None else self.seed)
            eps = gen.standard_normal((self.preview_count, dim)).astype(numpy.float32)
            self.fixed_eps = engine.tensor(eps, device=self.device)
        return self.fixed_eps

    def sample(self, n: int) -> Tensor:
        return self.model.sample(n)

    def preview(self) -> Tensor:
        """The same latent noise every epoch (decoded through the fitted Gaussian for an AE)."""
        if not self.is_vae and self.model.latent_loc is None:
            raise RuntimeError("the autoencoder has no latent Gaussian yet: train one epoch first")
        return self.model.generate(self._eps())

    def config(self) -> dict:
        return {"task": self.task, "lr": self.lr, **self.architecture}

    def extra_state(self) -> dict:
        return {"summary": self.summary}

    def load_extra_state(self, state: dict) -> None:
        self.summary = dict(state.get("summary") or {})

    def metrics(self) -> dict:
        return {**self.summary, **super().metrics()}
