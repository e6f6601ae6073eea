"""Run logs a user opens while training runs: `CSVLogger` (OUT/metrics.csv, one row per epoch)
and `TensorBoardLogger` (event files for `tensorboard --logdir`), both `Callback`s of the Trainer.

`make_loggers(spec, log_dir)` turns what `Trainer(logger=...)` (and the CLI's `--logger`) was
given into callbacks: "auto" (TensorBoard when tensorboardX is installed, else CSV),
"tensorboard", "csv", "none"/None, a `SummaryWriter` of the user's (tensorboardX's or
torch.utils.tensorboard's: anything with `add_scalar`), or a `Callback`.

Only the main process (rank 0) writes: each hook returns at once elsewhere. A resumed fit appends
to the same logs without duplicating steps: the CSV keeps only the rows up to the checkpoint's
epoch, and the TensorBoard writer starts with `purge_step` = the checkpoint's step + 1, so
TensorBoard drops the events a killed run wrote past the checkpoint. Every scalar, per step and
per epoch, is indexed by the global step, so that one purge step covers them all.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from dataio.files import atomic_write

from .callbacks import Callback

__all__ = ["CSVLogger", "TensorBoardLogger", "make_loggers", "LOGGERS"]

LOGGERS = ("auto", "tensorboard", "csv", "none")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboardX") is not None


def make_loggers(spec: Any, log_dir: str | os.PathLike | None) -> list[Callback]:
    """The callbacks for `spec` (see the module docstring), writing into `log_dir`."""
    if spec is None or spec == "none":
        return []
    if isinstance(spec, Callback):
        return [spec]
    if hasattr(spec, "add_scalar"):  # a user's SummaryWriter: TensorBoard there, CSV beside
        return [TensorBoardLogger(writer=spec)] + ([CSVLogger(log_dir)] if log_dir else [])
    if spec not in LOGGERS:
        raise ValueError(f"logger must be one of {', '.join(LOGGERS)}, got {spec!r}")
    if log_dir is None:
        raise ValueError(f"logger {spec!r} writes into the output directory: give out_dir")
    if spec == "auto":
        spec = "tensorboard" if tensorboard_available() else "csv"
    if spec == "tensorboard":
        if not tensorboard_available():
            raise RuntimeError(
                "logger 'tensorboard' needs tensorboardX: pip install tensorboardX "
                "(or the project's 'logs' extra), or choose --logger csv"
            )
        return [TensorBoardLogger(log_dir), CSVLogger(log_dir)]
    return [CSVLogger(log_dir)]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class CSVLogger(Callback):
    """OUT/metrics.csv: one row per epoch (epoch, step, every recorded number), flushed as it is
    written, so a killed run leaves its history. A new column appearing later rewrites the file
    once with the wider header."""

    filename = "metrics.csv"

    def __init__(self, log_dir: str | os.PathLike) -> None:
        self.path = Path(log_dir) / self.filename
        self.columns: list[str] = []

    def on_fit_start(self, trainer) -> None:
        if not trainer.is_main_process:
            return
        rows = self._read()
        kept = [row for row in rows if int(float(row["epoch"])) <= trainer.epoch]
        if kept != rows:  # nothing is written before the first epoch ends
            self._rewrite(kept, self.columns)

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        if not trainer.is_main_process:
            return
        row = {"epoch": trainer.epoch, "step": trainer.global_step}
        row.update({k: _finite(v) for k, v in record.items()})
        if not self.path.exists() or any(k not in self.columns for k in row):
            columns = self.columns + [k for k in row if k not in self.columns]
            self._rewrite(self._read(), columns)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns, restval="").writerow(row)
            f.flush()

    def _read(self) -> list[dict[str, str]]:
        if not self.path.exists():
            self.columns = []
            return []
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            self.columns = list(reader.fieldnames or [])
        return rows

    def _rewrite(self, rows: list[dict], columns: list[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.columns, restval="")
        if self.columns:
            writer.writeheader()
        writer.writerows(rows)
        with atomic_write(self.path, "w") as f:
            f.write(text.getvalue())


class TensorBoardLogger(Callback):
    """TensorBoard event files: at each log point `step/<loss>` (the epoch's running means, as
    the progress bar shows) with the learning rates (`lr`, `lr/<optimizer>`) and, when the
    precision policy has a gradient scaler, `amp/grad_scale`; at each epoch's end
    `epoch/<name>` for everything the history records; the sample grid as image `samples`; the
    run's settings as text `settings`. Pass `writer` to log into a SummaryWriter of your own
    (it is flushed, never closed, by the trainer)."""

    def __init__(self, log_dir: str | os.PathLike | None = None, writer: Any = None) -> None:
        if (log_dir is None) == (writer is None):
            raise ValueError("TensorBoardLogger takes exactly one of log_dir or writer")
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.writer = writer
        self._own = writer is None
        self._started = False

    def on_fit_start(self, trainer) -> None:
        self._started = False  # the writer opens at the first log point: a run that fails
        # before it leaves no files

    def _start(self, trainer) -> None:
        if self._started:
            return
        self._started = True
        if self.writer is None:
            from tensorboardX import SummaryWriter  # noqa: PLC0415  (optional dependency)

            # purge_step: TensorBoard forgets what a killed run logged past the checkpoint.
            # The suffix: event files are named by the second they start in; a resume within
            # the same second must not truncate the file it appends to.
            self.writer = SummaryWriter(
                str(self.log_dir),
                purge_step=trainer.global_step + 1,
                filename_suffix=f".{os.getpid()}.step{trainer.global_step}",
            )
        settings = json.dumps(trainer.run_settings(), indent=1, sort_keys=True, default=str)
        self.writer.add_text("settings", f"```\n{settings}\n```", trainer.global_step)

    def on_log(self, trainer, values: dict[str, float]) -> None:
        if not trainer.is_main_process:
            return
        self._start(trainer)
        step = trainer.global_step
        for name, value in {**values, **trainer.learning_rates()}.items():
            self._scalar(name if name.startswith("lr") else f"step/{name}", value, step)
        scale = trainer.grad_scale()
        if scale is not None:
            self._scalar("amp/grad_scale", scale, step)

    def on_epoch_end(self, trainer, record: dict[str, float]) -> None:
        if not trainer.is_main_process:
            return
        self._start(trainer)
        for name, value in record.items():
            self._scalar(f"epoch/{name}", value, trainer.global_step)
        self._scalar("epoch", trainer.epoch, trainer.global_step)
        self.writer.flush()

    def on_samples(self, trainer, images: Any) -> None:
        if not trainer.is_main_process:
            return
        from dataio.images import legible_scale, make_grid, upscale  # noqa: PLC0415

        self._start(trainer)
        if hasattr(images, "detach"):
            images = images.detach().cpu().numpy()
        images = upscale(images, legible_scale(*images.shape[-2:]))  # as samples.png: legible
        grid = make_grid(images, nrow=trainer.preview_nrow, pad_value=1.0)  # (3, H, W) in [0, 1]
        self.writer.add_image("samples", grid.clip(0.0, 1.0), trainer.global_step)
        self.writer.flush()

    def on_fit_end(self, trainer) -> None:
        if self.writer is None or not trainer.is_main_process:
            return
        self.writer.flush()
        if self._own:
            self.writer.close()
            self.writer = None

    def _scalar(self, tag: str, value: Any, step: int) -> None:
        value = _finite(value)
        if value is not None:
            self.writer.add_scalar(tag, value, step)
