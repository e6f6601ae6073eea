"""Default generator/discriminator recipes: MLPs for the 8x8 digits, DCGAN-style convs for 28x28.

The digits recipes were tuned with PyTorch on 2 CPU cores (see `reports/gan_report.py`): an MLP
with two hidden layers of 256 LeakyReLU(0.2) units on each side, Adam(lr=1e-3, betas=(0.5,
0.999)), batch 64; the GAN covers all ten classes after ~100 epochs, the conditional GAN's
samples are classified as the requested digit > 90% of the time after ~50 epochs.

`build_gan(dataset)` / `build_cgan(dataset)` return ready-to-train trainers; `RECIPES` holds their
hyper-parameters (including batch size and epochs, which the caller's loader and `train` use).
"""

from __future__ import annotations

import math
from typing import Any

import engine
import layers as nn
from engine import Tensor

from .cgan import ConditionalGAN
from .gan import GAN

__all__ = [
    "IMAGE_SHAPES",
    "RECIPES",
    "mlp_generator",
    "mlp_discriminator",
    "dcgan_generator",
    "dcgan_discriminator",
    "ConditionalGenerator",
    "ConditionalDiscriminator",
    "build_gan",
    "build_cgan",
    "recipe",
]

IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "fashion": (1, 28, 28)}

_DIGITS = dict(latent_dim=32, hidden=256, lr=1e-3, betas=(0.5, 0.999), batch_size=64)
_MNIST = dict(latent_dim=64, hidden=64, lr=2e-4, betas=(0.5, 0.999), batch_size=128)

#: Hyper-parameters of the default recipes, by (model, dataset).
RECIPES: dict[tuple[str, str], dict[str, Any]] = {
    ("gan", "digits"): {**_DIGITS, "epochs": 100},
    ("cgan", "digits"): {**_DIGITS, "embed_dim": 10, "epochs": 50},
    ("gan", "mnist"): {**_MNIST, "epochs": 20},
    ("cgan", "mnist"): {**_MNIST, "embed_dim": 16, "epochs": 20},
}
RECIPES[("gan", "fashion")] = RECIPES[("gan", "mnist")]
RECIPES[("cgan", "fashion")] = RECIPES[("cgan", "mnist")]


# ------------------------------------------------------------------------------------------
# MLPs (any image size; the digits default)


def mlp_generator(
    latent_dim: int, image_shape: tuple[int, ...] = (1, 8, 8), hidden: int = 256, in_extra: int = 0
) -> nn.Module:
    """z (N, latent_dim [+ in_extra]) -> two LeakyReLU(0.2) layers -> sigmoid image (N, *shape)."""
    return nn.Sequential(
        nn.Linear(latent_dim + in_extra, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, math.prod(image_shape)),
        nn.Sigmoid(),
        nn.Unflatten(1, image_shape),
    )


def mlp_discriminator(
    image_shape: tuple[int, ...] = (1, 8, 8), hidden: int = 256, in_extra: int = 0
) -> nn.Module:
    """Flattened image (+ in_extra features) -> two LeakyReLU(0.2) layers -> one logit (N, 1)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(image_shape) + in_extra, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, 1),
    )


# ------------------------------------------------------------------------------------------
# DCGAN-style convolutional nets for 28x28 (MNIST, Fashion-MNIST)


def dcgan_generator(
    latent_dim: int, channels: int = 1, width: int = 64, in_extra: int = 0
) -> nn.Module:
    """z -> (2w, 7, 7) -> ConvTranspose 14x14 -> ConvTranspose 28x28, sigmoid; BatchNorm+ReLU."""
    return nn.Sequential(
        nn.Linear(latent_dim + in_extra, 2 * width * 7 * 7),
        nn.BatchNorm1d(2 * width * 7 * 7),
        nn.ReLU(),
        nn.Unflatten(1, (2 * width, 7, 7)),
        nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


def dcgan_discriminator(
    channels: int = 1, width: int = 64, in_channels_extra: int = 0
) -> nn.Module:
    """28x28 -> strided convs 14x14, 7x7 with LeakyReLU(0.2) -> one logit. No BatchNorm, so the
    WGAN-GP penalty (per-sample gradients) stays valid."""
    return nn.Sequential(
        nn.Conv2d(channels + in_channels_extra, width, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(2 * width * 7 * 7, 1),
    )


# ------------------------------------------------------------------------------------------
# Label conditioning


class ConditionalGenerator(nn.Module):
    """G(z, y) = net(cat(z, embed(y))): the label enters through a learned embedding."""

    def __init__(self, net: nn.Module, num_classes: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.net = net

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        return self.net(engine.cat([z, self.embed(y)], dim=1))


class ConditionalDiscriminator(nn.Module):
    """D(x, y) with a learned label embedding.

    `mode="concat"` (MLPs): net(cat(flatten(x), embed(y))), embed_dim features appended.
    `mode="channel"` (convs): the embedding (of size H*W) is reshaped into one extra image
    channel, net(cat(x, plane(y)) along channels).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        image_shape: tuple[int, ...],
        embed_dim: int = 10,
        mode: str = "concat",
    ) -> None:
        super().__init__()
        if mode not in ("concat", "channel"):
            raise ValueError(f"mode must be 'concat' or 'channel', got {mode!r}")
        self.mode = mode
        self.image_shape = tuple(image_shape)
        size = embed_dim if mode == "concat" else math.prod(self.image_shape[1:])
        self.embed = nn.Embedding(num_classes, size)
        self.net = net

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        e = self.embed(y)
        if self.mode == "concat":
            return self.net(engine.cat([x.flatten(1), e], dim=1))
        plane = e.reshape(x.shape[0], 1, *self.image_shape[1:])
        return self.net(engine.cat([x, plane], dim=1))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, image_shape={self.image_shape}"


