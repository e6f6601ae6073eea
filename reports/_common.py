"""What the GAN-family report scripts share: their common options, the reference row of the real
test digits, the PyTorch prototypes' setup and MLP, and the JSON output.

The scripts run as `python reports/NAME.py`, so they import this file as the module `_common`.
It imports nothing heavy: the scripts set their BLAS thread variables before NumPy loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with the options every report takes."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    p.add_argument("--torch", action="store_true", help="also run the PyTorch prototype")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with the output folder created."""
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def real_row(metrics: dict) -> dict:
    """The table row of the real test digits (the reference the models are read against)."""
    return {"model": "real test digits", "device": "-", "seconds": 0.0, **metrics}


def write_json(path: Path | None, obj) -> None:
    """`obj` as JSON in `path` (when given), written atomically."""
    from dataio.files import write_json as write  # noqa: PLC0415  (after the script's sys.path)

    if path is not None:
        write(path, obj, indent=1)


def torch_prototype(seed: int):
    """torch on one thread (the matrices are tiny and the CPU is often shared), seeded."""
    import torch  # noqa: PLC0415

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    return torch


def torch_mlp(nn, n_in: int, n_out: int, hidden: int, sigmoid: bool):
    """The prototypes' MLP: two hidden layers with LeakyReLU(0.2), optionally a sigmoid out."""
    layers = [
        nn.Linear(n_in, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, n_out),
    ]
    return nn.Sequential(*layers, *([nn.Sigmoid()] if sigmoid else []))
