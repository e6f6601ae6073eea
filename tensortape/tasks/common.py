"""What every training verb shares: device choice, datasets by name, output folders, seeding."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dataio.files import write_json


def resolve_device(spec: str) -> str:
    """'auto' picks cuda when a GPU answers, else cpu; asking for cuda without one is an error."""
    from generative.trainer import resolve_device as resolve  # noqa: PLC0415

    return str(resolve(spec))


def load_dataset(name: str, data_dir: str = "data"):
    """(train, test) TensorDatasets: float32 images in [0, 1], (N, 1, H, W); int64 labels."""
    from engine import data

    if name == "digits":
        return data.load_digits()
    if name in ("mnist", "fashion"):
        return data.load_mnist(data_dir, kind=name)
    raise SystemExit(f"unknown dataset {name!r}: expected digits, mnist or fashion")


def output_dir(args, task: str) -> Path:
    out = Path(args.out or os.path.join("runs", task))
    out.mkdir(parents=True, exist_ok=True)
    return out


def resume(trainer, out: Path, args) -> Path:
    """OUT/checkpoint.npz, loaded into `trainer` first with `--resume` when it exists."""
    ckpt = out / "checkpoint.npz"
    if args.resume and ckpt.exists():
        trainer.load_checkpoint(ckpt)
    return ckpt


def save_square_grid(images, path) -> None:
    """Images clipped to [0, 1] as a PNG grid about as wide as it is tall."""
    from engine.utils import save_image  # noqa: PLC0415

    nrow = max(1, round(images.shape[0] ** 0.5))
    save_image(images.cpu().clip(0.0, 1.0), path, nrow=nrow)


def add_common_arguments(
    p: argparse.ArgumentParser, epochs: int | None, batch_size: int | None, lr: float | None
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
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (default runs/<task>)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def update_json(path: Path, extra: dict) -> None:
    """Merge `extra` into a JSON file written by a trainer (atomically)."""
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
