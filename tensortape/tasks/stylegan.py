"""`tensortape train stylegan`, and `sample` / `mix` from its checkpoints.

    tensortape train stylegan --dataset digits --epochs 30 --out runs/stylegan
    tensortape sample runs/stylegan/checkpoint.npz --n 64 --out grid.png --truncation-psi 0.7
    tensortape mix runs/stylegan/checkpoint.npz --layers coarse --out mix.png

Training writes into OUT: `samples.png` (per epoch, and `samples/epoch_NNNN.png`, fixed latents
and noise), `mix.png` (coarse styles from the sources), `metrics.json` (per-epoch losses; on the
digits also the judge's classes covered and inception score of 1,000 samples) and
`checkpoint.npz` (`--resume` continues from it). `mix` draws the StyleGAN figure: the
destination images along the top, the sources down the left, each cell the destination with the
source's w at `--layers`.
"""

from __future__ import annotations

import argparse

import engine
from engine.data import DataLoader
from engine.distributed import is_main_process
from generative.stylegan import RECIPES, StyleGAN, build_stylegan
from generative.trainer import rng_state_preserved

from .common import (
    RunError,
    UsageError,
    add_common_arguments,
    apply_recipe,
    check_batch_size,
    load_dataset,
    non_negative_float,
    positive_int,
    prepare_run,
    probability,
    resolve_device,
    resume,
    save_square_grid,
    update_json,
)

HELP = "a compact StyleGAN (mapping network, modulated convs, style mixing, truncation, R1)"


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common_arguments(p, epochs=None, batch_size=None, lr=None)
    p.epilog = "epochs, batch size, lr and the networks default to the dataset's recipe"
    p.add_argument(
        "--r1-gamma",
        type=non_negative_float,
        default=None,
        help="R1 penalty weight (0 turns it off; default from the recipe)",
    )
    p.add_argument(
        "--mixing-prob",
        type=probability,
        default=None,
        help="probability of mixing regularisation per batch (default 0.9)",
    )
    p.add_argument(
        "--latent-dim",
        type=positive_int,
        default=None,
        help="size of the latent z (default: the dataset's recipe)",
    )


def _overrides(args) -> dict:
    """The recipe settings given on the command line (after `settings` filled lr from it)."""
    keys = {"r1_gamma": args.r1_gamma, "mixing_prob": args.mixing_prob, "z_dim": args.latent_dim}
    return {"lr": args.lr, **{k: v for k, v in keys.items() if v is not None}}


def settings(args) -> dict:
    """The settings this run uses: the dataset's recipe under the options given."""
    recipe = RECIPES[args.dataset]
    used = apply_recipe(args, recipe, ("epochs", "batch_size", "lr"))
    return {**recipe, **used, **_overrides(args)}


def _parse_layers(spec: str) -> str | list[int]:
    if spec in ("coarse", "middle", "fine", "all"):
        return spec
    try:
        return [int(i) for i in spec.split(",") if i.strip()]
    except ValueError:
        raise UsageError(
            f"--layers must be coarse, middle, fine, all or comma-separated indices, got {spec!r}"
        ) from None


def run(args) -> dict:
    device = resolve_device(args.device)
    out = prepare_run(args, "stylegan")
    used = settings(args)
    train_set, _ = load_dataset(args.dataset, args.data_dir)
    check_batch_size(args.batch_size, len(train_set), drop_last=True)
    trainer = build_stylegan(
        args.dataset,
        device=device,
        seed=args.seed,
        out_dir=out,
        progress=not args.no_progress,
        **_overrides(args),
    )
    if args.dataset == "digits":
        from generative.judge import load_judge  # noqa: PLC0415

        trainer.judge = load_judge()
    loader = DataLoader(
        train_set, args.batch_size, shuffle=True, drop_last=True, seed=args.seed, device=device
    )
    resume(trainer, out, args)
    trainer.fit(loader, args.epochs)
    with rng_state_preserved():  # the picture must not move the resumable state
        if is_main_process():  # rank 0 alone writes files
            _save_mix(trainer, out / "mix.png", n=6, layers="coarse", seed=args.seed)
    update_json(out / "metrics.json", {"settings": used})
    metrics = trainer.metrics()
    last = {k: v[-1] for k, v in metrics["history"].items() if v}
    shown = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if k != "epoch" and v is not None)
    print(f"stylegan: {shown} -> {out}/samples.png, mix.png, metrics.json, checkpoint.npz")
    return metrics


def _save_mix(trainer: StyleGAN, path, n: int, layers, seed: int, psi: float = 1.0) -> None:
    from dataio.images import save_grid  # noqa: PLC0415

    engine.manual_seed(seed)
    z_src, z_dst = trainer.noise(n), trainer.noise(n)
    grid = trainer.mixing_grid(z_src, z_dst, layers, truncation_psi=psi)
    save_grid(grid.detach().cpu().numpy(), path, nrow=n + 1)


def _load(checkpoint: str, device_spec: str) -> StyleGAN:
    try:
        return StyleGAN.from_checkpoint(checkpoint, device=resolve_device(device_spec))
    except ValueError as e:
        raise RunError(str(e)) from None


def sample(checkpoint: str, args) -> None:
    """`tensortape sample CHECKPOINT --n 64 [--truncation-psi PSI]`: a grid of samples."""
    trainer = _load(checkpoint, args.device)
    engine.manual_seed(args.seed)
    psi = getattr(args, "truncation_psi", 1.0)
    save_square_grid(trainer.sample(args.n, truncation_psi=psi), args.out)
    print(f"{args.n} StyleGAN samples (psi {psi}) from {checkpoint} -> {args.out}")


def mix(checkpoint: str, args) -> None:
    """`tensortape mix CHECKPOINT --n 4 --layers coarse`: the style-mixing grid."""
    trainer = _load(checkpoint, args.device)
    layers = _parse_layers(args.layers)
    try:
        trainer.layer_indices(layers)
    except ValueError as e:
        raise UsageError(f"--layers {args.layers}: {e}") from None
    _save_mix(trainer, args.out, args.n, layers, args.seed, getattr(args, "truncation_psi", 1.0))
    print(f"style mixing ({args.layers} from the rows' sources) from {checkpoint} -> {args.out}")
