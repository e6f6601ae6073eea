"""The VAE recipe in PyTorch and in tensortape, side by side: same data, nets, optimiser, epochs.

Data: the embedded 8x8 digits with `engine.data.load_digits()`'s split (1,438 train / 359 test),
statically binarised at 0.5 so the Bernoulli likelihood is a true likelihood (nats).
Recipes (both libraries): encoder -> (mu, logvar), latent 8, decoder -> Bernoulli logits;
Adam(lr 1e-3), batch 64, 50 epochs, one z per image, analytic KL.

- `mlp-vae`: 64 -> 128 -> 128 -> 16 / 8 -> 128 -> 128 -> 64 (ReLU);
- `conv-vae`: conv3x3/2 (32) -> conv3x3/2 (64) -> linear 16 / linear 256 -> convT4x4/2 (32)
  -> convT4x4/2 (1).

Reported per library: the test negative ELBO (nats, the mean of 10 draws per image) and the
importance-weighted test NLL (k = 100), averaged over the seeds; the check is that our mean test
negative ELBO is within 2% of PyTorch's.

    python benchmarks/vae_reference.py [--models mlp-vae,conv-vae] [--seeds 0,1,2]
                                       [--epochs 50] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.run import set_threads  # noqa: E402
from dataio.files import write_json  # noqa: E402

RECIPES = {
    "mlp-vae": {"arch": "mlp", "latent_dim": 8, "width": 128},
    "conv-vae": {"arch": "conv", "latent_dim": 8, "width": 32},
}
EPOCHS, BATCH_SIZE, LR = 50, 64, 1e-3
EVAL_DRAWS, IW_SAMPLES = 10, 100
TOLERANCE = 0.02


def digits_binarised() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) in {0, 1} as float32."""
    from engine.data import load_digits  # noqa: PLC0415

    train, test = load_digits()
    xs = [(d.tensors[0].numpy() > 0.5).astype(np.float32) for d in (train, test)]
    ys = [d.tensors[1].numpy() for d in (train, test)]
    return xs[0], ys[0], xs[1], ys[1]


# -------------------------------------------------------------------------------------------
# PyTorch


def torch_networks(arch: str, latent_dim: int, width: int):
    import torch.nn as tnn  # noqa: PLC0415

    if arch == "mlp":
        enc = tnn.Sequential(
            tnn.Flatten(),
            tnn.Linear(64, width),
            tnn.ReLU(),
            tnn.Linear(width, width),
            tnn.ReLU(),
            tnn.Linear(width, 2 * latent_dim),
        )
        dec = tnn.Sequential(
            tnn.Linear(latent_dim, width),
            tnn.ReLU(),
            tnn.Linear(width, width),
            tnn.ReLU(),
            tnn.Linear(width, 64),
            tnn.Unflatten(1, (1, 8, 8)),
        )
        return enc, dec
    c = width
    enc = tnn.Sequential(
        tnn.Conv2d(1, c, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(c, 2 * c, 3, stride=2, padding=1),
        tnn.ReLU(),
        tnn.Flatten(),
        tnn.Linear(2 * c * 2 * 2, 2 * latent_dim),
    )
    dec = tnn.Sequential(
        tnn.Linear(latent_dim, 2 * c * 2 * 2),
        tnn.ReLU(),
        tnn.Unflatten(1, (2 * c, 2, 2)),
        tnn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1),
        tnn.ReLU(),
        tnn.ConvTranspose2d(c, 1, 4, stride=2, padding=1),
    )
    return enc, dec


def _torch_neg_elbo(enc, dec, x, latent_dim: int):
    import torch  # noqa: PLC0415
    import torch.nn.functional as tF  # noqa: PLC0415

    mu, logvar = enc(x).split(latent_dim, 1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    rec = tF.binary_cross_entropy_with_logits(dec(z), x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (logvar.exp() + mu * mu - 1.0 - logvar).sum(1)
    return rec + kl


def _torch_log_likelihood(enc, dec, x, latent_dim: int, k: int):
    import torch  # noqa: PLC0415
    import torch.nn.functional as tF  # noqa: PLC0415

    mu, logvar = enc(x).split(latent_dim, 1)
    eps = torch.randn(k, *mu.shape)
    z = mu + (0.5 * logvar).exp() * eps
    logits = dec(z.reshape(-1, latent_dim)).reshape(k, *x.shape)
    log_px = (
        -tF.binary_cross_entropy_with_logits(logits, x.expand(k, *x.shape), reduction="none")
        .flatten(2)
        .sum(2)
    )
    log_pz = -0.5 * (z * z + math.log(2 * math.pi)).sum(-1)
    log_qz = -0.5 * (eps * eps + logvar + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(log_px + log_pz - log_qz, 0) - math.log(k)


def run_torch(recipe: dict, data, seed: int, epochs: int = EPOCHS) -> dict:
    """Train the recipe in PyTorch; test negative ELBO and importance-weighted NLL (nats)."""
    import torch  # noqa: PLC0415

    x_train, _, x_test, _ = data
    torch.manual_seed(seed)
    enc, dec = torch_networks(recipe["arch"], recipe["latent_dim"], recipe["width"])
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=LR)
    xt, xv = torch.from_numpy(x_train), torch.from_numpy(x_test)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), BATCH_SIZE):
            loss = _torch_neg_elbo(enc, dec, xt[perm[i : i + BATCH_SIZE]], recipe["latent_dim"])
            opt.zero_grad()
            loss.mean().backward()
            opt.step()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        neg_elbo = statistics.mean(
            _torch_neg_elbo(enc, dec, xv, recipe["latent_dim"]).mean().item()
            for _ in range(EVAL_DRAWS)
        )
        ll = _torch_log_likelihood(enc, dec, xv, recipe["latent_dim"], IW_SAMPLES).mean().item()
    return {"test_neg_elbo": neg_elbo, "test_iw_nll": -ll, "train_seconds": seconds}


