"""`tensortape train gan|cgan`: the default (conditional) GAN recipes, and `sample` for them.

Writes OUT/samples.png (and samples/epoch_NNNN.png), OUT/metrics.json (loss histories plus the
judge's verdict on 1,000 samples: classes covered, Inception-Score analogue, label accuracy for
cgan) and OUT/checkpoint.npz; `--resume` continues from the checkpoint bit-exactly (cpu).
"""

from __future__ import annotations

import argparse

import engine
from engine.data import DataLoader

from .common import (
    add_common_arguments,
    add_option,
    apply_recipe,
    check_batch_size,
    load_dataset,
    positive_int,
    prepare_run,
    resolve_device,
    resume,
    update_json,
)

HELP = {
    "gan": "a GAN (bce | hinge | wgan-gp losses) on digits or MNIST",
    "cgan": "a class-conditional GAN: sample any digit on request",
}
JUDGED_SAMPLES = 1000


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common_arguments(p, epochs=None, batch_size=None, lr=None)
    p.epilog = "epochs, batch size, lr, latent and hidden sizes default to the dataset's recipe"
    p.add_argument(
        "--gan-loss",
        dest="loss",
        default="bce",
        choices=["bce", "hinge", "wgan-gp"],
        help="adversarial loss",
    )
    p.add_argument(
        "--latent-dim",
        type=positive_int,
        default=None,
        help="size of the generator's input z (default: the dataset's recipe)",
    )
    add_option(
        p,
        "--hidden-dim",
        dest="hidden",  # the recipe's name
        type=positive_int,
        default=None,
        help="hidden units of both networks (conv channels on MNIST; default: the dataset's "
        "recipe)",
    )


def settings(args) -> dict:
    """The settings this run uses: the recipe of (task, dataset) under the options given."""
    from generative.models import RECIPES

    recipe = RECIPES[(args.task, args.dataset)]
    used = apply_recipe(args, recipe, ("epochs", "batch_size", "lr", "latent_dim", "hidden"))
    return {**recipe, **used, "loss": args.loss}


def build(
    task: str, dataset: str, loss: str, device: str, seed, out_dir, progress: bool, overrides: dict
):
    from generative import build_cgan, build_gan

    make = build_gan if task == "gan" else build_cgan
    model = make(
        dataset,
        loss=loss,
        device=device,
        seed=seed,
        out_dir=out_dir,
        progress=progress,
        **overrides,
    )
    # What `tensortape sample` needs to rebuild the networks from the checkpoint alone.
    model.checkpoint_meta = {"task": task, "dataset": dataset, "loss": loss, "overrides": overrides}
    return model


def run(args) -> dict:
    from generative import load_judge

    device = resolve_device(args.device)
    out = prepare_run(args, args.task)
    used = settings(args)
    train, _ = load_dataset(args.dataset, args.data_dir)
    check_batch_size(args.batch_size, len(train), drop_last=True)
    overrides = {"latent_dim": args.latent_dim, "lr": args.lr, "hidden": args.hidden}
    model = build(
        args.task, args.dataset, args.loss, device, args.seed, out, not args.no_progress, overrides
    )
    resume(model, out, args)
    loader = DataLoader(train, args.batch_size, shuffle=True, drop_last=True, seed=args.seed)
    model.fit(loader, args.epochs)

    update_json(out / "metrics.json", {"settings": used})
    quality = {}
    if args.dataset == "digits":
        judge = load_judge()
        if args.task == "cgan":
            labels = engine.arange(JUDGED_SAMPLES, device=model.device) % 10
            quality = judge.report(model.sample(JUDGED_SAMPLES, labels), labels.numpy())
        else:
            quality = judge.report(model.sample(JUDGED_SAMPLES))
        update_json(out / "metrics.json", {"judge": quality})
    print(f"{args.task}: {quality or 'trained'} -> {out}/samples.png, metrics.json, checkpoint.npz")
    return quality


def sample(checkpoint: str, args) -> None:
    state = engine.load(checkpoint)
    model = build(
        state["task"],
        state["dataset"],
        state["loss"],
        resolve_device(args.device),
        None,
        None,
        False,
        dict(state["overrides"]),
    )
    model.load_checkpoint(checkpoint)
    engine.manual_seed(args.seed)
    model.save_samples(args.out, model.sample(args.n))
    print(f"{args.n} samples -> {args.out}")
