"""`CycleGAN`: unpaired translation between two domains A and B.

Two generators G_ab: A -> B and G_ba: B -> A, two discriminators D_a, D_b. With fake_b = G_ab(a)
and fake_a = G_ba(b):

    loss_G = adv(D_b(fake_b), real) + adv(D_a(fake_a), real)
             + lambda_cycle * (|G_ba(fake_b) - a|_1 + |G_ab(fake_a) - b|_1)
             + lambda_identity * (|G_ab(b) - b|_1 + |G_ba(a) - a|_1)      (optional)
    loss_D = adv(D_a(a), real) + adv(D_a(fake_a), fake) + adv(D_b(b), real) + adv(D_b(fake_b), fake)

with `adv` least squares (`loss="lsgan"`, the paper's choice) or BCE on logits (`loss="bce"`).
The generator step runs with both discriminators frozen; the discriminator step sees detached
fakes. Batches are `(a, b)`: unrelated images of the two domains (`UnpairedLoader` zips two
loaders).

Demo (`build_cyclegan`, `inverted_bags`): A = digits, B = colour-inverted digits 1 - x drawn from
a disjoint subset, so the true A -> B mapping is known and `translation_error` measures it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
from engine import Tensor
from engine.data import DataLoader, TensorDataset

from . import adversarial
from .gan import _check_positive_int
from .models import IMAGE_SHAPES, dcgan_discriminator, mlp_discriminator, recipe
from .pix2pix import _check_images, comparison_rows, mean_abs_error, repeat_rows
from .trainer import Trainer, evaluating, frozen

__all__ = [
    "CycleGAN",
    "UnpairedLoader",
    "conv_translator",
    "inverted_bags",
    "translation_error",
    "build_cyclegan",
    "CYCLEGAN_RECIPES",
]

ADV_LOSSES = ("lsgan", "bce")

#: Recipe for the digits <-> inverted digits demo, tuned with PyTorch on one CPU thread (see
#: reports/translation_report.py). Convolutional generators matter: MLP generators learn *a*
#: cycle-consistent mapping between the bags, but not the pixel-wise inversion.
CYCLEGAN_RECIPES: dict[str, dict[str, Any]] = {
    "digits": dict(
        width=32,
        hidden=256,
        lambda_cycle=10.0,
        lambda_identity=0.0,
        loss="lsgan",
        lr=1e-3,
        betas=(0.5, 0.999),
        batch_size=64,
        epochs=20,
    ),
}
# 28x28: strided-conv discriminators of `hidden` channels; untuned (no MNIST files offline).
CYCLEGAN_RECIPES["mnist"] = {**CYCLEGAN_RECIPES["digits"], "width": 32, "hidden": 32, "epochs": 3}
CYCLEGAN_RECIPES["fashion"] = CYCLEGAN_RECIPES["mnist"]


class CycleGAN(Trainer):
    """`CycleGAN(g_ab, g_ba, d_a, d_b, lambda_cycle=10.0, lambda_identity=0.0, loss="lsgan")`.

    Generators map images (N, C, H, W) in [0, 1] to images of the other domain; discriminators
    map images to one score per sample ((N,), (N, 1) or a patch map). Generators share one
    Adam(lr, betas), discriminators another. Where the true correspondence of some images is
    known, `eval_data` = (a, b) with b the true translation of a records `test_mae_ab`, the
    mean |G_ab(a) - b|, in the histories after every epoch.
    """

    preview_count = 16  # two blocks of 8: a row, G_ab(a) row, G_ba(G_ab(a)) row; same from b
    preview_nrow = 8

    def __init__(
        self,
        g_ab,
        g_ba,
        d_a,
        d_b,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.0,
        loss: str = "lsgan",
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        eval_data: tuple[Tensor, Tensor] | None = None,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        if loss not in ADV_LOSSES:
            raise ValueError(f"loss must be one of {ADV_LOSSES}, got {loss!r}")
        for name, value in (("lambda_cycle", lambda_cycle), ("lambda_identity", lambda_identity)):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        self.g_ab, self.g_ba = g_ab.to(self.device), g_ba.to(self.device)
        self.d_a, self.d_b = d_a.to(self.device), d_b.to(self.device)
        self.lambda_cycle = float(lambda_cycle)
        self.lambda_identity = float(lambda_identity)
        self.loss = loss
        self.lr, self.betas = lr, tuple(betas)
        self.networks = {"g_ab": self.g_ab, "g_ba": self.g_ba, "d_a": self.d_a, "d_b": self.d_b}
        gen_params = list(self.g_ab.parameters()) + list(self.g_ba.parameters())
        disc_params = list(self.d_a.parameters()) + list(self.d_b.parameters())
        self.optimizers = {
            "generators": optimizers.Adam(gen_params, lr=lr, betas=self.betas),
            "discriminators": optimizers.Adam(disc_params, lr=lr, betas=self.betas),
        }
        self.preview_a: Tensor | None = None
        self.preview_b: Tensor | None = None
        self.eval_data = None
        if eval_data is not None:
            a, b = eval_data
            _check_images("eval A images", a)
            _check_images("eval B images", b)
            self.eval_data = (a.detach(), b.detach())

    # ---------------------------------------------------------------------------------------
    # Steps

    def train_step(self, batch: tuple) -> dict[str, Tensor]:
        a, b = self._domains(batch)
        if self.preview_a is None:
            self.set_preview(a, b)
        fake_b, fake_a = self.g_ab(a), self.g_ba(b)
        for name, fake, real in (("G_ab", fake_b, b), ("G_ba", fake_a, a)):
            if fake.shape[1:] != real.shape[1:]:
                raise ValueError(
                    f"{name} returned images {fake.shape}, the other domain's are {real.shape}"
                )
        losses = self.generator_step(a, b, fake_a, fake_b)
        losses["loss_d"] = self.discriminator_step(a, b, fake_a.detach(), fake_b.detach())
        return losses

    def generator_step(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict:
        """One update of both generators through the frozen discriminators."""
        opt = self.optimizers["generators"]
        opt.zero_grad()
        with frozen(self.d_a, self.d_b):
            adv_b = adversarial.generator_loss(self._score(self.d_b, fake_b), self.loss)
            adv = adv_b + adversarial.generator_loss(self._score(self.d_a, fake_a), self.loss)
            cycle = F.l1_loss(self.g_ba(fake_b), a) + F.l1_loss(self.g_ab(fake_a), b)
            loss = adv + self.lambda_cycle * cycle
            out = {"loss_g_adv": adv.detach(), "cycle": cycle.detach()}
            if self.lambda_identity:
                identity = F.l1_loss(self.g_ab(b), b) + F.l1_loss(self.g_ba(a), a)
                loss = loss + self.lambda_identity * identity
                out["identity"] = identity.detach()
            self.backward(loss)
        self.step(opt)
        out["loss_g"] = loss.detach()
        return out

    def discriminator_step(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> Tensor:
        """One update of both discriminators: real images towards real, detached fakes fake."""
        opt = self.optimizers["discriminators"]
        opt.zero_grad()
        loss_a = adversarial.discriminator_loss(
            self._score(self.d_a, a), self._score(self.d_a, fake_a.detach()), self.loss
        )
        loss_b = adversarial.discriminator_loss(
            self._score(self.d_b, b), self._score(self.d_b, fake_b.detach()), self.loss
        )
        loss = loss_a + loss_b
        self.backward(loss)
        self.step(opt)
        return loss.detach()

    @staticmethod
    def _score(d, x: Tensor) -> Tensor:
        return d(x).reshape(-1)

    @staticmethod
    def _domains(batch: tuple) -> tuple[Tensor, Tensor]:
        if len(batch) != 2:
            raise ValueError(f"CycleGAN batches are (a, b), got {len(batch)} tensor(s)")
        a, b = batch
        _check_images("domain A images", a)
        _check_images("domain B images", b)
        return a, b

    # ---------------------------------------------------------------------------------------
    # Translation and samples

    def translate(self, x: Tensor, direction: str = "ab") -> Tensor:
        """G_ab(x) (`direction="ab"`) or G_ba(x) (`"ba"`), in eval mode without a graph."""
        if direction not in ("ab", "ba"):
            raise ValueError(f"direction must be 'ab' or 'ba', got {direction!r}")
        x = x if isinstance(x, Tensor) else engine.tensor(x, dtype="float32")
        _check_images("images", x)
        g = self.g_ab if direction == "ab" else self.g_ba
        with evaluating(g):
            return g(x.to(self.device))

    def set_preview(self, a: Tensor, b: Tensor) -> None:
        """Images of each domain for the per-epoch grid and `sample`; default: the first batch."""
        n = self.preview_count
        self.preview_a = a[:n].detach().to(self.device)
        self.preview_b = b[:n].detach().to(self.device)

    def sample(self, n: int) -> Tensor:
        """G_ab of the first `n` preview A images (repeated if fewer), (n, C, H, W)."""
        _check_positive_int("n", n)
        if self.preview_a is None:
            raise RuntimeError(
                "CycleGAN.sample needs images: call set_preview(a, b) or train first"
            )
        return self.translate(repeat_rows(self.preview_a, n), "ab")

    def preview(self) -> Tensor:
        """Rows a / G_ab(a) / G_ba(G_ab(a)), then b / G_ba(b) / G_ab(G_ba(b))."""
        if self.preview_a is None:
            raise RuntimeError("CycleGAN.preview needs images: call set_preview(a, b) first")
        a, b = self.preview_a, self.preview_b
        ab, ba = self.translate(a, "ab"), self.translate(b, "ba")
        top = comparison_rows(a, ab, self.translate(ab, "ba"), nrow=self.preview_nrow)
        bottom = comparison_rows(b, ba, self.translate(ba, "ab"), nrow=self.preview_nrow)
        return engine.cat([top, bottom], dim=0)

    def epoch_metrics(self) -> dict[str, float]:
        if self.eval_data is None:
            return {}
        return {"test_mae_ab": self.evaluate(*self.eval_data)}

    def evaluate(self, a: Tensor, b: Tensor, direction: str = "ab", batch_size: int = 512):
        """Mean absolute error of G_ab(a) against `b` (`direction="ba"`: G_ba(a) against b)."""
        return mean_abs_error(lambda x: self.translate(x, direction), a, b, batch_size)

    # ---------------------------------------------------------------------------------------
    # Checkpointing

    def config(self) -> dict:
        return {
            "lambda_cycle": self.lambda_cycle,
            "lambda_identity": self.lambda_identity,
            "loss": self.loss,
            "lr": self.lr,
            "betas": list(self.betas),
        }

    def extra_state(self) -> dict:
        if self.preview_a is None:
            return {}
        return {"preview_a": self.preview_a, "preview_b": self.preview_b}

    def load_extra_state(self, state: dict) -> None:
        if "preview_a" in state:
            self.preview_a = state["preview_a"].to(self.device)
            self.preview_b = state["preview_b"].to(self.device)


class UnpairedLoader:
    """Zips two loaders into `(a, b)` batches (the first tensor of each loader's batch).

    An epoch ends with the shorter loader. `state_dict`/`load_state_dict` cover both loaders,
    so a trainer checkpoint resumes the shuffling of each bag.
    """

    def __init__(self, loader_a: DataLoader, loader_b: DataLoader) -> None:
        self.loader_a, self.loader_b = loader_a, loader_b

    def __len__(self) -> int:
        return min(len(self.loader_a), len(self.loader_b))

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        # the shorter bag ends the epoch (the longer one is reshuffled next epoch)
        for batch_a, batch_b in zip(self.loader_a, self.loader_b, strict=False):
            yield _first(batch_a), _first(batch_b)

    def state_dict(self) -> dict:
        return {"a": self.loader_a.state_dict(), "b": self.loader_b.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loader_a.load_state_dict(state["a"])
        self.loader_b.load_state_dict(state["b"])


def _first(batch: Any) -> Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


# ------------------------------------------------------------------------------------------
# The digits <-> inverted digits demo


def inverted_bags(dataset: TensorDataset, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Two disjoint, equally large bags from `dataset`'s images: A = x, B = 1 - x.

    A random half (fixed by `seed`, independent of the engine's generator) goes to A, the
    other half, colour-inverted, to B; so no B image is the inversion of an A image.
    """
    images = dataset.tensors[0].cpu().numpy()
    n = images.shape[0] // 2
    order = numpy.random.default_rng(seed).permutation(images.shape[0])
    return TensorDataset(images[order[:n]]), TensorDataset(1.0 - images[order[n : 2 * n]])


def translation_error(model: CycleGAN, images: Tensor, batch_size: int = 512) -> float:
    """Mean absolute error of G_ab(images) against the true inversion 1 - images."""
    return model.evaluate(images, 1.0 - images, "ab", batch_size)


def conv_translator(channels: int = 1, width: int = 32) -> nn.Module:
    """Three 3x3 convolutions (ReLU between, sigmoid out) keeping the image size: a local map,
    which is what makes the pixel-wise translation the easiest cycle-consistent one to learn."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, channels, 3, padding=1),
        nn.Sigmoid(),
    )


def build_cyclegan(
    dataset: str = "digits",
    eval_data: tuple[Tensor, Tensor] | None = None,
    device: Any = "auto",
    seed: int | None = None,
    out_dir=None,
    progress: bool = True,
    **overrides,
) -> CycleGAN:
    """The default CycleGAN for `dataset`: conv translators; MLP (digits) or strided-conv
    (28x28) discriminators. `overrides` change recipe settings (width, hidden, lambda_cycle,
    lambda_identity, loss, lr, betas)."""
    r = recipe("cyclegan", CYCLEGAN_RECIPES, dataset, overrides)
    if seed is not None:
        engine.manual_seed(seed)
    shape = IMAGE_SHAPES[dataset]
    g_ab, g_ba = conv_translator(shape[0], r["width"]), conv_translator(shape[0], r["width"])
    if dataset == "digits":
        d_a, d_b = mlp_discriminator(shape, r["hidden"]), mlp_discriminator(shape, r["hidden"])
    else:
        d_a, d_b = (
            dcgan_discriminator(shape[0], r["hidden"]),
            dcgan_discriminator(shape[0], r["hidden"]),
        )
    return CycleGAN(
        g_ab,
        g_ba,
        d_a,
        d_b,
        lambda_cycle=r["lambda_cycle"],
        lambda_identity=r["lambda_identity"],
        loss=r["loss"],
        lr=r["lr"],
        betas=r["betas"],
        eval_data=eval_data,
        device=device,
        out_dir=out_dir,
        progress=progress,
    )
