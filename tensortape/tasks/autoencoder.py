"""`tensortape train ae|vae|conv-vae`: autoencoders and variational autoencoders.

    tensortape train vae --dataset digits --latent-dim 8 --epochs 50 --out runs/vae
    tensortape train conv-vae --dataset mnist --epochs 20 --device cuda
    tensortape train ae --model conv --loss mse --latent-dim 8
    tensortape sample runs/vae/checkpoint.npz --n 64 --out samples.png

Writes into OUT: `samples.png` (per epoch, and `samples/epoch_NNNN.png`), `reconstructions.png`
(test images on odd rows, their reconstructions below), `interpolations.png`, `latent.png`
(test codes projected by PCA, coloured by class), `metrics.json` (per-epoch histories, and for
VAEs `test_neg_elbo` and `test_iw_nll`, the importance-weighted NLL), `checkpoint.npz`
(`--resume` continues from it). With the Bernoulli likelihood the images are binarised at 0.5
(a fixed binarisation) so the ELBO is a likelihood bound in nats; `--no-binarize` keeps grey
levels. Digits samples are scored by the digits judge (classes covered, inception score).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy

import engine
from dataio.plots import save_latent_plot
from engine.data import DataLoader, TensorDataset
from engine.distributed import is_main_process
from generative.autoencoder import Autoencoder, encode_dataset
from generative.autoencoder_trainer import AutoencoderTrainer
from generative.encoders import DEFAULT_WIDTH, build_networks
from generative.trainer import rng_state_preserved
from generative.vae import VAE

from .common import (
    RunError,
    add_common_arguments,
    add_option,
    load_dataset,
    non_negative_int,
    positive_int,
    prepare_run,
    resolve_device,
    resume,
    save_square_grid,
)

HELP = {
    "ae": "an autoencoder, as a generator through a Gaussian fitted to its codes",
    "vae": "an MLP variational autoencoder (test negative ELBO, importance-weighted NLL)",
    "conv-vae": "a convolutional variational autoencoder",
}


def add_arguments(p: argparse.ArgumentParser, name: str) -> None:
    add_common_arguments(p, epochs=50, batch_size=64, lr=1e-3)
    p.add_argument("--latent-dim", type=positive_int, default=8, help="size of the code z")
    add_option(
        p,
        "--hidden-dim",
        old="--width",
        dest="width",  # the name its checkpoints record
        type=positive_int,
        default=None,
        help="hidden units (mlp, default 128) or first conv channels (conv, default 32); "
        "formerly --width",
    )
    if name == "ae":
        p.add_argument("--model", default="mlp", choices=["mlp", "conv"], help="architecture")
        p.add_argument("--loss", default="bce", choices=["bce", "mse"], help="reconstruction loss")
    else:
        p.add_argument(
            "--likelihood",
            default="bernoulli",
            choices=["bernoulli", "gaussian"],
            help="p(x | z) of the decoder",
        )
        p.add_argument(
            "--no-binarize",
            action="store_true",
            help="keep grey levels with the Bernoulli likelihood (not a likelihood)",
        )
        p.add_argument(
            "--iw-samples",
            type=non_negative_int,
            default=100,
            help="k of the importance-weighted test NLL (0 to skip)",
        )


def architecture(args) -> dict:
    """What `tensortape sample` needs to rebuild the model (stored in the checkpoint)."""
    model = "conv" if args.task == "conv-vae" else getattr(args, "model", "mlp")
    arch = {
        "model": model,
        "latent_dim": args.latent_dim,
        "width": args.width or DEFAULT_WIDTH[model],
        "dataset": args.dataset,
    }
    if args.task == "ae":
        arch["loss"] = args.loss
    else:
        arch["likelihood"] = args.likelihood
        arch["binarize"] = args.likelihood == "bernoulli" and not args.no_binarize
    return arch


def build_model(task: str, arch: dict, in_shape: tuple) -> Autoencoder:
    latent = int(arch["latent_dim"])
    if task == "ae":
        enc, dec = build_networks(arch["model"], in_shape, latent, latent, arch.get("width"))
        return Autoencoder(enc, dec, loss=arch.get("loss", "bce"), latent_dim=latent)
    enc, dec = build_networks(arch["model"], in_shape, latent, 2 * latent, arch.get("width"))
    return VAE(enc, dec, latent, likelihood=arch.get("likelihood", "bernoulli"))


def _prepare(dataset: TensorDataset, binarize: bool) -> TensorDataset:
    if not binarize:
        return dataset
    x, y = dataset.tensors
    return TensorDataset((x.numpy() > 0.5).astype(numpy.float32), y.numpy())


def run(args) -> dict:
    device = resolve_device(args.device)
    out = prepare_run(args, args.task)
    arch = architecture(args)
    train_set, test_set = load_dataset(args.dataset, args.data_dir)
    binarize = bool(arch.get("binarize"))
    train_set, test_set = _prepare(train_set, binarize), _prepare(test_set, binarize)
    in_shape = tuple(train_set.tensors[0].shape[1:])
    arch["in_shape"] = list(in_shape)
    engine.manual_seed(args.seed)
    model = build_model(args.task, arch, in_shape)
    trainer = AutoencoderTrainer(
        model,
        lr=args.lr,
        test_data=test_set,
        task=args.task,
        architecture=arch,
        device=device,
        seed=args.seed,
        out_dir=out,
        progress=not args.no_progress,
    )
    loader = DataLoader(train_set, args.batch_size, shuffle=True, seed=args.seed, device=device)
    ckpt = resume(trainer, out, args)
    trainer.fit(loader, args.epochs)
    if not isinstance(model, VAE) and model.latent_loc is None:
        model.fit_latent_gaussian(train_set)  # --epochs 0 on a fresh run
    # The evaluation draws must not move the random state a later --resume continues from.
    with rng_state_preserved():
        trainer.summary.update(final_metrics(trainer, test_set, args))
        if is_main_process():  # rank 0 alone writes files
            write_pictures(trainer, test_set, out)
    trainer.write_metrics(out / "metrics.json")
    trainer.save_checkpoint(ckpt, loader)
    _print_summary(args.task, trainer.summary, out)
    return trainer.metrics()


def final_metrics(trainer: AutoencoderTrainer, test_set: TensorDataset, args) -> dict:
    """Test numbers after training (VAE: negative ELBO over 10 draws, IW NLL) and the judge's."""
    model = trainer.model
    results: dict[str, Any] = {"dataset": args.dataset, "device": str(trainer.device)}
    # One recipe for every dataset; what ran is recorded next to the architecture (config).
    results["settings"] = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    if isinstance(model, VAE):
        results["test_neg_elbo"] = model.evaluate(test_set, samples=10)["loss"]
        if args.iw_samples > 0:
            results["test_iw_nll"] = -model.evaluate_log_likelihood(test_set, k=args.iw_samples)
            results["iw_samples"] = args.iw_samples
    else:
        results["test_loss"] = model.evaluate(test_set)["loss"]
    if args.dataset == "digits":
        results["judge"] = _judge(model)
    return results


