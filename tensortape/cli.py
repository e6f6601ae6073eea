"""The `tensortape` command line: thin verbs that parse arguments and call the trainers.

    tensortape train classifier --model cnn --dataset digits --epochs 10 --out runs/cnn
    tensortape train gan|cgan|pix2pix|cyclegan|stylegan|ae|vae|conv-vae ...
    tensortape sample CHECKPOINT --n 64 --out grid.png
    tensortape mix CHECKPOINT --out mix.png          (StyleGAN style mixing)
    tensortape bench [--device cpu|cuda]
    tensortape launch --nproc 4 train.py [args]   (N ranks under MPI: data-parallel training)

Each trainable model is a module in `tensortape/tasks/` with `add_arguments(parser)`,
`run(args)` and, for generators, `sample(checkpoint, args)`; the checkpoint names its task.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# task name -> module in tensortape.tasks (build_parser imports each one for its options)
TASKS = {
    "classifier": "classifier",
    "gan": "gan",
    "cgan": "gan",
    "pix2pix": "translation",
    "cyclegan": "translation",
    "stylegan": "stylegan",
    "ae": "autoencoder",
    "vae": "autoencoder",
    "conv-vae": "autoencoder",
}


def task_module(name: str):
    return importlib.import_module(f"tensortape.tasks.{TASKS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tensortape", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train a model")
    tasks = train.add_subparsers(dest="task", required=True)
    for name in TASKS:
        module = task_module(name)
        p = tasks.add_parser(
            name, help=module.HELP.get(name, name) if isinstance(module.HELP, dict) else module.HELP
        )
        module.add_arguments(p, name)

    sample = verbs.add_parser("sample", help="draw samples from a trained generator checkpoint")
    sample.add_argument("checkpoint")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--device", default="auto")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--truncation-psi",
        type=float,
        default=1.0,
        help="StyleGAN truncation (1 = none, 0 = the mean w)",
    )

    mix = verbs.add_parser("mix", help="StyleGAN style-mixing grid from a checkpoint")
    mix.add_argument("checkpoint")
    mix.add_argument("--out", default="mix.png")
    mix.add_argument("--n", type=int, default=4, help="source and destination latents")
    mix.add_argument("--layers", default="coarse", help="coarse | middle | fine | i,j,k")
    mix.add_argument("--device", default="auto")
    mix.add_argument("--seed", type=int, default=0)
    mix.add_argument("--truncation-psi", type=float, default=1.0)

    from . import launch

    launch.add_arguments(
        verbs.add_parser("launch", help="run a training script on N ranks with mpiexec")
    )

    bench = verbs.add_parser("bench", help="benchmarks side by side with PyTorch")
    bench.add_argument("--device", default="cpu")
    bench.add_argument("--repeats", type=int, default=None)
    bench.add_argument("--only", default=None, help="comma-separated workload names")
    return parser


def checkpoint_task(path: str) -> str:
    import engine

    meta = engine.load(path)
    task = meta.get("task") if isinstance(meta, dict) else None
    if task not in TASKS:
        raise SystemExit(f"{path}: not a tensortape generator checkpoint (task={task!r})")
    return task


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from engine import memory  # noqa: PLC0415  (`--help` stays fast without the engine)

    memory.configure_from_env()  # keep freed host memory for the next step (README)
    if args.verb == "train":
        task_module(args.task).run(args)
    elif args.verb == "sample":
        task = checkpoint_task(args.checkpoint)
        task_module(task).sample(args.checkpoint, args)
    elif args.verb == "mix":
        task = checkpoint_task(args.checkpoint)
        if task != "stylegan":
            raise SystemExit(f"mix needs a StyleGAN checkpoint, {args.checkpoint} holds a {task}")
        task_module(task).mix(args.checkpoint, args)
    elif args.verb == "launch":
        from . import launch

        return launch.run(args)
    elif args.verb == "bench":
        from benchmarks import run as bench

        bench.main(
            ["--device", args.device]
            + (["--repeats", str(args.repeats)] if args.repeats else [])
            + (["--only", args.only] if args.only else [])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