# ------------------------------------------------------------------------------------------
# Ready-made trainers


def recipe(model: str, recipes: dict[str, dict], dataset: str, overrides: dict) -> dict:
    """`recipes[dataset]` with `overrides` applied; unknown datasets and settings are errors."""
    if dataset not in recipes:
        raise ValueError(f"no {model} recipe for dataset {dataset!r}; known: {sorted(recipes)}")
    unknown = set(overrides) - set(recipes[dataset])
    if unknown:
        raise ValueError(f"unknown {model} recipe settings {sorted(unknown)}")
    return {**recipes[dataset], **overrides}


def _recipe(model: str, dataset: str, overrides: dict) -> dict:
    by_dataset = {d: r for (m, d), r in RECIPES.items() if m == model}
    return recipe(model, by_dataset, dataset, overrides)


def build_gan(
    dataset: str = "digits",
    loss: str = "bce",
    device: Any = "auto",
    seed: int | None = None,
    out_dir=None,
    progress: bool = True,
    **overrides,
) -> GAN:
    """The default GAN for `dataset` ("digits": MLPs; "mnist"/"fashion": DCGAN convs).

    `seed` seeds the engine before the networks are initialised; `overrides` change recipe
    settings (latent_dim, hidden, lr, betas). Batch size and epochs are in `RECIPES`.
    """
    r = _recipe("gan", dataset, overrides)
    if seed is not None:
        engine.manual_seed(seed)
    shape = IMAGE_SHAPES[dataset]
    if dataset == "digits":
        g = mlp_generator(r["latent_dim"], shape, r["hidden"])
        d = mlp_discriminator(shape, r["hidden"])
    else:
        g = dcgan_generator(r["latent_dim"], shape[0], r["hidden"])
        d = dcgan_discriminator(shape[0], r["hidden"])
    return GAN(
        g,
        d,
        r["latent_dim"],
        loss=loss,
        lr=r["lr"],
        betas=r["betas"],
        device=device,
        out_dir=out_dir,
        progress=progress,
    )


def build_cgan(
    dataset: str = "digits",
    loss: str = "bce",
    num_classes: int = 10,
    device: Any = "auto",
    seed: int | None = None,
    out_dir=None,
    progress: bool = True,
    **overrides,
) -> ConditionalGAN:
    """The default conditional GAN for `dataset` (label embeddings on both sides)."""
    r = _recipe("cgan", dataset, overrides)
    if seed is not None:
        engine.manual_seed(seed)
    shape, e = IMAGE_SHAPES[dataset], r["embed_dim"]
    if dataset == "digits":
        g_net = mlp_generator(r["latent_dim"], shape, r["hidden"], in_extra=e)
        d_net = mlp_discriminator(shape, r["hidden"], in_extra=e)
        mode = "concat"
    else:
        g_net = dcgan_generator(r["latent_dim"], shape[0], r["hidden"], in_extra=e)
        d_net = dcgan_discriminator(shape[0], r["hidden"], in_channels_extra=1)
        mode = "channel"
    g = ConditionalGenerator(g_net, num_classes, e)
    d = ConditionalDiscriminator(d_net, num_classes, shape, e, mode=mode)
    return ConditionalGAN(
        g,
        d,
        r["latent_dim"],
        num_classes,
        loss=loss,
        lr=r["lr"],
        betas=r["betas"],
        device=device,
        out_dir=out_dir,
        progress=progress,
    )
