"""The `tensortape` command line: thin verbs that parse arguments and call the trainers.

    tensortape train classifier --model cnn --dataset digits --epochs 10 --out runs/cnn
    tensortape train gan|cgan|pix2pix|cyclegan|stylegan|ae|vae|conv-vae ...
    tensortape sample CHECKPOINT --n 64 --out grid.png
    tensortape mix CHECKPOINT --out mix.png          (StyleGAN style mixing)
    tensortape bench [--device cpu|cuda]
    tensortape launch --nproc 4 train.py [args]   (N ranks under MPI: data-parallel training)

Each trainable model is a module in `tensortape/tasks/` with `add_arguments(parser)`,
`run(args)` and, for generators, `sample(checkpoint, args)`; the checkpoint names its task.

A user's mistake ends in one line on stderr and a non-zero exit status (2 for a bad option, as
argparse does; 1 for a bad file, dataset or checkpoint, or a run whose loss became NaN);
a traceback means a bug, and `--debug` shows one for user errors too.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

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
GENERATORS = tuple(name for name in TASKS if name != "classifier")


def task_module(name: str):
    return importlib.import_module(f"tensortape.tasks.{TASKS[name]}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except None (the help text then says where it comes from)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action, argparse._VersionAction):
            return action.help or ""
        return super()._get_help_string(action)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("tensortape")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _leaf(verbs, name: str, **kw) -> argparse.ArgumentParser:
    p = verbs.add_parser(name, formatter_class=HelpFormatter, allow_abbrev=False, **kw)
    p.add_argument("--debug", action="store_true", help="show a traceback for any error")
    return p


def _positive_int(text: str) -> int:
    from tensortape.tasks.common import positive_int  # noqa: PLC0415

    return positive_int(text)


def _finite_float(text: str) -> float:
    from tensortape.tasks.common import finite_float  # noqa: PLC0415

    return finite_float(text)


def _non_negative_int(text: str) -> int:
    from tensortape.tasks.common import non_negative_int  # noqa: PLC0415

    return non_negative_int(text)


def _add_generator_options(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("checkpoint", help="a checkpoint.npz written by `tensortape train`")
    p.add_argument("--out", default=out, help="PNG file to write (parent folders are created)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=_non_negative_int, default=0, help="random seed")
    p.add_argument(
        "--truncation-psi",
        type=_finite_float,
        default=None,
        help="StyleGAN truncation: 1 = none (the default), 0 = the mean w",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tensortape",
        description=__doc__.split("\n\n")[0],
        formatter_class=HelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"tensortape {_version()}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    train = verbs.add_parser("train", help="train a model", allow_abbrev=False)
    tasks = train.add_subparsers(dest="task", required=True)
    for name in TASKS:
        module = task_module(name)
        help_text = module.HELP.get(name, name) if isinstance(module.HELP, dict) else module.HELP
        p = _leaf(tasks, name, help=help_text, description=help_text)
        module.add_arguments(p, name)
        p.add_argument(
            "--overwrite",
            action="store_true",
            help="replace the run already in --out (without it, an existing run is refused)",
        )

    sample = _leaf(verbs, "sample", help="draw samples from a trained generator checkpoint")
    _add_generator_options(sample, "samples.png")
    sample.add_argument("--n", type=_positive_int, default=64, help="number of samples")
    sample.add_argument(
        "--data-dir",
        default=None,
        help="pix2pix/cyclegan: where the test images are (default: the training run's)",
    )

    mix = _leaf(verbs, "mix", help="StyleGAN style-mixing grid from a checkpoint")
    _add_generator_options(mix, "mix.png")
    mix.add_argument("--n", type=_positive_int, default=4, help="source and destination latents")
    mix.add_argument("--layers", default="coarse", help="coarse | middle | fine | all | i,j,k")

    from . import launch

    launch.add_arguments(
        _leaf(verbs, "launch", help="run a training script on N ranks with mpiexec")
    )

    bench = _leaf(verbs, "bench", help="benchmarks side by side with PyTorch")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run")
    bench.add_argument(
        "--repeats",
        type=_positive_int,
        default=None,
        help="timed steps per build (default: a few seconds' worth)",
    )
    bench.add_argument("--only", default=None, help="comma-separated workload names (default: all)")
    return parser


def _leaf_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The parser of the (sub-)command that argv names, e.g. `train gan`'s."""
    leaf = parser
    for token in argv:
        sub = next((a for a in leaf._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is not None and token in sub.choices:
            leaf = sub.choices[token]
    return leaf


def explicit_options(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The `dest`s of the options written on the command line (not left at their defaults)."""
    leaf = _leaf_parser(parser, argv)
    found = set()
    for action in leaf._actions:
        for option in action.option_strings:
            if any(t == option or t.startswith(option + "=") for t in argv):
                found.add(action.dest)
    return found


def _generator_checkpoint(args, verb: str) -> str:
    from .tasks.common import RunError, UsageError, checkpoint_state  # noqa: PLC0415

    task = checkpoint_state(args.checkpoint)["task"]
    if verb == "mix" and task != "stylegan":
        raise RunError(f"mix needs a StyleGAN checkpoint, {args.checkpoint} holds a {task}")
    if task not in GENERATORS:
        raise RunError(
            f"{args.checkpoint} holds a {task}, which draws no samples: sample needs a "
            f"generator's checkpoint ({', '.join(GENERATORS)})"
        )
    if args.truncation_psi is not None and task != "stylegan":
        raise UsageError(f"--truncation-psi is for StyleGAN checkpoints; {args.checkpoint} "
                         f"holds a {task}")  # fmt: skip
    if getattr(args, "data_dir", None) is not None and task not in ("pix2pix", "cyclegan"):
        raise UsageError(f"--data-dir is for pix2pix/cyclegan checkpoints; {args.checkpoint} "
                         f"holds a {task}")  # fmt: skip
    if args.truncation_psi is None:
        args.truncation_psi = 1.0
    return task


def _prepare_image_out(args) -> None:
    """Refuse to replace an existing --out without --overwrite; create its parent folders."""
    from pathlib import Path  # noqa: PLC0415

    from .tasks.common import UsageError  # noqa: PLC0415

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name such as {out}/grid.png")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)


def _bench(args) -> None:
    from benchmarks import run as bench  # noqa: PLC0415

    from .tasks.common import UsageError  # noqa: PLC0415

    if args.only:
        known = [w.name for w in bench.WORKLOADS] + ["overhead"]
        unknown = sorted(set(args.only.split(",")) - set(known))
        if unknown:
            raise UsageError(f"--only: unknown workload(s) {unknown}; known: {','.join(known)}")
    bench.main(
        ["--device", args.device]
        + (["--repeats", str(args.repeats)] if args.repeats else [])
        + (["--only", args.only] if args.only else [])
    )


def _train(args, argv: list[str]) -> int:
    from engine import distributed  # noqa: PLC0415

    from . import launch  # noqa: PLC0415
    from .tasks.common import check_global_batch  # noqa: PLC0415

    if not distributed.is_mpi_launched():
        if args.nproc > 1:  # data parallel: this same command on N ranks under mpiexec
            check_global_batch(args.batch_size, args.nproc)  # before any rank starts
            return launch.train_on_ranks(args.nproc, argv)
    else:  # one rank of `--nproc N`, or of `mpiexec -n N python -m mpi4py -m tensortape`
        launch.join_ranks(args.nproc)
        check_global_batch(args.batch_size, distributed.get_world_size())
        if args.device == "auto":
            args.device = distributed.local_device()
    task_module(args.task).run(args)
    return 0


def _dispatch(args, argv: list[str]) -> int:
    if args.verb == "train":
        return _train(args, argv)
    elif args.verb in ("sample", "mix"):
        task = _generator_checkpoint(args, args.verb)
        _prepare_image_out(args)
        module = task_module(task)
        (module.sample if args.verb == "sample" else module.mix)(args.checkpoint, args)
    elif args.verb == "launch":
        from . import launch  # noqa: PLC0415

        return launch.run(args)
    elif args.verb == "bench":
        _bench(args)
    return 0


def _user_errors() -> tuple[type[BaseException], ...]:
    from generative.trainer import NonFiniteLossError  # noqa: PLC0415

    from .tasks.common import RunError  # noqa: PLC0415

    return (RunError, NonFiniteLossError)


def _fail(line: str, status: int) -> NoReturn:
    """The one line on stderr, then exit with `status`; in a rank of `--nproc`, the whole job
    is aborted (the other ranks may be waiting for this one in a collective)."""
    from engine import distributed  # noqa: PLC0415

    if distributed.reports_failure():  # on ranks: rank 0's line, or a lone failing rank's
        print(line, file=sys.stderr)
    distributed.abort_at_exit(status)
    raise SystemExit(status) from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a user error raises SystemExit (2: usage, 1: anything else)."""
    from .tasks.common import DeprecatedAlias, UsageError  # noqa: PLC0415

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # argparse would print the top-level usage; the verb's own is the useful one
        _leaf_parser(parser, argv).error(f"unrecognized arguments: {' '.join(extra)}")
    args.explicit = explicit_options(parser, argv)
    args.option_names = {  # dest -> the option's name, for messages (dest "loss": --gan-loss)
        a.dest: a.option_strings[-1]
        for a in _leaf_parser(parser, argv)._actions
        if a.option_strings and not isinstance(a, DeprecatedAlias)
    }
    from engine import memory  # noqa: PLC0415  (`--help` stays fast without the engine)

    prog = " ".join(["tensortape", args.verb] + ([args.task] if args.verb == "train" else []))
    try:
        memory.configure_from_env()  # keep freed host memory for the next step (README)
    except ValueError as e:  # a malformed TENSORTAPE_HOST_CACHE_MB
        _fail(f"{prog}: error: {e}", 2)
    try:
        code = _dispatch(args, argv)
    except UsageError as e:
        if args.debug:
            raise
        _fail(f"{prog}: error: {e}", 2)
    except _user_errors() as e:
        if args.debug:
            raise
        _fail(f"{prog}: error: {e}", 1)
    except OSError as e:  # a file the user named: unwritable --out, a full disk, ...
        if args.debug or e.filename is None:
            raise
        _fail(f"{prog}: error: {e.filename}: {e.strerror}", 1)
    return code


if __name__ == "__main__":
    sys.exit(main())
