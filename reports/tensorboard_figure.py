"""A picture of what TensorBoard shows for a run, drawn by matplotlib from its event files.

    python reports/tensorboard_figure.py RUN_DIR [--out docs/img/tensorboard_gan.png]
    python reports/tensorboard_figure.py --train-gan [--out ...]   (trains `train gan` first)

No browser runs on the machines that build this project, so the README's "screenshot" is this
rendering: the event files are read back with TensorBoard's own `EventAccumulator` (the reader
its web page uses), every scalar tag is drawn as TensorBoard's Scalars tab draws it (the raw
values faint, the exponential moving average with its default smoothing 0.6 on top, against the
global step), and the last `samples` image is shown as its Images tab shows it. Needs the dev
extra's `tensorboard`.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dataio.plots import _figure, _save  # noqa: E402

SMOOTHING = 0.6  # TensorBoard's default
ORANGE = "#ff7043"  # TensorBoard's colour of a run's first line
COLUMNS = 4


def smooth(values: numpy.ndarray, weight: float = SMOOTHING) -> numpy.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average."""
    out, last = numpy.empty(len(values)), 0.0
    for i, v in enumerate(values):  # a few hundred points: the plain loop is clearest
        last = last * weight + (1 - weight) * v
        out[i] = last / (1 - weight ** (i + 1))
    return out


def read_run(run_dir: Path) -> tuple[dict[str, tuple[numpy.ndarray, numpy.ndarray]], tuple]:
    """{tag: (steps, values)} of every scalar, and (step, HxWx3 image) of the last `samples`."""
    from PIL import Image  # noqa: PLC0415
    from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415

    acc = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "images": 0}
    )
    acc.Reload()
    scalars = {
        tag: (
            numpy.array([e.step for e in acc.Scalars(tag)]),
            numpy.array([e.value for e in acc.Scalars(tag)]),
        )
        for tag in sorted(acc.Tags()["scalars"])
    }
    image = None
    if "samples" in acc.Tags()["images"]:
        last = acc.Images("samples")[-1]
        image = (last.step, numpy.asarray(Image.open(io.BytesIO(last.encoded_image_string))))
    return scalars, image


def draw(scalars: dict, image, path: Path, title: str) -> None:
    """Panels of the scalars (and the image) in rows of COLUMNS, written as a PNG."""
    panels = len(scalars) + (image is not None)
    rows = math.ceil(panels / COLUMNS)
    fig = _figure(COLUMNS * 300, rows * 230 + 30)
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
    for ax, (tag, (steps, values)) in zip(axes, scalars.items(), strict=False):
        ax.plot(steps, values, color=ORANGE, alpha=0.3, linewidth=1)
        ax.plot(steps, smooth(values), color=ORANGE, linewidth=1.5)
        ax.set_title(tag, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    if image is not None:
        ax = axes[len(scalars)]
        ax.imshow(image[1], interpolation="nearest")
        ax.set_title(f"samples (step {image[0]})", fontsize=9, loc="left")
        ax.set_axis_off()
    for ax in axes[panels:]:
        ax.set_axis_off()
    _save(fig, path)


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", type=Path, help="a run's --out folder")
    p.add_argument("--train-gan", action="store_true", help="train `tensortape train gan` first")
    p.add_argument("--epochs", type=int, default=None, help="with --train-gan (default: recipe)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "tensorboard_gan.png")
    args = p.parse_args(argv)
    if (args.run_dir is None) == (not args.train_gan):
        p.error("give a RUN_DIR or --train-gan")
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.run_dir
        if args.train_gan:
            run_dir = Path(scratch) / "gan"
            cmd = [sys.executable, "-m", "tensortape", "train", "gan", "--device", "cpu"]
            cmd += ["--no-progress", "--out", str(run_dir)]
            cmd += ["--epochs", str(args.epochs)] if args.epochs else []
            # Tiny matrices: one BLAS thread is fastest, as in the other reports.
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        scalars, image = read_run(run_dir)
        if not scalars:
            raise SystemExit(f"{run_dir}: no TensorBoard scalars there")
        name = "tensortape train gan" if args.train_gan else str(run_dir)
        draw(scalars, image, args.out, f"TensorBoard scalars and images of `{name}`")
    print(f"{len(scalars)} scalar tags{' and the samples image' if image else ''} -> {args.out}")
    return args.out


if __name__ == "__main__":
    main()
