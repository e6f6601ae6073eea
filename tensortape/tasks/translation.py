"""`tensortape train pix2pix|cyclegan`: image-to-image translation.

    tensortape train pix2pix --dataset digits --out runs/pix2pix        (masked digit completion)
    tensortape train pix2pix --l1-only --out runs/l1                    (the L1-only baseline)
    tensortape train cyclegan --dataset digits --out runs/cyclegan      (digits <-> inverted)
    tensortape sample runs/pix2pix/checkpoint.npz --n 32 --out grid.png

pix2pix completes images whose lower half is masked (pairs: masked image -> image); cyclegan
learns digits <-> colour-inverted digits from two disjoint unpaired bags (the true mapping 1 - x
is known, so the error is measured). Writes into OUT: `samples.png` every epoch (test examples:
inputs, translations, targets in blocks of rows; `samples/epoch_NNNN.png`), `metrics.json`
(per-epoch losses and test errors: `test_l1`, mean |G(x) - y| over whole test images, or
`test_mae_ab`; the final numbers under "test", pix2pix's L1 on the masked rows only) and
`checkpoint.npz` (`--resume` continues from it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import engine
from engine import distributed
from engine.data import DataLoader
from engine.distributed import is_main_process
from generative.cyclegan import (
    CYCLEGAN_RECIPES,
    UnpairedLoader,
    build_cyclegan,
    inverted_bags,
)
from generative.pix2pix import (
    PIX2PIX_RECIPES,
    build_pix2pix,
    comparison_rows,
    completion_metrics,
    mask_lower,
    masked_pairs,
    repeat_rows,
)
from generative.trainer import rng_state_preserved

from .common import (
    RunError,
    UsageError,
    add_common_arguments,
    add_option,
    check_global_batch,
    load_dataset,
    non_negative_float,
    non_negative_int,
    positive_int,
    prepare_run,
    resolve_device,
    resume,
    write_json,
)

HELP = {
    "pix2pix": "paired translation: complete digits whose lower half is masked (adversarial + L1)",
    "cyclegan": "unpaired translation: digits <-> colour-inverted digits (cycle consistency)",
}

RECIPES = {"pix2pix": PIX2PIX_RECIPES, "cyclegan": CYCLEGAN_RECIPES}

# CLI option -> recipe setting, per task (None: keep the recipe's value)
_SETTINGS = {
    "pix2pix": ("lr", "hidden", "noise_dim", "lambda_l1", "loss"),
    "cyclegan": ("lr", "width", "hidden", "lambda_cycle", "lambda_identity", "loss"),
}


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common_arguments(p, epochs=None, batch_size=None, lr=None)
    p.epilog = "epochs, batch size, lr and the networks' sizes default to the dataset's recipe"
    if name == "pix2pix":
        add_option(
            p,
            "--hidden-dim",
            old="--hidden",
            dest="hidden",  # the recipe's (and its checkpoints') name
            type=positive_int,
            default=None,
            help="hidden units of both networks (default: the recipe's); formerly --hidden",
        )
        p.add_argument(
            "--lambda-l1",
            type=non_negative_float,
            default=None,
            help="weight of the L1 term (default: the recipe's)",
        )
        p.add_argument(
            "--noise-dim",
            type=non_negative_int,
            default=None,
            help="generator noise size (default: the recipe's)",
        )
        p.add_argument(
            "--gan-loss",
            dest="loss",
            default=None,
            choices=["bce", "lsgan"],
            help="adversarial loss (default: the recipe's)",
        )
        p.add_argument("--l1-only", action="store_true", help="train the L1-only baseline")
    else:
        p.add_argument(
            "--lambda-cycle",
            type=non_negative_float,
            default=None,
            help="weight of the cycle-consistency term (default: the recipe's)",
        )
        p.add_argument(
            "--lambda-identity",
            type=non_negative_float,
            default=None,
            help="weight of the identity term (default: the recipe's)",
        )
        add_option(
            p,
            "--hidden-dim",
            old="--width",
            dest="width",  # the recipe's (and its checkpoints') name
            type=positive_int,
            default=None,
            help="the generators' conv channels (default: the recipe's); formerly --width",
        )
        add_option(
            p,
            "--disc-hidden-dim",
            old="--hidden",
            dest="hidden",
            type=positive_int,
            default=None,
            help="the discriminators' hidden units (conv channels on MNIST; default: the "
            "recipe's); formerly --hidden",
        )
        p.add_argument(
            "--gan-loss",
            dest="loss",
            default=None,
            choices=["lsgan", "bce"],
            help="adversarial loss (default: the recipe's)",
        )


def settings(args) -> dict:
    """The recipe overrides given on the command line (JSON-able, stored in the checkpoint)."""
    out = {}
    for key in _SETTINGS[args.task]:
        value = getattr(args, key, None)
        if value is not None:
            out[key] = value
    return out


def build(task: str, dataset: str, overrides: dict, l1_only: bool = False, **kw) -> Any:
    """The trainer of `task` for `dataset` with recipe `overrides` (kw: device, seed, ...)."""
    if dataset not in RECIPES[task]:
        raise UsageError(f"no {task} recipe for dataset {dataset!r}")
    if task == "pix2pix":
        return build_pix2pix(dataset, adversarial=not l1_only, **overrides, **kw)
    return build_cyclegan(dataset, **overrides, **kw)


def run(args) -> dict:
    task = args.task
    device = resolve_device(args.device)
    out = prepare_run(args, task)
    recipe = RECIPES[task][args.dataset]  # every --dataset choice has one
    epochs = args.epochs if args.epochs is not None else recipe["epochs"]
    batch_size = args.batch_size if args.batch_size is not None else recipe["batch_size"]
    if distributed.is_initialized():  # on ranks: the recipe's global batch divides too
        check_global_batch(batch_size, distributed.get_world_size())
    train_set, test_set = load_dataset(args.dataset, args.data_dir)
    overrides = settings(args)
    l1_only = bool(getattr(args, "l1_only", False))
    x_test = test_set.tensors[0]
    if task == "pix2pix":
        eval_data = (mask_lower(x_test), x_test)
    else:
        eval_data = (x_test, 1.0 - x_test)
    model = build(
        task, args.dataset, overrides, l1_only, eval_data=eval_data, device=device,
        seed=args.seed, out_dir=out, progress=not args.no_progress,
    )  # fmt: skip
    model.checkpoint_meta = {
        "task": task,
        "dataset": args.dataset,
        "data_dir": str(Path(args.data_dir).resolve()),  # sample may run from elsewhere
        "settings": overrides,
        "l1_only": l1_only,
    }
    loader = _loader(task, train_set, batch_size, args.seed, device)
    model.set_preview(*eval_data)  # the per-epoch grid shows test inputs and targets
    ckpt = resume(model, out, args)
    model.fit(loader, epochs)

    with rng_state_preserved():  # evaluation must not move a later --resume's stream
        test = evaluate(model, task, x_test)
        model.save_samples(out / "samples.png")
    used = {**recipe, **overrides, "epochs": epochs, "batch_size": batch_size, "l1_only": l1_only}
    metrics = {**model.metrics(), "task": task, "dataset": args.dataset, "device": str(device),
               "settings": used, "test": test}  # fmt: skip
    if is_main_process():  # rank 0 alone writes files
        write_json(out / "metrics.json", metrics)
    model.save_checkpoint(ckpt, loader)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items())
    print(f"{task}: {shown} -> {out}/samples.png, {out}/metrics.json, {out}/checkpoint.npz")
    return metrics


def _loader(task: str, train_set, batch_size: int, seed: int, device) -> Any:
    if task == "pix2pix":
        return DataLoader(
            masked_pairs(train_set), batch_size, shuffle=True, seed=seed, device=device
        )
    bag_a, bag_b = inverted_bags(train_set, seed=seed)
    return UnpairedLoader(
        DataLoader(bag_a, batch_size, shuffle=True, seed=seed, device=device),
        DataLoader(bag_b, batch_size, shuffle=True, seed=seed + 1, device=device),
    )


def evaluate(model, task: str, x_test) -> dict[str, float]:
    """Final test numbers: pix2pix L1 on the masked rows and sharpness (real digits' too);
    cyclegan mean absolute error against the true inversion, both ways."""
    if task == "pix2pix":
        completed = model.translate(mask_lower(x_test)).cpu()
        got = completion_metrics(completed, x_test)
        real = completion_metrics(x_test, x_test)
        return {
            "l1_masked": got["l1"],
            "gradient": got["gradient"],
            "laplacian_var": got["laplacian_var"],
            "real_gradient": real["gradient"],
            "real_laplacian_var": real["laplacian_var"],
        }
    return {
        "mae_ab": model.evaluate(x_test, 1.0 - x_test, "ab"),
        "mae_ba": model.evaluate(1.0 - x_test, x_test, "ba"),
    }


def sample(checkpoint: str, args) -> None:
    """`tensortape sample CHECKPOINT`: `--n` test examples translated, as blocks of rows
    (pix2pix: masked input / completion / real; cyclegan: digit / G_ab / G_ba(G_ab))."""
    from dataio.images import save_grid  # noqa: PLC0415

    device = resolve_device(args.device)
    meta = engine.load(checkpoint)
    task, dataset = meta["task"], meta.get("dataset", "digits")
    model = build(task, dataset, dict(meta.get("settings") or {}), bool(meta.get("l1_only")),
                  device=device, progress=False)  # fmt: skip
    model.load_checkpoint(checkpoint)
    x = _sample_inputs(model, task, meta, args.n, getattr(args, "data_dir", None))
    engine.manual_seed(args.seed)
    if task == "pix2pix":
        grid = comparison_rows(mask_lower(x), model.translate(mask_lower(x)), x, nrow=8)
    else:
        ab = model.translate(x, "ab")
        grid = comparison_rows(x, ab, model.translate(ab, "ba"), nrow=8)
    save_grid(grid.detach().cpu().numpy(), args.out, nrow=8)
    print(f"{args.n} {task} translations from {checkpoint} -> {args.out}")


def _sample_inputs(model, task: str, meta: dict, n: int, data_dir: str | None = None):
    """The first n test images of the checkpoint's dataset, read from `data_dir` (sample's
    --data-dir) or the training run's (absolute) data folder, never downloaded; without
    --data-dir an unreadable folder falls back to the checkpoint's preview images."""
    dataset = meta.get("dataset", "digits")
    try:
        _, test_set = load_dataset(
            dataset, data_dir or meta.get("data_dir", "data"), download=False
        )
        x = test_set.tensors[0]
    except RunError:
        if data_dir is not None:
            raise
        x = model.preview_targets if task == "pix2pix" else model.preview_a
    return repeat_rows(x, n).to(model.device)
