"""What every training verb shares: device choice, datasets by name, output folders, seeding,
option types, and the two kinds of user error.

A user's mistake is one line on stderr, never a traceback (`--debug` shows one): `UsageError`
(a bad option value or combination, exit status 2 as argparse's) and `RunError` (a file, dataset
or checkpoint that is missing, unreadable or of the wrong kind; exit status 1).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

from dataio.files import write_json


class UsageError(Exception):
    """A bad option value or combination: one line on stderr, exit status 2."""


class RunError(Exception):
    """A user error met while running (files, data, checkpoints): one line, exit status 1."""


# -------------------------------------------------------------------------------------------
# Option types: argparse turns their ArgumentTypeError into "argument --x: ..." and exit 2.


def _number(kind, text: str, what: str, ok) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if (isinstance(value, float) and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(int, text, "a positive integer", lambda v: v > 0)


def non_negative_int(text: str) -> int:
    return _number(int, text, "an integer >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    return _number(float, text, "a finite number > 0", lambda v: v > 0)


def non_negative_float(text: str) -> float:
    return _number(float, text, "a finite number >= 0", lambda v: v >= 0)


def probability(text: str) -> float:
    return _number(float, text, "a probability in [0, 1]", lambda v: 0 <= v <= 1)


def dropout_probability(text: str) -> float:
    return _number(float, text, "a probability in [0, 1)", lambda v: 0 <= v < 1)


def finite_float(text: str) -> float:
    return _number(float, text, "a finite number", lambda v: True)


class DeprecatedAlias(argparse.Action):
    """An option's old spelling, kept for one release: it sets the new option's value (same
    dest, same type) and prints one warning line naming the new option. Hidden from --help."""

    def __init__(self, option_strings, dest, new: str, **kw) -> None:
        super().__init__(option_strings, dest, **kw)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(
            f"{parser.prog}: warning: {option_string} is deprecated, use {self.new} "
            f"(the old name will be removed in the next release)",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


def add_option(p: argparse.ArgumentParser, name: str, *, old: str | None = None, **kw) -> None:
    """`p.add_argument(name, **kw)`, and `old` (a former name) as a deprecated alias of it."""
    kw.setdefault("metavar", name.lstrip("-").upper().replace("-", "_"))
    action = p.add_argument(name, **kw)
    if old is not None:
        p.add_argument(
            old,
            action=DeprecatedAlias,
            new=name,
            dest=action.dest,
            type=kw.get("type"),
            default=argparse.SUPPRESS,  # the new option's default stands
            help=argparse.SUPPRESS,
        )


def resolve_device(spec: str) -> str:
    """'auto' picks cuda when a GPU answers, else cpu; asking for cuda without one is an error."""
    from generative.trainer import resolve_device as resolve  # noqa: PLC0415

    return str(resolve(spec))


def load_dataset(name: str, data_dir: str = "data", download: bool = True):
    """(train, test) TensorDatasets: float32 images in [0, 1], (N, 1, H, W); int64 labels.

    A dataset that cannot be read or downloaded is a RunError naming the folder; a data folder
    this call created is removed again when it stays empty.
    """
    from engine import data

    if name == "digits":
        return data.load_digits()
    if name not in ("mnist", "fashion"):
        raise UsageError(f"unknown dataset {name!r}: expected digits, mnist or fashion")
    root = Path(data_dir)
    # The topmost folder of data_dir that does not exist yet: a failed download removes what
    # it created from there down, when it holds no file.
    fresh = next((p for p in reversed([root, *root.parents]) if not p.exists()), None)
    try:
        return data.load_mnist(root, kind=name, download=download)
    except (OSError, RuntimeError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RunError(
            f"--data-dir {data_dir}: cannot read {name}: {first} (the four standard IDX files, "
            "plain or .gz, belong there)"
        ) from None
    finally:
        if fresh is not None and fresh.is_dir() and not any(p.is_file() for p in fresh.rglob("*")):
            shutil.rmtree(fresh)


def check_global_batch(batch_size: int | None, nproc: int) -> None:
    """On N ranks --batch-size is the global batch: each rank takes batch_size / N a step."""
    if batch_size is not None and nproc > 1 and batch_size % nproc:
        raise UsageError(
            f"--batch-size {batch_size} is the global batch over all ranks and must divide by "
            f"--nproc {nproc}"
        )


def check_batch_size(batch_size: int, n_train: int, drop_last: bool) -> None:
    """A batch larger than the training set would run no step when partial batches drop; on
    ranks (a recipe's batch size is known only here) it must divide by their number."""
    from engine import distributed  # noqa: PLC0415

    if distributed.is_initialized():
        check_global_batch(batch_size, distributed.get_world_size())
    if drop_last and batch_size > n_train:
        raise UsageError(
            f"--batch-size {batch_size} is larger than the {n_train} training images: with the "
            f"last partial batch dropped, no training step would run"
        )


#: Options that do not define a run: they may change on --resume (--epochs is the total to reach).
_NOT_SETTINGS = {
    "verb", "task", "epochs", "device", "out", "resume", "overwrite", "no_progress", "data_dir",
    "debug", "explicit", "option_names",
}  # fmt: skip
#: What a train verb writes into --out (--overwrite removes these, nothing else).
_OUTPUTS = (
    "checkpoint.npz", "metrics.json", "samples.png", "curves.png", "reconstructions.png",
    "interpolations.png", "latent.png", "mix.png", "metrics.csv",
)  # fmt: skip


def run_settings(args) -> dict:
    """The options that define a run (stored in its checkpoint; --resume takes them from there)."""
    plain = (str, int, float, bool, type(None))
    return {
        k: v
        for k, v in sorted(vars(args).items())
        if k not in _NOT_SETTINGS and isinstance(v, plain)
    }


def checkpoint_state(path) -> dict:
    """The checkpoint at `path` (on the cpu); a RunError if it is missing or not one of ours.
    On ranks (`--nproc`) rank 0 alone reads the file and broadcasts it."""
    from generative.trainer import read_checkpoint  # noqa: PLC0415

    try:
        state = read_checkpoint(path, map_location="cpu")
    except FileNotFoundError:
        raise RunError(f"{path}: no such checkpoint file") from None
    except IsADirectoryError:
        raise RunError(f"{path}: is a directory, not a checkpoint file") from None
    except ValueError as e:
        raise RunError(str(e)) from None
    if not isinstance(state, dict) or not isinstance(state.get("task"), str):
        raise RunError(f"{path}: not a checkpoint of `tensortape train` (no task recorded)")
    return state


def prepare_run(args, task: str) -> Path:
    """The run directory --out (default runs/<task>), checked before anything is built.

    Without --resume an existing run there is refused unless --overwrite (which removes the
    outputs a train verb writes). With --resume the checkpoint must exist and be of this task;
    the settings that define a run come from it: an option given on the command line with
    another value is a UsageError, the others are filled in from the checkpoint. Nothing is
    created here (the trainer makes the folder when it first writes).
    """
    from engine.distributed import is_main_process  # noqa: PLC0415

    out = Path(args.out or os.path.join("runs", task))
    ckpt = out / "checkpoint.npz"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a run directory")
    if args.resume:
        if getattr(args, "overwrite", False):
            raise UsageError(
                "--resume continues the run in --out, --overwrite replaces it: pick one"
            )
        if is_main_process() and not ckpt.is_file():  # rank 0 reads it for all (no shared fs)
            raise RunError(f"--resume: no checkpoint at {ckpt} (nothing to continue)")
        state = checkpoint_state(ckpt)
        if state["task"] != task:
            raise RunError(f"--resume: {ckpt} holds a {state['task']} run, not a {task}")
        _take_settings(args, state.get("args"), ckpt)
    elif is_main_process() and out.is_dir() and any(out.iterdir()):  # rank 0's folder
        if not getattr(args, "overwrite", False):
            found = ", ".join(sorted(p.name for p in out.iterdir())[:4])
            raise UsageError(
                f"--out {out} already holds files ({found}): pass --resume to continue that "
                f"run or --overwrite to replace it"
            )
        _remove_outputs(out)
    return out


def _take_settings(args, saved: dict | None, ckpt: Path) -> None:
    if saved is None:  # written before checkpoints recorded their settings
        return
    explicit = getattr(args, "explicit", set())
    names = getattr(args, "option_names", {})
    differ = []
    for key, value in saved.items():
        if not hasattr(args, key):
            continue
        if key in explicit and getattr(args, key) != value:
            name = names.get(key, "--" + key.replace("_", "-"))
            differ.append(f"{name} {getattr(args, key)} (checkpoint: {value})")
        else:
            setattr(args, key, value)
    if differ:
        raise UsageError(
            f"--resume: {'; '.join(differ)}: a resumed run keeps the settings of {ckpt}; drop "
            f"the option, or start a new run (another --out, or --overwrite)"
        )


def _remove_outputs(out: Path) -> None:
    for name in _OUTPUTS:
        (out / name).unlink(missing_ok=True)
    grids = out / "samples"
    if grids.is_dir():
        for png in grids.glob("epoch_*.png"):
            png.unlink()
    for events in out.glob("events.out.tfevents.*"):  # --overwrite: a new run's logs only
        events.unlink()


def resume(trainer, out: Path, args, plan=None) -> Path:
    """OUT/checkpoint.npz: records the run's settings in `trainer`'s checkpoints and, with
    --resume, loads it into `trainer` (saying so on stderr); --epochs is the total to reach.
    `plan(trainer, epochs, ckpt)`, when given, then fits the loaded schedule to --epochs (it
    returns a note for that line, or raises a UsageError). Also hands the trainer its run logs
    (`--logger`, into OUT), the options to log and its `--precision` policy (a resumed run's
    comes from the checkpoint's settings, as every option's: `prepare_run`)."""
    from generative.trainer import make_precision  # noqa: PLC0415

    trainer.logger = getattr(args, "logger", None) or "auto"
    trainer.hparams = {k: v for k, v in vars(args).items() if _plain(v) and k != "func"}
    trainer.precision = make_precision(getattr(args, "precision", None) or "32")
    ckpt = out / "checkpoint.npz"
    trainer.checkpoint_meta["args"] = run_settings(args)
    if args.resume:
        trainer.load_checkpoint(ckpt)
        if args.epochs < trainer.epoch:
            raise UsageError(
                f"--epochs {args.epochs} is less than the {trainer.epoch} epochs {ckpt} holds "
                f"(--epochs is the total to reach)"
            )
        note = plan(trainer, args.epochs, ckpt) if plan is not None else ""
        if trainer.is_main_process:  # said once, by rank 0
            print(f"resuming {ckpt}: epoch {trainer.epoch} done, training to {args.epochs}{note}",
                  file=sys.stderr)  # fmt: skip
    return ckpt


def _plain(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def save_square_grid(images, path) -> None:
    """Images clipped to [0, 1] as a PNG grid about as wide as it is tall (cells upscaled;
    rank 0 alone writes)."""
    from dataio.images import save_grid  # noqa: PLC0415
    from engine.distributed import is_main_process  # noqa: PLC0415

    if not is_main_process():
        return

    nrow = max(1, round(images.shape[0] ** 0.5))
    save_grid(images.cpu().numpy(), path, nrow=nrow)


def add_common_arguments(
    p: argparse.ArgumentParser,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    lr_default: str = "the dataset's recipe",
) -> None:
    """Options every training verb shares (a None default: the dataset's recipe decides, see
    `apply_recipe`)."""
    p.add_argument(
        "--dataset",
        default="digits",
        choices=["digits", "mnist", "fashion"],
        help="digits is embedded (offline); mnist/fashion read IDX files",
    )
    p.add_argument("--data-dir", default="data", help="where MNIST-style IDX files live")
    recipe = "default: the dataset's recipe"
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=epochs,
        help="epochs in total (with --resume: continue up to this many)"
        + ("" if epochs is not None else f" ({recipe})"),
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help="training batch size" + ("" if batch_size is not None else f" ({recipe})"),
    )
    p.add_argument(
        "--lr",
        type=positive_float,
        default=lr,
        help="learning rate" + ("" if lr is not None else f" (default: {lr_default})"),
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed")
    p.add_argument("--out", default=None, help="output directory (default runs/<task>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--logger",
        default=None,
        choices=["tensorboard", "csv", "none"],
        help="run logs in OUT: TensorBoard event files and metrics.csv, metrics.csv only, or "
        "none (default: tensorboard when tensorboardX is installed, else csv)",
    )
    p.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="train data-parallel on N ranks (mpiexec); --batch-size is then the global batch",
    )
    p.add_argument(
        "--precision",
        default="32",
        choices=["32", "16-mixed", "bf16-mixed", "tf32"],
        help="32 (default) | 16-mixed (float16 autocast + gradient scaler) | bf16-mixed "
        "(bfloat16 autocast) | tf32 (cuda float32 GEMMs on TF32 tensor cores); "
        "a --resume keeps the checkpoint's",
    )


def update_json(path: Path, extra: dict) -> None:
    """Merge `extra` into a JSON file written by a trainer (atomically; rank 0 alone)."""
    from engine.distributed import is_main_process  # noqa: PLC0415

    if not is_main_process():
        return
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(extra)
    write_json(path, data)


def apply_recipe(args, recipe: dict, keys) -> dict:
    """Fill each option in `keys` that the command line left at None from the dataset's `recipe`
    (so `--dataset mnist` runs the mnist recipe) and return the values used, for metrics.json."""
    used = {}
    for key in keys:
        if getattr(args, key, None) is None:
            setattr(args, key, recipe[key])
        used[key] = getattr(args, key)
    return used