# -------------------------------------------------------------------------------------------
# tensortape


def build_ours(recipe: dict):
    from generative.encoders import build_networks  # noqa: PLC0415
    from generative.vae import VAE  # noqa: PLC0415

    latent = recipe["latent_dim"]
    enc, dec = build_networks(recipe["arch"], (1, 8, 8), latent, 2 * latent, recipe["width"])
    return VAE(enc, dec, latent, likelihood="bernoulli")


def run_ours(
    recipe: dict,
    data,
    seed: int,
    epochs: int = EPOCHS,
    device: str = "cpu",
    out_dir: str | None = None,
) -> dict:
    """Train the recipe with `generative.VAE` + `AutoencoderTrainer`; the same numbers."""
    import engine  # noqa: PLC0415
    from engine.data import DataLoader, TensorDataset  # noqa: PLC0415
    from generative.autoencoder_trainer import AutoencoderTrainer  # noqa: PLC0415

    x_train, y_train, x_test, y_test = data
    engine.manual_seed(seed)
    vae = build_ours(recipe)
    trainer = AutoencoderTrainer(
        vae, lr=LR, task="vae", device=device, seed=seed, out_dir=out_dir, progress=False
    )
    loader = DataLoader(TensorDataset(x_train, y_train), BATCH_SIZE, shuffle=True, seed=seed)
    start = time.perf_counter()
    trainer.fit(loader, epochs)
    seconds = time.perf_counter() - start
    test = TensorDataset(x_test, y_test)
    neg_elbo = vae.evaluate(test, samples=EVAL_DRAWS)["loss"]
    ll = vae.evaluate_log_likelihood(test, k=IW_SAMPLES)
    return {
        "test_neg_elbo": neg_elbo,
        "test_iw_nll": -ll,
        "train_seconds": seconds,
        "trainer": trainer,
    }


# -------------------------------------------------------------------------------------------


def compare(
    models: list[str],
    seeds: list[int],
    epochs: int = EPOCHS,
    data=None,
    on_trained: Callable[[str, int, Any], None] | None = None,
) -> dict:
    """{model: {"torch": [runs], "ours": [runs], summary numbers}} for every model and seed.
    data: `digits_binarised()` unless given; on_trained(model, seed, trainer) sees each of our
    trained models (reports/vae_report.py draws its pictures there)."""
    data = digits_binarised() if data is None else data
    results = {}
    for name in models:
        recipe = RECIPES[name]
        runs = {"torch": [], "ours": []}
        for seed in seeds:
            runs["torch"].append(run_torch(recipe, data, seed, epochs))
            ours = run_ours(recipe, data, seed, epochs)
            trainer = ours.pop("trainer")
            runs["ours"].append(ours)
            print(
                f"{name} seed {seed}: torch {runs['torch'][-1]['test_neg_elbo']:.3f}  "
                f"ours {runs['ours'][-1]['test_neg_elbo']:.3f}",
                flush=True,
            )
            if on_trained is not None:
                on_trained(name, seed, trainer)
        mean, std = (
            {lib: {key: stat(r[key] for r in rs) for key in rs[0]} for lib, rs in runs.items()}
            for stat in (statistics.mean, statistics.pstdev)
        )
        rel = mean["ours"]["test_neg_elbo"] / mean["torch"]["test_neg_elbo"] - 1.0
        results[name] = {
            "recipe": recipe,
            "epochs": epochs,
            "seeds": seeds,
            "runs": runs,
            "mean": mean,
            "std": std,
            "relative_difference": rel,
            "within_tolerance": abs(rel) <= TOLERANCE,
        }
    return results


def print_table(results: dict) -> None:
    print(f"\n{'model':10} {'library':10} {'test -ELBO':>11} {'test IW-NLL':>12} {'train s':>8}")
    for name, r in results.items():
        for lib in ("torch", "ours"):
            m = r["mean"][lib]
            print(
                f"{name:10} {lib:10} {m['test_neg_elbo']:11.3f} {m['test_iw_nll']:12.3f} "
                f"{m['train_seconds']:8.1f}"
            )
        verdict = "within" if r["within_tolerance"] else "OUTSIDE"
        print(
            f"{'':10} ours/torch - 1 = {100 * r['relative_difference']:+.2f}% "
            f"({verdict} {100 * TOLERANCE:.0f}%)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(RECIPES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in RECIPES]
    if unknown:
        p.error(f"unknown models {unknown}; choose from {list(RECIPES)}")
    # One BLAS thread per library by default: the cores are shared, and OpenBLAS threads
    # fighting over two busy cores make small matmuls ~50x slower.
    set_threads(args.threads)
    results = compare(models, [int(s) for s in args.seeds.split(",")], args.epochs)
    print_table(results)
    if args.json:
        write_json(args.json, results, indent=1)
    return 0 if all(r["within_tolerance"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