def _judge(model: Autoencoder) -> dict:
    """The digits judge on 1,000 samples."""
    from generative.judge import load_judge  # noqa: PLC0415

    return load_judge().report(model.sample(1000).cpu())


def save_reconstructions(model: Autoencoder, x, path) -> None:
    """Images `x` in rows of 8, each row followed by its reconstructions (eval mode, no graph)."""
    from dataio.images import save_grid  # noqa: PLC0415

    with engine.no_grad():
        model.eval()
        recon = model.reconstruct(x)
        model.train()
    rows = [t for i in range(0, len(x), 8) for t in (x[i : i + 8], recon[i : i + 8])]
    save_grid(engine.cat(rows).cpu().numpy(), path, nrow=8)


def write_pictures(trainer: AutoencoderTrainer, test_set: TensorDataset, out) -> None:
    """reconstructions.png, interpolations.png and latent.png from the test images."""
    from dataio.images import save_grid  # noqa: PLC0415

    model = trainer.model
    x = test_set.tensors[0][:32].to(trainer.device)
    save_reconstructions(model, x, out / "reconstructions.png")
    steps = 8
    lerp = model.interpolate(x[:8], x[8:16], steps=steps)
    save_grid(lerp.detach().cpu().numpy(), out / "interpolations.png", nrow=steps)
    codes, labels = encode_dataset(model, test_set)
    save_latent_plot(codes.cpu(), labels, out / "latent.png")


def _print_summary(task: str, summary: dict, out) -> None:
    parts = [
        f"{k} {summary[k]:.3f}"
        for k in ("test_neg_elbo", "test_iw_nll", "test_loss")
        if k in summary
    ]
    judge = summary.get("judge")
    if judge:
        parts.append(f"classes covered {judge['classes_covered']}")
    print(
        f"{task}: {', '.join(parts)} -> {out}/metrics.json, samples.png, reconstructions.png, "
        f"latent.png, checkpoint.npz"
    )


def sample(checkpoint: str, args) -> None:
    """`tensortape sample CHECKPOINT`: a grid of `--n` samples from a trained (V)AE."""
    device = resolve_device(args.device)
    state = engine.load(checkpoint, map_location=device)
    config = state.get("config") or {}
    task = state.get("task")
    if "in_shape" not in config:
        raise RunError(f"{checkpoint}: no architecture in the checkpoint's config")
    model = build_model(task, config, tuple(config["in_shape"])).to(device)
    model.load_state_dict((state.get("networks") or state["modules"])["model"])  # v2 or v1
    engine.manual_seed(args.seed)
    save_square_grid(model.sample(args.n), args.out)
    print(f"{args.n} samples from the {task} in {checkpoint} -> {args.out}")
