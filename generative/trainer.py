"""`Trainer`: the base every generative model of tensortape trains with.

A subclass builds its networks and optimizers, registers them by name in `self.modules` and
`self.optimizers` (that is all checkpointing needs), and implements two methods:

- `train_step(batch) -> dict`: one update on one batch (a tuple of Tensors already on
  `self.device`); returns the losses as floats (or 0-d Tensors) by name;
- `sample(n) -> Tensor`: `n` generated images, shaped (n, C, H, W) with values in [0, 1].

The base class supplies the rest:

- `train(loader, epochs)`: trains until `self.epoch == epochs` (a resumed trainer continues where
  its checkpoint stopped), with a tqdm bar showing the running mean of each loss;
- after every epoch, when `out_dir` is set: `samples.png` (and `samples/epoch_NNNN.png`) from
  `preview()`, `metrics.json` with the per-epoch loss histories, `checkpoint.npz`;
- `save_checkpoint(path)` / `load_checkpoint(path)`: modules, optimizers, the engine's random
  state, the loader's shuffling state, the epoch/step counters and the histories, through
  `engine.save`/`engine.load`; a run resumed from a checkpoint continues bit-exactly (cpu);
- `device="auto"|"cpu"|"cuda"` and `seed`.

Optional hooks: `preview()` (images for the per-epoch grid; default `sample(64)`), `config()`
(JSON-able hyper-parameters for checkpoints and metrics.json), `extra_state()` /
`load_extra_state(state)` (anything else to checkpoint), `epoch_metrics()` (extra per-epoch
numbers for the histories, e.g. a judge's score). `checkpoint_meta` (a dict) adds top-level
checkpoint entries, e.g. the CLI's `{"task": "gan"}`.

A minimal subclass::

    class AE(Trainer):
        def __init__(self, encoder, decoder, lr=1e-3, **kw):
            super().__init__(**kw)  # device, seed, out_dir, progress
            self.enc, self.dec = encoder.to(self.device), decoder.to(self.device)
            self.modules = {"encoder": self.enc, "decoder": self.dec}
            params = [*self.enc.parameters(), *self.dec.parameters()]
            self.optimizers = {"adam": optimizers.Adam(params, lr=lr)}

        def train_step(self, batch):
            x = batch[0]
            loss = F.mse_loss(self.dec(self.enc(x)), x)
            self.optimizers["adam"].zero_grad()
            loss.backward()
            self.optimizers["adam"].step()
            return {"loss": loss.item()}

        def sample(self, n):
            with evaluating(self.dec):
                return self.dec(engine.randn(n, 8, device=self.device))

    AE(enc, dec, out_dir="runs/ae").train(loader, epochs=10)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import engine
from dataio.files import atomic_write
from engine import Tensor

__all__ = ["Trainer", "resolve_device", "frozen", "evaluating", "rng_state_preserved"]

CHECKPOINT_FORMAT = "tensortape-trainer"
CHECKPOINT_VERSION = 1


def resolve_device(spec: Any = "auto") -> engine.Device:
    """`"auto"` (or None): cuda when a GPU is usable, else cpu; otherwise `engine.device(spec)`."""
    if spec is None or spec == "auto":
        return engine.device("cuda" if engine.cuda.is_available() else "cpu")
    return engine.device(spec)


@contextmanager
def frozen(*modules) -> Iterator[None]:
    """Turn off `requires_grad` of every parameter of `modules`; restore each flag afterwards.

    Used for the generator step of a GAN: gradients flow through the discriminator to the
    generator but are not accumulated into the discriminator's parameters.
    """
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@contextmanager
def evaluating(*modules) -> Iterator[None]:
    """Eval mode and no grad for `modules` (sampling); restores each module's training flags."""
    modes = [[m.training for m in module.modules()] for module in modules]
    for module in modules:
        module.eval()
    try:
        with engine.no_grad():
            yield
    finally:
        for module, flags in zip(modules, modes, strict=True):
            for m, flag in zip(module.modules(), flags, strict=True):
                object.__setattr__(m, "training", flag)


@contextmanager
def rng_state_preserved() -> Iterator[None]:
    """Restore the engine's whole random state afterwards: evaluation and pictures drawn between
    epochs or after training leave the stream a resumed run continues from untouched."""
    state = engine.random.get_rng_state()
    try:
        yield
    finally:
        engine.random.set_rng_state(state)


@contextmanager
def _cpu_rng_preserved() -> Iterator[None]:
    """Restore the engine's cpu generator afterwards (without re-creating the cuda ones)."""
    gen = engine.random.generator(engine.device("cpu"))
    state = gen.bit_generator.state
    try:
        yield
    finally:
        gen.bit_generator.state = state


