"""`Trainer`: the one training loop of tensortape, for every task (classifier, autoencoders,
GANs, pix2pix, CycleGAN, StyleGAN).

A subclass builds its networks and optimizers, registers them by name in `self.networks` and
`self.optimizers` (and any per-epoch learning-rate schedulers in `self.schedulers`: that is all
checkpointing needs), and implements:

- `train_step(batch) -> dict`: one update on one batch (a tuple of Tensors already on
  `self.device`); returns the losses by name as 0-d Tensors (kept on the device: the loop reads
  them only at its log points, so a GPU step needs no host sync) or floats. It calls
  `self.backward(loss)` and `self.step(optimizer)` rather than `loss.backward()` and
  `optimizer.step()`, so a precision policy can scale and unscale in one place;
- `sample(n) -> Tensor` (generators): `n` images, shaped (n, C, H, W) with values in [0, 1].

The base class supplies the rest, each written once:

- `fit(loader, epochs)`: trains until `self.epoch == epochs` (a resumed trainer continues where
  its checkpoint stopped), with a tqdm bar showing the running mean of each loss; stops with
  `NonFiniteLossError` (naming the epoch, step and loss) at the first NaN/inf loss, before
  anything of that epoch is written; an epoch without a single batch is an error, not a
  silent no-op; each scheduler steps once per epoch;
- after every epoch, when `out_dir` is set: `samples.png` (and `samples/epoch_NNNN.png`) from
  `preview()` (skipped when it returns None, e.g. for a classifier), `metrics.json` with the
  per-epoch histories (NaN/inf written as null), `checkpoint.npz`;
- `save_checkpoint(path)` / `load_checkpoint(path)`: networks, optimizers, schedulers, the
  precision policy, the engine's random state (every rank's, mid-epoch on ranks), the loader's
  state and position, the epoch/step counters and the histories, through
  `engine.save`/`engine.load`; a run resumed from a checkpoint continues bit-exactly (cpu),
  also from one a callback wrote mid-epoch (the resumed epoch's logged means then cover only
  its remaining steps). Version-1 checkpoints (networks stored under
  "modules") still load;
- `device="auto"|"cpu"|"cuda"` and `seed`.

Where the cross-cutting parts attach (one place each):

- `precision`: a `Precision` policy object: `autocast()` wraps every `train_step`,
  `backward(loss)` and `step(optimizer)` are what the trainer's `backward`/`step` call, and its
  `state_dict()` is checkpointed (a gradient scaler's scale). The default is plain float32.
- `callbacks`: a list of `Callback` objects (loggers, rank-aware printers) called at
  `on_fit_start`, `on_log` (the running means at each log point), `on_epoch_end` (the epoch's
  record), `on_samples` (the epoch's preview grid) and `on_fit_end` (also when training stops
  with an error, so files are closed).
- `logger`: the run logs (`generative.loggers`): "tensorboard" (event files + metrics.csv),
  "csv" (metrics.csv), "auto" (tensorboard when tensorboardX is installed, else csv), None/"none"
  (the default), a user's `SummaryWriter`, or a `Callback`; written into `out_dir`, appended to
  on resume. `hparams` (a dict, e.g. the CLI's options) is logged with `config()` as the run's
  settings. The epoch records hold the learning rates (`lr`, or `lr/<optimizer>` for several).
- `curves.png`: at the end of `fit`, when `out_dir` is set, every numeric history drawn by
  matplotlib (`dataio.plots.plot_curves`, one panel per group: losses, accuracy, lr).
- ranks: under `engine.distributed` with more than one rank (`tensortape launch`, `--nproc`),
  `fit` wraps every network in `DistributedDataParallel` (rank 0's weights broadcast, gradients
  averaged over the ranks in every `backward`), gives each rank its shard of the loader (a
  `DistributedSampler`; the loader's `batch_size` is the global batch and must divide by the
  number of ranks), seeds each epoch's random draws from (seed, rank, epoch) so ranks draw
  different noise and a resumed run continues exactly (cpu), and `is_main_process`
  (`engine.distributed.is_main_process()`) is rank 0 alone: only it shows bars and writes
  samples, metrics.json, logs and checkpoints. Each rank's history holds its own losses;
  every BatchNorm becomes a `layers.SyncBatchNorm` (statistics over the whole global batch;
  `sync_batchnorm = False` keeps per-rank statistics).

Optional hooks: `preview()` (images for the per-epoch grid; default `sample(64)`), `config()`
(JSON-able hyper-parameters for checkpoints and metrics.json), `extra_state()` /
`load_extra_state(state)` (anything else to checkpoint), `epoch_metrics()` (extra per-epoch
numbers for the histories, e.g. a judge's score or the test accuracy). `checkpoint_meta` (a dict)
adds top-level checkpoint entries, e.g. the CLI's `{"task": "gan"}`.

The names differ on purpose from `layers.Module`'s: a Trainer *fits* its *networks*
(`Module.train()` sets a mode, `Module.modules()` walks sub-modules).

A minimal subclass::

    class AE(Trainer):
        def __init__(self, encoder, decoder, lr=1e-3, **kw):
            super().__init__(**kw)  # device, seed, out_dir, progress, precision, callbacks
            self.enc, self.dec = encoder.to(self.device), decoder.to(self.device)
            self.networks = {"encoder": self.enc, "decoder": self.dec}
            params = [*self.enc.parameters(), *self.dec.parameters()]
            self.optimizers = {"adam": optimizers.Adam(params, lr=lr)}

        def train_step(self, batch):
            x = batch[0]
            loss = F.mse_loss(self.dec(self.enc(x)), x)
            self.optimizers["adam"].zero_grad()
            self.backward(loss)
            self.step(self.optimizers["adam"])
            return {"loss": loss.detach()}

        def sample(self, n):
            with evaluating(self.dec):
                return self.dec(engine.randn(n, 8, device=self.device))

    AE(enc, dec, out_dir="runs/ae").fit(loader, epochs=10)
"""

