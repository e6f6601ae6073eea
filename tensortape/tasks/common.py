"""What every training verb shares: device choice, datasets by name, output folders, seeding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import engine


def resolve_device(spec: str) -> str:
    """'auto' picks cuda when a GPU answers, else cpu."""
    if spec == "auto":
        return "cuda" if engine.cuda.is_available() else "cpu"
    engine.device(spec)  # a clear error now when cuda is asked for without a GPU
    return spec


def load_dataset(name: str, data_dir: str = "data"):
    """(train, test) TensorDatasets of float32 images in [0, 1] shaped (N, 1, H, W), int64 labels."""
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


def write_json(path: Path, obj) -> None:
    """Atomic JSON write (temp file + rename): a crash never leaves a torn metrics file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)
