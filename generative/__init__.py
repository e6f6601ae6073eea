"""Generative models on tensortape's autograd tape, all trained through `generative.Trainer`.

- `Trainer` (generative.trainer): the one training loop of every task, the CLI's classifier
  included (`fit(loader, epochs)` with tqdm, sample grids, metrics.json, checkpoint/resume,
  device, seed, the `Precision` policy and `Callback` hooks); subclasses register their
  `networks` and `optimizers` and implement `train_step` (and `sample` for generators).
- `GAN`, `ConditionalGAN`: adversarial training with BCE, hinge or WGAN-GP losses.
- `models`: default generator/discriminator recipes (`build_gan`, `build_cgan`).
- `judge`: the digits classifier that scores generated digits (`load_judge`).
- `Autoencoder`, `VAE` (networks from `encoders`), `AutoencoderTrainer`; `distributions`:
  `GaussianHead`, `MultivariateNormal`.
"""

from .autoencoder import Autoencoder
from .autoencoder_trainer import AutoencoderTrainer
from .cgan import ConditionalGAN
from .cyclegan import CycleGAN, UnpairedLoader, build_cyclegan
from .distributions import DiagonalNormal, GaussianHead, MultivariateNormal
from .gan import GAN
from .judge import Judge, load_judge
from .models import build_cgan, build_gan
from .pix2pix import Pix2Pix, build_pix2pix
from .stylegan import StyleGAN, build_stylegan
from .trainer import (
    Callback,
    NonFiniteLossError,
    Precision,
    Trainer,
    evaluating,
    frozen,
    resolve_device,
)
from .vae import VAE

__all__ = [
    "Trainer",
    "Callback",
    "Precision",
    "NonFiniteLossError",
    "GAN",
    "ConditionalGAN",
    "Judge",
    "load_judge",
    "build_gan",
    "build_cgan",
    "Pix2Pix",
    "build_pix2pix",
    "StyleGAN",
    "build_stylegan",
    "CycleGAN",
    "UnpairedLoader",
    "build_cyclegan",
    "frozen",
    "evaluating",
    "resolve_device",
    "Autoencoder",
    "AutoencoderTrainer",
    "VAE",
    "DiagonalNormal",
    "GaussianHead",
    "MultivariateNormal",
]