from __future__ import annotations

import io
import json
import math
import os
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy

import engine
import engine.distributed
from dataio.files import atomic_write
from engine import Tensor

from .callbacks import Callback
from .loggers import make_loggers

__all__ = [
    "Trainer",
    "Callback",
    "Precision",
    "MixedPrecision",
    "TF32Precision",
    "PRECISIONS",
    "make_precision",
    "NonFiniteLossError",
    "resolve_device",
    "frozen",
    "evaluating",
    "rng_state_preserved",
    "read_checkpoint",
]

CHECKPOINT_FORMAT = "tensortape-trainer"
CHECKPOINT_VERSION = 2  # 2: "networks" (was "modules"), "schedulers", "precision"


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


def _detached(value: Any) -> Any:
    return value.detach() if isinstance(value, Tensor) else value


def _read_all(values: list) -> list[float]:
    """`values` (numbers and one-element Tensors) as floats; the Tensors of each device are
    stacked there and read in one copy (one host sync per log point, not one per loss)."""
    out: list[Any] = list(values)
    by_device: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        if isinstance(v, Tensor):
            by_device.setdefault(v.device, []).append(i)
        else:
            out[i] = float(v)
    for indices in by_device.values():
        stacked = engine.stack([values[i].reshape(()).double() for i in indices])
        for i, v in zip(indices, stacked.numpy().tolist(), strict=True):
            out[i] = v
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or inf; raised before anything of that epoch is written."""


class Precision:
    """The float32 policy (`--precision 32`, the default): no autocast, plain backward and step.

    A mixed-precision policy subclasses it: `autocast()` around each train_step (the loop's one
    context per step: a scaler updates its scale when it closes), a scaled `backward`, a `step`
    that unscales, checks for inf/NaN and may skip, and its scaler state in `state_dict()`
    (checkpointed with the trainer). `setup(device)` tells it the trainer's device.
    """

    name = "32"

    def setup(self, device: engine.Device) -> None:
        pass

    def autocast(self) -> AbstractContextManager:
        return nullcontext()

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def step(self, optimizer: Any) -> None:
        optimizer.step()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class MixedPrecision(Precision):
    """`--precision 16-mixed` / `bf16-mixed` (Lightning's words): each train_step under
    `engine.autocast(device, dtype)`; float32 master weights and optimizer state. float16 takes a
    `GradScaler` (its gradients underflow below ~6e-8 without one); bfloat16 has float32's range
    and needs none (Lightning's and PyTorch's practice)."""

    def __init__(self, dtype: str = "float16", scaler: Any = None) -> None:
        if dtype not in ("float16", "bfloat16"):
            raise ValueError(
                f"MixedPrecision: dtype must be 'float16' or 'bfloat16', got {dtype!r}"
            )
        self.dtype = dtype
        self.name = "16-mixed" if dtype == "float16" else "bf16-mixed"
        if scaler is None and dtype == "float16":
            scaler = engine.amp.GradScaler()
        self.scaler = scaler
        self._device_type = "cpu"
        self._stepped = False

    def setup(self, device: engine.Device) -> None:
        self._device_type = device.type

    @contextmanager
    def autocast(self) -> Iterator[None]:
        with engine.autocast(self._device_type, dtype=self.dtype):
            yield
        if self.scaler is not None and self._stepped:  # once per iteration, after every step
            self.scaler.update()
        self._stepped = False

    def backward(self, loss: Tensor) -> None:
        if self.scaler is None:
            loss.backward()
            return
        # A scaled float16 gradient that overflows is the scaler's signal (the step is skipped
        # and the scale backs off), silent as in PyTorch: not NumPy's RuntimeWarning on the CPU.
        with numpy.errstate(over="ignore", invalid="ignore"):
            self.scaler.scale(loss).backward()

    def step(self, optimizer: Any) -> None:
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
        self._stepped = True

    def state_dict(self) -> dict:
        return {"name": self.name, "scaler": self.scaler.state_dict() if self.scaler else {}}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


class TF32Precision(Precision):
    """`--precision tf32`: float32 everywhere, with `engine.backends.cuda.matmul.allow_tf32` on
    during each train_step (cuda GEMMs round their inputs to TF32; no effect on the cpu)."""

    name = "tf32"

    @contextmanager
    def autocast(self) -> Iterator[None]:
        matmul = engine.backends.cuda.matmul
        before = matmul.allow_tf32
        matmul.allow_tf32 = True
        try:
            yield
        finally:
            matmul.allow_tf32 = before

    def state_dict(self) -> dict:
        return {"name": self.name}


#: The `--precision` values (Lightning's names) and their policies.
PRECISIONS = {
    "32": Precision,
    "16-mixed": lambda: MixedPrecision("float16"),
    "bf16-mixed": lambda: MixedPrecision("bfloat16"),
    "tf32": TF32Precision,
}


def make_precision(name: str) -> Precision:
    """The policy of a `--precision` value."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {name!r}")
    return PRECISIONS[name]()


