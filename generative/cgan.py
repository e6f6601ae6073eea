"""`ConditionalGAN`: class-conditional G(z, y) and D(x, y) (Mirza & Osindero 2014).

The networks take the integer labels as a second argument and embed them themselves (see
`generative.models.ConditionalGenerator` / `ConditionalDiscriminator`). Batches are
`(images, labels)`; the fakes of a batch are generated for that batch's labels, so the
discriminator judges real and fake samples of the same classes (and the WGAN-GP penalty
interpolates between samples that share a label).
"""

from __future__ import annotations

from typing import Any

import numpy

import engine
from engine import Tensor

from .gan import GAN, _check_positive_int, _one_score_each
from .trainer import evaluating

__all__ = ["ConditionalGAN"]


class ConditionalGAN(GAN):
    """`ConditionalGAN(generator, discriminator, latent_dim, num_classes, loss=...)`.

    `generator(z, y)` maps latents (N, latent_dim) and labels (N,) to images;
    `discriminator(x, y)` scores image/label pairs. The keyword options (loss, lr, betas,
    n_critic, gp_weight, device, seed, out_dir, progress) are `GAN`'s.
    """

    def __init__(
        self, generator, discriminator, latent_dim: int, num_classes: int, **options: Any
    ) -> None:
        _check_positive_int("num_classes", num_classes)
        self.num_classes = num_classes
        # Preview grid: one row per class (row r asks for class r), ten samples each.
        self.preview_nrow = 10
        self.preview_count = 10 * num_classes
        super().__init__(generator, discriminator, latent_dim, **options)
        # The same latents every epoch.
        self.fixed_labels = self._grid_labels(self.preview_count)

    def _grid_labels(self, n: int) -> Tensor:
        rows = numpy.arange(n) // self.preview_nrow
        return engine.tensor(rows % self.num_classes, dtype="int64", device=self.device)

    def _split(self, batch: tuple) -> tuple[Tensor, Tensor]:
        if len(batch) < 2:
            raise ValueError("ConditionalGAN needs (images, labels) batches, got one tensor")
        return batch[0], self._check_labels(batch[1], batch[0].shape[0], check_range=False)

    def _generate(self, z: Tensor, cond: Tensor) -> Tensor:
        return self.generator(z, cond)

    def _discriminate(self, x: Tensor, cond: Tensor) -> Tensor:
        return _one_score_each(self.discriminator(x, cond), x)

    def _check_labels(self, labels: Any, n: int, check_range: bool = True) -> Tensor:
        """Labels as int64 (n,) on the device; the range check syncs, so training skips it."""
        labels = labels if isinstance(labels, Tensor) else engine.tensor(numpy.asarray(labels))
        if labels.ndim != 1 or labels.shape[0] != n or labels.dtype.kind not in "iu":
            raise ValueError(
                f"labels must be {n} integers shaped ({n},), got {labels.dtype} {labels.shape}"
            )
        if check_range:
            lo, hi = int(labels.min().item()), int(labels.max().item())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{lo}, {hi}]")
        return labels.to(self.device).to("int64")

    # ---------------------------------------------------------------------------------------
    # Sampling

    def generate(self, z: Tensor, labels: Any) -> Tensor:
        """G(z, y) in eval mode without a graph."""
        z = self._check_latents(z)
        labels = self._check_labels(labels, z.shape[0])
        with evaluating(self.generator):
            return self._generate(z, labels)

    def sample(self, n: int, labels: Any = None) -> Tensor:
        """n images of the given classes (labels: an int, or n ints; default: cycling 0, 1, ...)."""
        _check_positive_int("n", n)
        if labels is None:
            labels = numpy.arange(n) % self.num_classes
        elif isinstance(labels, int):
            labels = engine.full((n,), labels, dtype="int64", device=self.device)
        return self.generate(self.noise(n), labels)

    def preview(self) -> Tensor:
        return self.generate(self.fixed_z, self.fixed_labels)

    def interpolate(self, z0: Tensor, z1: Tensor, steps: int = 8, labels: Any = 0) -> Tensor:
        """As `GAN.interpolate`, with the class held fixed (an int or one label per pair)."""
        z = self._interpolated_latents(z0, z1, steps)
        if isinstance(labels, int):
            labels = engine.full((z.shape[0],), labels, dtype="int64", device=self.device)
        else:
            labels = self._check_labels(labels, z.shape[0] // steps)
            labels = labels.unsqueeze(1).expand(labels.shape[0], steps).reshape(-1)
        return self.generate(z, labels)

    def config(self) -> dict:
        return {**super().config(), "num_classes": self.num_classes}

    def extra_state(self) -> dict:
        return {**super().extra_state(), "fixed_labels": self.fixed_labels}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if "fixed_labels" in state:
            self.fixed_labels = state["fixed_labels"].to(self.device)