def _float(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


class Trainer:
    """Base class of the generative trainers (see the module docstring for the contract)."""

    #: Number of images in the per-epoch sample grid (and its row length).
    preview_count: int = 64
    preview_nrow: int = 8

    def __init__(
        self,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        self.device = resolve_device(device)
        self.seed = seed
        if seed is not None:
            engine.manual_seed(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.modules: dict[str, Any] = {}  # name -> layers.Module, checkpointed
        self.optimizers: dict[str, Any] = {}  # name -> optimizers.Optimizer, checkpointed
        self.epoch = 0  # epochs completed
        self.global_step = 0  # train_step calls completed
        self.history: dict[str, list[float | None]] = {"epoch": []}
        # JSON-able entries stored at the top level of every checkpoint, e.g. the CLI's
        # {"task": "gan", "dataset": "digits"}, so a checkpoint says how to rebuild its trainer.
        self.checkpoint_meta: dict[str, Any] = {}
        self._loader_state: dict | None = None  # from a checkpoint, for the next train()

    # ---------------------------------------------------------------------------------------
    # The subclass contract

    def train_step(self, batch: tuple) -> dict[str, float]:
        """One update on `batch` (Tensors on `self.device`); returns losses by name."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_step(batch)")

    def sample(self, n: int) -> Tensor:
        """`n` generated images (n, C, H, W) in [0, 1] on `self.device`."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(n)")

    def preview(self) -> Tensor:
        """Images for the per-epoch grid (override for fixed latents or labelled rows)."""
        return self.sample(self.preview_count)

    def config(self) -> dict:
        """JSON-able hyper-parameters; stored in checkpoints and metrics.json."""
        return {}

    def extra_state(self) -> dict:
        """More state to checkpoint (Tensors, arrays, plain values)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        """Restore what `extra_state` returned."""

    def epoch_metrics(self) -> dict[str, float]:
        """Extra numbers recorded in the histories at the end of each epoch."""
        return {}

    # ---------------------------------------------------------------------------------------
    # Training

    def to_device(self, batch: Any) -> tuple:
        """The batch as a tuple of Tensors on `self.device`."""
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        return tuple(
            (b if isinstance(b, Tensor) else engine.as_tensor(b)).to(self.device) for b in batch
        )

    def train(self, loader: Iterable, epochs: int) -> dict[str, list[float | None]]:
        """Train until `epochs` epochs are complete in total; returns the histories."""
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
        if self._loader_state is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self._loader_state)
        self._loader_state = None
        for module in self.modules.values():
            module.train()
        while self.epoch < epochs:
            start = time.perf_counter()
            means = self._run_epoch(loader, epochs)
            means.update(self.epoch_metrics())
            means["seconds"] = time.perf_counter() - start
            self._record(means)
            if self.out_dir is not None:
                self._write_outputs(loader)
        return self.history

    def _run_epoch(self, loader: Iterable, epochs: int) -> dict[str, float]:
        from tqdm.auto import tqdm  # noqa: PLC0415  (only needed when training)

        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        bar = tqdm(
            loader,
            desc=f"epoch {self.epoch + 1}/{epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in bar:
            losses = self.train_step(self.to_device(batch))
            self.global_step += 1
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + _float(value)
                counts[name] = counts.get(name, 0) + 1
            bar.set_postfix({k: f"{sums[k] / counts[k]:.3f}" for k in sums}, refresh=False)
        bar.close()
        self.epoch += 1
        return {k: sums[k] / counts[k] for k in sums}

    def _record(self, values: dict[str, float]) -> None:
        n_before = len(self.history["epoch"])
        self.history["epoch"].append(self.epoch)
        for name, value in values.items():
            column = self.history.setdefault(name, [None] * n_before)
            column.append(_json_number(value))
        for column in self.history.values():
            if len(column) == n_before:
                column.append(None)

    # ---------------------------------------------------------------------------------------
    # Outputs

    def _write_outputs(self, loader: Any = None) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with _cpu_rng_preserved():  # writing a grid must not change the training trajectory
            images = self.preview()
        self.save_samples(self.out_dir / "samples.png", images)
        (self.out_dir / "samples").mkdir(exist_ok=True)
        self.save_samples(self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png", images)
        self.write_metrics(self.out_dir / "metrics.json")
        self.save_checkpoint(self.out_dir / "checkpoint.npz", loader)

    def save_samples(
        self, path: str | os.PathLike, images: Tensor | None = None, nrow: int | None = None
    ) -> None:
        """Write `images` (default: `preview()`) as a PNG grid, `nrow` images per row."""
        from engine.utils import save_image  # noqa: PLC0415

        if images is None:
            images = self.preview()
        images = images.detach().cpu().clip(0.0, 1.0)
        save_image(images, path, nrow=nrow or self.preview_nrow)

    def metrics(self) -> dict:
        """What metrics.json holds: model, config, counters and the per-epoch histories."""
        return {
            "model": type(self).__name__,
            "config": self.config(),
            "epochs": self.epoch,
            "steps": self.global_step,
            "history": self.history,
        }

    def write_metrics(self, path: str | os.PathLike) -> None:
        path = Path(path)
        _atomic_write_text(path, json.dumps(self.metrics(), indent=1) + "\n")

    # ---------------------------------------------------------------------------------------
    # Checkpoints

    def state_dict(self, loader: Any = None) -> dict:
        """Everything a bit-exact resume needs, in `engine.save`'s vocabulary."""
        return {
            **self.checkpoint_meta,
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "model": type(self).__name__,
            "config": self.config(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "history": self.history,
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "rng": engine.random.get_rng_state(),
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; the loader state is applied by the next `train` call."""
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"not a trainer checkpoint (format {state.get('format')!r})")
        if state["model"] != type(self).__name__:
            raise ValueError(
                f"checkpoint is for a {state['model']}, this trainer is a {type(self).__name__}"
            )
        for kind, mine in (("modules", self.modules), ("optimizers", self.optimizers)):
            saved = state[kind]
            if set(saved) != set(mine):
                raise ValueError(
                    f"checkpoint {kind} {sorted(saved)} do not match this trainer's {sorted(mine)}"
                )
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        engine.random.set_rng_state(state["rng"])
        self._loader_state = state.get("loader")
        self.load_extra_state(state.get("extra") or {})

    def save_checkpoint(self, path: str | os.PathLike, loader: Any = None) -> None:
        """`engine.save` of `state_dict(loader)` (atomic: a crash keeps the previous file)."""
        engine.save(self.state_dict(loader), path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by `save_checkpoint`, onto `self.device`."""
        self.load_state_dict(engine.load(path, map_location=self.device))


def _json_number(value: float) -> float | None:
    """NaN/inf are not JSON: recorded as None."""
    value = float(value)
    return value if math.isfinite(value) else None