class Trainer:
    """Base class of every tensortape trainer (see the module docstring for the contract)."""

    #: Number of images in the per-epoch sample grid (and its row length).
    preview_count: int = 64
    preview_nrow: int = 8
    #: Steps between log points: the loop reads the (device-resident) losses only there.
    log_every: int = 20
    #: On ranks, fit converts every network's BatchNorm1d/2d/3d to SyncBatchNorm (in place,
    #: sharing parameters and buffers; checkpoints keep their keys), so N ranks x batch b train
    #: like one process x batch N b. False keeps per-rank statistics.
    sync_batchnorm: bool = True

    def __init__(
        self,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
        precision: Precision | None = None,
        callbacks: Iterable[Callback] = (),
        logger: Any = None,
    ) -> None:
        self.device = resolve_device(device)
        self.seed = seed
        if seed is not None:
            engine.manual_seed(seed)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.precision = precision if precision is not None else Precision()
        # Chosen: given here or set later; else the default, which a checkpoint's replaces.
        self._precision_chosen = precision is not None
        self.callbacks: list[Callback] = list(callbacks)
        if isinstance(logger, str) and logger not in ("auto", "tensorboard", "csv", "none"):
            raise ValueError(f"logger must be auto, tensorboard, csv or none, got {logger!r}")
        self.logger = logger  # resolved into callbacks by each fit (see generative.loggers)
        self._loggers: list[Callback] = []
        self.hparams: dict[str, Any] = {}  # the run's options, logged as its settings
        self.curves_title: str | None = None  # title of curves.png (default: the class name)
        self.networks: dict[str, Any] = {}  # name -> layers.Module, checkpointed
        self.optimizers: dict[str, Any] = {}  # name -> optimizers.Optimizer, checkpointed
        self.schedulers: dict[str, Any] = {}  # name -> scheduler stepped once per epoch
        self.epoch = 0  # epochs completed
        self.global_step = 0  # train_step calls completed
        self.history: dict[str, list[float | None]] = {"epoch": []}
        # JSON-able entries stored at the top level of every checkpoint, e.g. the CLI's
        # {"task": "gan", "dataset": "digits"}, so a checkpoint says how to rebuild its trainer.
        self.checkpoint_meta: dict[str, Any] = {}
        self._loader_state: dict | None = None  # from a checkpoint, for the next fit()
        self._fit_loader: Any = None  # the loader fit is running (a mid-epoch checkpoint's)
        self._ddp: dict[str, Any] = {}  # name -> DistributedDataParallel, in a multi-rank fit

    @property
    def precision(self) -> Precision:
        """The precision policy (see `Precision`); setting it tells it the device."""
        return self._precision

    @precision.setter
    def precision(self, policy: Precision) -> None:
        policy.setup(self.device)
        self._precision = policy
        self._precision_chosen = True

    # ---------------------------------------------------------------------------------------
    # The subclass contract

    def train_step(self, batch: tuple) -> dict[str, Any]:
        """One update on `batch` (Tensors on `self.device`); returns losses by name."""
        raise NotImplementedError(f"{type(self).__name__} must implement train_step(batch)")

    def sample(self, n: int) -> Tensor:
        """`n` generated images (n, C, H, W) in [0, 1] on `self.device`."""
        raise NotImplementedError(f"{type(self).__name__} must implement sample(n)")

    def preview(self) -> Tensor | None:
        """Images for the per-epoch grid (override for fixed latents or labelled rows; None for
        a trainer without pictures)."""
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

    @property
    def is_main_process(self) -> bool:
        """Whether this process writes files and logs (and shows bars): rank 0 of a
        multi-process run (`engine.distributed`), the only process otherwise."""
        return engine.distributed.is_main_process()

    def learning_rates(self) -> dict[str, float]:
        """The first parameter group's lr of each optimizer: {"lr": ...} for one optimizer,
        {"lr/<name>": ...} for several."""
        rates = {
            name: float(opt.param_groups[0]["lr"])
            for name, opt in self.optimizers.items()
            if getattr(opt, "param_groups", None)
        }
        if len(rates) == 1:
            return {"lr": next(iter(rates.values()))}
        return {f"lr/{name}": lr for name, lr in rates.items()}

    def grad_scale(self) -> float | None:
        """The gradient scaler's current scale when the precision policy has one, else None."""
        scaler = getattr(self.precision, "scaler", self.precision)
        get_scale = getattr(scaler, "get_scale", None)
        if get_scale is None or not getattr(scaler, "is_enabled", lambda: True)():
            return None
        return float(get_scale())

    def run_settings(self) -> dict:
        """What the logs record as the run's settings: model, config, checkpoint meta, options."""
        return {
            "model": type(self).__name__,
            "config": self.config(),
            **self.checkpoint_meta,
            "options": self.hparams,
            "device": str(self.device),
        }

    # ---------------------------------------------------------------------------------------
    # What a train_step calls (the precision policy decides how)

    def backward(self, loss: Tensor) -> None:
        """`loss.backward()` through the precision policy (a scaler scales it first)."""
        self.precision.backward(loss)

    def step(self, optimizer: Any) -> None:
        """`optimizer.step()` through the precision policy (unscale, inf check, maybe skip)."""
        self.precision.step(optimizer)

    # ---------------------------------------------------------------------------------------
    # Training

    def to_device(self, batch: Any) -> tuple:
        """The batch as a tuple of Tensors on `self.device`."""
        if not isinstance(batch, (tuple, list)):
            batch = (batch,)
        return tuple(
            (b if isinstance(b, Tensor) else engine.as_tensor(b)).to(self.device) for b in batch
        )

    def fit(self, loader: Iterable, epochs: int) -> dict[str, list[float | None]]:
        """Train until `epochs` epochs are complete in total; returns the histories."""
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
        loader = self._distribute(loader)
        # A checkpoint written mid-epoch holds each rank's random state at that step: the
        # resumed epoch continues from it instead of reseeding from (seed, rank, epoch).
        midway = bool((self._loader_state or {}).get("batches_done"))
        if self._loader_state is not None and hasattr(loader, "load_state_dict"):
            loader.load_state_dict(self._loader_state)
        self._loader_state = None
        self._fit_loader = loader
        for network in self.networks.values():
            network.train()
        self._loggers = make_loggers(self.logger, self.out_dir)
        self._call("on_fit_start")
        # Overflow and invalid values are silent inside training, as in PyTorch: the first
        # non-finite loss stops the run with one line naming it (_read), where NumPy's
        # RuntimeWarnings would print before it, one per op that met the inf or NaN.
        with numpy.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                while self.epoch < epochs:
                    self._fit_epoch(loader, epochs, reseed=not midway)
                    midway = False
            finally:
                self._fit_loader = None
                self._call("on_fit_end")
        if self.out_dir is not None and self.is_main_process and self.history["epoch"]:
            self.plot_curves(self.out_dir / "curves.png")
        return self.history

    def _fit_epoch(self, loader: Iterable, epochs: int, reseed: bool) -> None:
        """One epoch of fit: the steps, the schedulers, the record and the outputs."""
        start = time.perf_counter()
        if self._ddp:
            self._seed_rank_epoch(loader, reseed=reseed)
        rates = self.learning_rates()  # the epoch's rates, before the schedulers step
        means = self._run_epoch(loader, epochs)
        for scheduler in self.schedulers.values():
            scheduler.step()
        means.update(rates)
        means.update(self.epoch_metrics())
        means["seconds"] = time.perf_counter() - start
        self._record(means)
        self._call("on_epoch_end", means)
        if self.out_dir is not None:
            if self.is_main_process:
                self._write_outputs()
            self.save_checkpoint(self.out_dir / "checkpoint.npz", loader)  # every rank

    def _distribute(self, loader: Iterable) -> Iterable:
        """In a multi-rank run: DDP around every network (once) and this rank's shard of
        `loader` (an engine DataLoader without a sampler); otherwise `loader` unchanged."""
        world = _world_size()
        if world == 1:
            return loader
        from engine.data import DataLoader, DistributedSampler  # noqa: PLC0415
        from layers import SyncBatchNorm  # noqa: PLC0415
        from layers.parallel import DistributedDataParallel  # noqa: PLC0415

        for name, network in list(self.networks.items()):
            if name not in self._ddp:
                if self.sync_batchnorm:  # whole-batch statistics: results do not depend on N
                    network = SyncBatchNorm.convert_sync_batchnorm(network)
                    self.networks[name] = network
                self._ddp[name] = DistributedDataParallel(network, broadcast_buffers=False)
        if not isinstance(loader, DataLoader) or loader.sampler is not None:
            return loader
        if loader.batch_size % world:
            raise ValueError(
                f"batch size {loader.batch_size} is the global batch of {world} ranks and must "
                f"divide by {world}"
            )
        sampler = DistributedSampler(
            loader.dataset, shuffle=loader.shuffle, seed=self._base_seed(),
            drop_last=loader.drop_last,
        )  # fmt: skip
        return DataLoader(  # seed: its generator is unused, and drawing one would move the
            loader.dataset, loader.batch_size // world, drop_last=loader.drop_last,  # random
            device=loader.device, sampler=sampler, seed=0,  # state a checkpoint restored
        )  # fmt: skip

    def _base_seed(self) -> int:
        """The run's seed, fixed at the first multi-rank fit (reseeding changes initial_seed)."""
        if getattr(self, "_rank_seed", None) is None:
            self._rank_seed = self.seed if self.seed is not None else engine.random.initial_seed()
        return self._rank_seed

    def _seed_rank_epoch(self, loader: Any, reseed: bool = True) -> None:
        """Each rank's draws this epoch from (seed, rank, epoch): they differ between ranks (or
        N ranks would train like one) and do not depend on where a run was resumed (an epoch
        resumed midway keeps the random state its checkpoint restored: `reseed=False`)."""
        rank = engine.distributed.get_rank()
        seed = self._base_seed()
        if reseed:
            engine.random.manual_seed(
                int(numpy.random.SeedSequence([seed, rank, self.epoch]).generate_state(1)[0])
            )
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(self.epoch)

    def _call(self, hook: str, *args: Any) -> None:
        for callback in (*self.callbacks, *self._loggers):
            getattr(callback, hook)(self, *args)

    def _run_epoch(self, loader: Iterable, epochs: int) -> dict[str, float]:
        from tqdm.auto import tqdm  # noqa: PLC0415  (only needed when training)

        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        pending: list[dict[str, Any]] = []  # losses of the steps since the last log point
        bar = tqdm(
            loader,
            desc=f"epoch {self.epoch + 1}/{epochs}",
            disable=not (self.progress and self.is_main_process),
            leave=False,
            dynamic_ncols=True,
        )
        steps = 0
        try:
            for batch in bar:
                with self.precision.autocast():
                    losses = self.train_step(self.to_device(batch))
                # Detached: a pending loss must not keep its step's graph alive.
                pending.append({k: _detached(v) for k, v in losses.items()})
                self.global_step += 1
                steps += 1
                if steps % self.log_every == 0:
                    self._read(pending, steps, sums, counts)
                    means = {k: sums[k] / counts[k] for k in sums}
                    bar.set_postfix({k: f"{v:.3f}" for k, v in means.items()}, refresh=False)
                    self._call("on_log", means)
            self._read(pending, steps, sums, counts)
        finally:
            bar.close()
        if steps == 0:
            raise ValueError(_empty_epoch_message(loader, self.epoch + 1))
        self.epoch += 1
        means = {k: sums[k] / counts[k] for k in sums}
        if steps % self.log_every:
            self._call("on_log", means)
        return means

    def _read(self, pending: list, steps: int, sums: dict, counts: dict) -> None:
        """Add the pending steps' losses (read from the device here, the only sync) to the
        sums; the first non-finite one stops training."""
        first = steps - len(pending) + 1
        read = iter(_read_all([v for losses in pending for v in losses.values()]))
        for offset, losses in enumerate(pending):
            for name, value in losses.items():
                value = next(read)
                if not math.isfinite(value):
                    step = first + offset
                    raise NonFiniteLossError(
                        f"loss {name!r} is {value} at epoch {self.epoch + 1}, step {step} "
                        f"(global step {self.global_step - steps + step}): training stopped; "
                        f"the last checkpoint (epoch {self.epoch}) is kept"
                    )
                sums[name] = sums.get(name, 0.0) + value
                counts[name] = counts.get(name, 0) + 1
        pending.clear()

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

    def _write_outputs(self) -> None:
        """The epoch's pictures and metrics.json (rank 0; fit writes the checkpoint after)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with _cpu_rng_preserved():  # writing a grid must not change the training trajectory
            images = self.preview()
        if images is not None:
            self._call("on_samples", images)
            self.save_samples(self.out_dir / "samples.png", images)
            (self.out_dir / "samples").mkdir(exist_ok=True)
            self.save_samples(self.out_dir / "samples" / f"epoch_{self.epoch:04d}.png", images)
        self.write_metrics(self.out_dir / "metrics.json")

    def save_samples(
        self, path: str | os.PathLike, images: Tensor | None = None, nrow: int | None = None
    ) -> None:
        """Write `images` (default: `preview()`) as a PNG grid, `nrow` images per row, each cell
        upscaled by nearest neighbour so small images are legible (`dataio.images.save_grid`);
        rank 0 alone writes files."""
        from dataio.images import save_grid  # noqa: PLC0415

        if not self.is_main_process:
            return

        if images is None:
            images = self.preview()
        save_grid(images.detach().cpu().numpy(), path, nrow=nrow or self.preview_nrow)

    def plot_curves(self, path: str | os.PathLike) -> None:
        """The per-epoch histories (all but epoch and seconds) as a PNG drawn by matplotlib."""
        from dataio.plots import plot_curves  # noqa: PLC0415  (matplotlib only when drawing)

        series = {
            name: values
            for name, values in self.history.items()
            if name not in ("epoch", "seconds") and any(v is not None for v in values)
        }
        if series:
            plot_curves(path, series, title=self.curves_title or type(self).__name__)

    def metrics(self) -> dict:
        """What metrics.json holds: model, config, counters and the per-epoch histories."""
        return {
            "model": type(self).__name__,
            "config": self.config(),
            "precision": self.precision.name,
            "epochs": self.epoch,
            "steps": self.global_step,
            "history": self.history,
        }

    def write_metrics(self, path: str | os.PathLike) -> None:
        """metrics.json, atomically, as strict JSON (NaN/inf anywhere become null)."""
        if not self.is_main_process:
            return
        text = json.dumps(_json_safe(self.metrics()), indent=1, allow_nan=False)
        _atomic_write_text(Path(path), text + "\n")

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
            "networks": {k: m.state_dict() for k, m in self.networks.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "precision": self.precision.state_dict(),
            "rng": engine.random.get_rng_state(),
            "world_size": _world_size(),  # a mid-epoch position is exact on this many ranks
            "loader": loader.state_dict() if hasattr(loader, "state_dict") else None,
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`; the loader state is applied by the next `fit` call."""
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not a trainer checkpoint (format {found!r})")
        if state["model"] != type(self).__name__:
            raise ValueError(
                f"checkpoint is for a {state['model']}, this trainer is a {type(self).__name__}"
            )
        saved_networks = state["networks"] if "networks" in state else state["modules"]  # v1
        for kind, saved, mine in (
            ("networks", saved_networks, self.networks),
            ("optimizers", state["optimizers"], self.optimizers),
            ("schedulers", state.get("schedulers") or {}, self.schedulers),
        ):
            if set(saved) != set(mine):
                raise ValueError(
                    f"checkpoint {kind} {sorted(saved)} do not match this trainer's {sorted(mine)}"
                )
        for name, network in self.networks.items():
            network.load_state_dict(saved_networks[name])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][name])
        self._load_precision(state.get("precision") or {})
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = {k: list(v) for k, v in state["history"].items()}
        engine.random.set_rng_state(_my_rng_state(state))
        self._loader_state = self._resume_position(state)
        self.load_extra_state(state.get("extra") or {})

    def _resume_position(self, state: dict) -> dict | None:
        """The checkpoint's loader state for the next `fit`. A mid-epoch position is exact only
        on the rank count that saved it (each rank's shard and random state belong to it): on
        another count the epoch restarts from its first batch of the sampler order (the steps
        already taken in it are trained again), with one warning line from rank 0."""
        loader = state.get("loader")
        done = int((loader or {}).get("batches_done") or 0)
        saved, world = _saved_world_size(state), _world_size()
        if not done or saved == world:
            return loader
        if self.is_main_process:
            warnings.warn(
                f"checkpoint saved mid-epoch on {_ranks(saved)} ({done} steps into epoch "
                f"{int(state['epoch']) + 1}), resumed on {_ranks(world)}: the epoch restarts "
                f"from its first batch, its first {done} steps trained again (--nproc {saved} "
                "continues exactly)",
                stacklevel=3,
            )
        return {**loader, "batches_done": 0}

    def _load_precision(self, saved: dict) -> None:
        """The checkpoint's precision and scaler state: adopted when this trainer runs the
        default policy, an error when it was given another one (a resumed run keeps its
        precision)."""
        name = saved.get("name", "32")
        if name != self.precision.name:
            if self._precision_chosen:
                raise ValueError(
                    f"checkpoint was trained with precision {name!r}, this run asks for "
                    f"{self.precision.name!r}: resume with --precision {name} (or none)"
                )
            self.precision = make_precision(name)
        self.precision.load_state_dict(saved)

    def save_checkpoint(self, path: str | os.PathLike, loader: Any = None) -> None:
        """`engine.save` of `state_dict(loader)` (atomic: a crash keeps the previous file).
        `loader` defaults to the one `fit` is running, so a callback may checkpoint mid-epoch.
        On ranks rank 0 alone writes.

        On ranks a checkpoint written mid-epoch (from a callback during `fit`) is a
        collective, which every rank must call: each rank's random state is gathered into the
        file ("rank_rng"), so a run resumed there on the same number of ranks draws what each
        rank would have drawn; resumed on another rank count, that epoch restarts from its
        first batch (one warning: `_resume_position`). At an epoch's end or outside `fit` (the
        next epoch reseeds every rank) it is not: rank 0 alone may call it (PyTorch's
        `if rank == 0: save`), and the file resumes on any rank count."""
        loader = loader if loader is not None else self._fit_loader
        midway = hasattr(loader, "state_dict") and loader.state_dict().get("batches_done", 0) > 0
        rank_rng = _gather_rank_rng() if midway else None
        if not self.is_main_process:
            return
        state = self.state_dict(loader)
        if rank_rng is not None:
            state["rank_rng"] = rank_rng
        engine.save(state, path)

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by `save_checkpoint`, onto `self.device` (on ranks: the
        file rank 0 read and broadcast, see `read_checkpoint`)."""
        self.load_state_dict(read_checkpoint(path, map_location=self.device))


def read_checkpoint(path: str | os.PathLike, map_location: Any = None) -> Any:
    """`engine.load(path, map_location)`; in a multi-rank run rank 0 alone reads and decodes
    the file (its errors are rank 0's alone, and end the job), then broadcasts its bytes and
    every other rank decodes them: the state (networks, optimizers, schedulers, precision, RNG,
    epoch, histories) is rank 0's everywhere and no shared filesystem is needed."""
    dist = engine.distributed
    if _world_size() == 1:
        return engine.load(path, map_location=map_location)
    if dist.get_rank() == 0:
        data = Path(path).read_bytes()
        state = engine.load(_named_bytes(data, path), map_location=map_location)
        dist.broadcast_bytes(data, src=0)
        return state
    data = dist.broadcast_bytes(None, src=0)
    return engine.load(_named_bytes(data, path), map_location=map_location)


def _named_bytes(data: bytes, path: str | os.PathLike) -> io.BytesIO:
    """The checkpoint bytes as a file object whose messages name `path`."""
    f = io.BytesIO(data)
    f.name = str(path)
    return f


def _world_size() -> int:
    dist = engine.distributed
    return dist.get_world_size() if dist.is_initialized() else 1


# Gathered first by a mid-epoch save on ranks: a rank that meets another collective there (a
# save that only rank 0 makes, its peers in their next step's gradient all-reduce) reads
# something else and stops the job with a clear error instead of misreading the sizes.
_SAVE_MARK = 0x7E5A9E_C4EC


def _gather_rank_rng() -> list | None:
    """Every rank's engine random state, in rank order, on every rank (None in one process)."""
    world = _world_size()
    if world == 1:
        return None
    mark = engine.tensor(numpy.array([_SAVE_MARK], numpy.int64))
    marks = [engine.tensor(numpy.zeros(1, numpy.int64)) for _ in range(world)]
    engine.distributed.all_gather(marks, mark)
    if any(int(m.numpy()[0]) != _SAVE_MARK for m in marks):
        raise RuntimeError(
            "save_checkpoint mid-epoch on ranks is a collective: every rank must call it "
            "(not under `if trainer.is_main_process:`; rank 0 alone writes the file)"
        )
    mine = json.dumps(engine.random.get_rng_state()).encode()
    return [json.loads(b) for b in engine.distributed.all_gather_bytes(mine)]


def _saved_world_size(state: dict) -> int:
    """The number of ranks that wrote a checkpoint (older files: from their per-rank states)."""
    return int(state.get("world_size") or len(state.get("rank_rng") or []) or 1)


def _ranks(n: int) -> str:
    return "1 process" if n == 1 else f"{n} ranks"


def _my_rng_state(state: dict) -> dict:
    """This rank's random state from a checkpoint: its own when the checkpoint holds one per
    rank of a job of this size, else the checkpoint's (rank 0's) state; on ranks an epoch that
    restarts (`_resume_position`) reseeds from (seed, rank, epoch) anyway."""
    ranks = state.get("rank_rng")
    world = _world_size()
    if ranks and len(ranks) == world and world > 1:
        return ranks[engine.distributed.get_rank()]
    return state["rng"]


def _empty_epoch_message(loader: Any, epoch: int) -> str:
    size = getattr(loader, "batch_size", None)
    dataset = getattr(loader, "dataset", None)
    detail = ""
    if size is not None and dataset is not None and hasattr(dataset, "__len__"):
        detail = f" (batch size {size}, {len(dataset)} samples"
        dropped = getattr(loader, "drop_last", False)
        detail += ", the last partial batch dropped)" if dropped else ")"
    return f"epoch {epoch} ran no training step: the loader yielded no batches{detail}"


def _json_number(value: float) -> float | None:
    """NaN/inf are not JSON: recorded as None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj
