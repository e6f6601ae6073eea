"""`Pix2Pix`: paired image-to-image translation with a conditional discriminator.

The generator maps an input image x (plus its own randomness) to an output image; the
discriminator sees (input, output) pairs concatenated along channels, real pairs (x, y) from the
data and fake pairs (x, G(x)):

    loss_D = adv(D(x, y), real) + adv(D(x, G(x)), fake)
    loss_G = adv(D(x, G(x)), real) + lambda_l1 * mean |G(x) - y|

with `adv` the non-saturating BCE on logits (`loss="bce"`) or least squares (`loss="lsgan"`);
`lambda_l1=0` gives no L1 term, `adversarial=False` an L1-only regression (the baseline the
adversarial term must beat on sharpness).

Demo on the 8x8 digits (`build_pix2pix`, `masked_pairs`): complete a digit whose lower half is
masked. `CompletionGenerator` draws a noise vector inside `forward` and pastes the known upper half
back, so only the missing rows are generated. `sharpness` measures how crisp completions are.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
from engine import Tensor
from engine.data import TensorDataset

from . import adversarial
from .gan import _check_positive_int
from .models import IMAGE_SHAPES, mlp_discriminator, recipe
from .trainer import Trainer, evaluating, frozen

__all__ = [
    "Pix2Pix",
    "CompletionGenerator",
    "pair_discriminator",
    "mask_lower",
    "masked_pairs",
    "sharpness",
    "completion_metrics",
    "comparison_rows",
    "repeat_rows",
    "mean_abs_error",
    "build_pix2pix",
    "PIX2PIX_RECIPES",
]

ADV_LOSSES = ("bce", "lsgan")

#: Recipe for the masked-digit completion demo, tuned with PyTorch on one CPU thread
#: (see reports/translation_report.py). lambda_l1 is larger than the paper's 100 because the
#: digits' L1 term is small (mean over pixels in [0, 1]) next to the adversarial one.
PIX2PIX_RECIPES: dict[str, dict[str, Any]] = {
    "digits": dict(
        hidden=256,
        noise_dim=16,
        lambda_l1=200.0,
        lr=1e-3,
        betas=(0.5, 0.999),
        loss="bce",
        batch_size=64,
        epochs=60,
    ),
}
# 28x28: the digits recipe scaled up; untuned (no MNIST files were at hand offline).
PIX2PIX_RECIPES["mnist"] = {**PIX2PIX_RECIPES["digits"], "hidden": 512, "epochs": 10}
PIX2PIX_RECIPES["fashion"] = PIX2PIX_RECIPES["mnist"]


def _check_images(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = getattr(x, "shape", type(x).__name__)
        raise ValueError(f"{name} must be a Tensor of images (N, C, H, W), got {shape}")


class Pix2Pix(Trainer):
    """`Pix2Pix(generator, discriminator, lambda_l1=100.0, loss="bce"|"lsgan")`.

    `generator(x)` maps inputs (N, C, H, W) to outputs (N, C', H, W) in [0, 1] (its randomness
    is its own: noise drawn in forward, or dropout); `discriminator(cat([x, y], 1))` returns one
    logit per pair, (N,) or (N, 1) (or a patch map (N, 1, h, w), averaged by the loss). Batches
    are `(inputs, targets)`. Both networks are trained with Adam(lr, betas). With `eval_data`
    = (inputs, targets), e.g. test pairs, the histories record `test_l1` after every epoch.
    """

    preview_count = 24  # three blocks of 8 (inputs row, outputs row, targets row)
    preview_nrow = 8

    def __init__(
        self,
        generator,
        discriminator,
        lambda_l1: float = 100.0,
        loss: str = "bce",
        adversarial: bool = True,
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
        if not math.isfinite(lambda_l1) or lambda_l1 < 0:
            raise ValueError(f"lambda_l1 must be a finite number >= 0, got {lambda_l1!r}")
        if not adversarial and lambda_l1 == 0:
            raise ValueError("adversarial=False needs lambda_l1 > 0: there would be no loss")
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.lambda_l1 = float(lambda_l1)
        self.loss = loss
        self.adversarial = bool(adversarial)
        self.lr, self.betas = lr, tuple(betas)
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {
            "generator": optimizers.Adam(self.generator.parameters(), lr=lr, betas=self.betas),
            "discriminator": optimizers.Adam(
                self.discriminator.parameters(), lr=lr, betas=self.betas
            ),
        }
        self.preview_inputs: Tensor | None = None
        self.preview_targets: Tensor | None = None
        self.eval_data = None
        if eval_data is not None:
            x, y = eval_data
            _check_images("eval inputs", x)
            _check_images("eval targets", y)
            self.eval_data = (x.detach(), y.detach())

    # ---------------------------------------------------------------------------------------
    # Steps

    def discriminate(self, x: Tensor, y: Tensor) -> Tensor:
        """D's scores for the pairs (x, y), flattened to (N,) or (N * patches,)."""
        if x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[2:]:
            raise ValueError(
                f"pairs need matching batch and size: inputs {x.shape}, outputs {y.shape}"
            )
        return self.discriminator(engine.cat([x, y], dim=1)).reshape(-1)

    def train_step(self, batch: tuple) -> dict[str, Tensor]:
        x, y = self._pair(batch)
        if self.preview_inputs is None:
            self.set_preview(x, y)
        fake = self.generator(x)
        if fake.shape != y.shape:
            raise ValueError(
                f"the generator maps inputs {x.shape} to {fake.shape}, the targets are {y.shape}"
            )
        losses = {}
        if self.adversarial:
            losses["loss_d"] = self.discriminator_step(x, y, fake.detach())
        losses.update(self.generator_step(x, y, fake))
        return losses

    def discriminator_step(self, x: Tensor, y: Tensor, fake: Tensor) -> Tensor:
        """One D update: real pairs (x, y) towards real, (x, fake) towards fake."""
        opt = self.optimizers["discriminator"]
        opt.zero_grad()
        loss = adversarial.discriminator_loss(
            self.discriminate(x, y), self.discriminate(x, fake.detach()), self.loss
        )
        self.backward(loss)
        self.step(opt)
        return loss.detach()

    def generator_step(self, x: Tensor, y: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """One G update through the frozen D: adversarial + lambda_l1 * L1(fake, y)."""
        opt = self.optimizers["generator"]
        opt.zero_grad()
        l1 = F.l1_loss(fake, y)
        out = {"l1": l1.detach()}
        with frozen(self.discriminator):
            loss = self.lambda_l1 * l1
            if self.adversarial:
                adv = adversarial.generator_loss(self.discriminate(x, fake), self.loss)
                loss = loss + adv
                out["loss_g_adv"] = adv.detach()
            self.backward(loss)
        self.step(opt)
        out["loss_g"] = loss.detach()
        return out

    def _pair(self, batch: tuple) -> tuple[Tensor, Tensor]:
        if len(batch) < 2:
            raise ValueError(f"Pix2Pix batches are (inputs, targets), got {len(batch)} tensor(s)")
        x, y = batch[0], batch[1]
        _check_images("inputs", x)
        _check_images("targets", y)
        return x, y

    # ---------------------------------------------------------------------------------------
    # Translation and samples

    def translate(self, x: Tensor) -> Tensor:
        """G(x) in eval mode without a graph (the generator's own noise still applies)."""
        x = x if isinstance(x, Tensor) else engine.tensor(x, dtype="float32")
        _check_images("inputs", x)
        with evaluating(self.generator):
            return self.generator(x.to(self.device))

    def set_preview(self, inputs: Tensor, targets: Tensor | None = None) -> None:
        """Inputs (and targets) for the per-epoch grid and `sample`; default: the first batch."""
        _check_images("preview inputs", inputs)
        n = self.preview_count
        self.preview_inputs = inputs[:n].detach().to(self.device)
        self.preview_targets = None if targets is None else targets[:n].detach().to(self.device)

    def sample(self, n: int) -> Tensor:
        """Translations of the first `n` preview inputs (repeated if fewer), (n, C, H, W)."""
        _check_positive_int("n", n)
        if self.preview_inputs is None:
            raise RuntimeError(
                "Pix2Pix.sample needs inputs: call set_preview(inputs) or train first"
            )
        return self.translate(repeat_rows(self.preview_inputs, n))

    def preview(self) -> Tensor:
        """Blocks of three rows: inputs, translations, targets (or translations again)."""
        if self.preview_inputs is None:
            raise RuntimeError("Pix2Pix.preview needs inputs: call set_preview(inputs) first")
        x = self.preview_inputs
        out = self.translate(x)
        y = self.preview_targets if self.preview_targets is not None else out
        return comparison_rows(x, out, y, nrow=self.preview_nrow)

    def epoch_metrics(self) -> dict[str, float]:
        if self.eval_data is None:
            return {}
        return {"test_l1": self.evaluate(*self.eval_data)}

    def evaluate(self, inputs: Tensor, targets: Tensor, batch_size: int = 512) -> float:
        """Mean absolute error of G(inputs) against `targets` (eval mode, no graph)."""
        return mean_abs_error(self.translate, inputs, targets, batch_size)

    # ---------------------------------------------------------------------------------------
    # Checkpointing

    def config(self) -> dict:
        return {
            "lambda_l1": self.lambda_l1,
            "loss": self.loss,
            "adversarial": self.adversarial,
            "lr": self.lr,
            "betas": list(self.betas),
        }

    def extra_state(self) -> dict:
        state = {}
        if self.preview_inputs is not None:
            state["preview_inputs"] = self.preview_inputs
        if self.preview_targets is not None:
            state["preview_targets"] = self.preview_targets
        return state

    def load_extra_state(self, state: dict) -> None:
        if "preview_inputs" in state:
            self.preview_inputs = state["preview_inputs"].to(self.device)
        if "preview_targets" in state:
            self.preview_targets = state["preview_targets"].to(self.device)


def repeat_rows(x: Tensor, n: int) -> Tensor:
    """The first `n` rows of `x` repeated along dim 0 as often as needed: (n, ...)."""
    reps = -(-n // x.shape[0])
    return engine.cat([x] * reps, dim=0)[:n]


def mean_abs_error(translate, inputs: Tensor, targets: Tensor, batch_size: int = 512) -> float:
    """Mean |translate(inputs) - targets| over all elements, `batch_size` inputs at a time."""
    total, count = 0.0, 0
    for i in range(0, inputs.shape[0], batch_size):
        out = translate(inputs[i : i + batch_size])
        y = targets[i : i + batch_size].to(out.device)
        total += (out - y).abs().sum().item()
        count += math.prod(y.shape)
    return total / max(count, 1)


def comparison_rows(*rows: Tensor, nrow: int = 8) -> Tensor:
    """Interleave equally long image batches in blocks of `nrow`: row 1 of each, row 2 of each...

    With `save_image(out, nrow=nrow)` each block shows the k-th `nrow` images of every batch
    one under the other (e.g. inputs / outputs / targets). Channels are repeated to the widest.
    """
    c = max(r.shape[1] for r in rows)
    rows = [r if r.shape[1] == c else engine.cat([r] * c, dim=1) for r in rows]
    n = rows[0].shape[0] - rows[0].shape[0] % nrow
    if n == 0:
        return engine.cat(rows, dim=0)
    blocks = [r[:n].reshape(n // nrow, 1, nrow, *r.shape[1:]) for r in rows]
    return engine.cat(blocks, dim=1).reshape(-1, *rows[0].shape[1:])


# ------------------------------------------------------------------------------------------
# The masked-digit completion demo


def mask_lower(images: Tensor, rows: int | None = None) -> Tensor:
    """Images with their lower `rows` rows (default: half the height) set to 0."""
    _check_images("images", images)
    h = images.shape[2]
    rows = h // 2 if rows is None else rows
    keep = numpy.ones((1, 1, h, 1), dtype=images.dtype)
    keep[:, :, h - rows :, :] = 0.0
    return images * engine.tensor(keep, device=images.device)


def masked_pairs(dataset: TensorDataset, rows: int | None = None) -> TensorDataset:
    """(masked image, full image) pairs from a dataset whose first tensor holds the images."""
    images = dataset.tensors[0]
    return TensorDataset(mask_lower(images, rows), images)


class CompletionGenerator(nn.Module):
    """Fills in the masked lower rows of an image: an MLP on (flattened input, noise z).

    z ~ N(0, I) of size `noise_dim` is drawn in every forward pass (the randomness of the
    translation); the known upper rows of the input are pasted back into the output.
    """

    def __init__(
        self,
        image_shape: tuple[int, ...] = (1, 8, 8),
        hidden: int = 256,
        noise_dim: int = 16,
        masked_rows: int | None = None,
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.noise_dim = noise_dim
        c, h, w = self.image_shape
        self.masked_rows = h // 2 if masked_rows is None else masked_rows
        numel = c * h * w
        self.net = nn.Sequential(
            nn.Linear(numel + noise_dim, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, numel),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"CompletionGenerator expects images {self.image_shape}, got {x.shape}"
            )
        parts = [x.flatten(1)]
        if self.noise_dim:
            parts.append(engine.randn(x.shape[0], self.noise_dim, dtype=x.dtype, device=x.device))
        out = self.net(engine.cat(parts, dim=1)).reshape(x.shape)
        h = self.image_shape[1]
        return engine.cat(
            [x[:, :, : h - self.masked_rows], out[:, :, h - self.masked_rows :]], dim=2
        )

    def extra_repr(self) -> str:
        return f"image_shape={self.image_shape}, noise_dim={self.noise_dim}"


def pair_discriminator(image_shape: tuple[int, ...] = (1, 8, 8), hidden: int = 256) -> nn.Module:
    """MLP on a channel-concatenated (input, output) pair -> one logit (N, 1)."""
    c, h, w = image_shape
    return mlp_discriminator((2 * c, h, w), hidden)


def build_pix2pix(
    dataset: str = "digits",
    adversarial: bool = True,
    eval_data: tuple[Tensor, Tensor] | None = None,
    device: Any = "auto",
    seed: int | None = None,
    out_dir=None,
    progress: bool = True,
    **overrides,
) -> Pix2Pix:
    """The masked-lower-half completion model for `dataset` (its recipe in PIX2PIX_RECIPES).

    `adversarial=False` builds the L1-only baseline (same generator, no discriminator loss).
    `overrides` change recipe settings (hidden, noise_dim, lambda_l1, lr, betas, loss).
    """
    r = recipe("pix2pix", PIX2PIX_RECIPES, dataset, overrides)
    if seed is not None:
        engine.manual_seed(seed)
    shape = IMAGE_SHAPES[dataset]
    g = CompletionGenerator(shape, r["hidden"], r["noise_dim"])
    d = pair_discriminator(shape, r["hidden"])
    return Pix2Pix(
        g,
        d,
        lambda_l1=r["lambda_l1"],
        loss=r["loss"],
        adversarial=adversarial,
        lr=r["lr"],
        betas=r["betas"],
        eval_data=eval_data,
        device=device,
        out_dir=out_dir,
        progress=progress,
    )


def sharpness(images: Any, rows: slice | None = None) -> dict[str, float]:
    """Crispness of images (N, C, H, W): mean absolute gradient and variance of the Laplacian.

    `gradient` is mean |x[i+1, j] - x[i, j]| + mean |x[i, j+1] - x[i, j]|; `laplacian_var` the
    variance of the 4-neighbour Laplacian over the interior pixels. Blurry (averaged) images
    score lower on both. `rows` restricts the measure to some image rows (e.g. the completed half
    plus the seam). Computed in float64 on the host.
    """
    x = images.detach().cpu().numpy() if isinstance(images, Tensor) else numpy.asarray(images)
    x = x.astype(numpy.float64)
    if x.ndim != 4:
        raise ValueError(f"sharpness expects images (N, C, H, W), got shape {x.shape}")
    if rows is not None:
        x = x[:, :, rows, :]
    if x.shape[0] == 0 or x.shape[2] < 3 or x.shape[3] < 3:
        raise ValueError(f"sharpness needs images of at least 3x3 pixels, got shape {x.shape}")
    dy = numpy.abs(numpy.diff(x, axis=2)).mean()
    dx = numpy.abs(numpy.diff(x, axis=3)).mean()
    lap = (
        x[:, :, :-2, 1:-1]
        + x[:, :, 2:, 1:-1]
        + x[:, :, 1:-1, :-2]
        + x[:, :, 1:-1, 2:]
        - 4.0 * x[:, :, 1:-1, 1:-1]
    )
    return {"gradient": float(dx + dy), "laplacian_var": float(lap.var())}


def completion_metrics(completions: Any, targets: Any, masked_rows: int | None = None) -> dict:
    """L1 error on the masked rows and `sharpness` of the completed rows plus the seam above.

    `completions`, `targets`: images (N, C, H, W) (Tensors or arrays); the last `masked_rows`
    rows (default: half the height) are the ones that were generated.
    """
    y = completions.detach().cpu().numpy() if isinstance(completions, Tensor) else completions
    t = targets.detach().cpu().numpy() if isinstance(targets, Tensor) else targets
    y, t = numpy.asarray(y, dtype=numpy.float64), numpy.asarray(t, dtype=numpy.float64)
    if y.shape != t.shape or y.ndim != 4:
        raise ValueError(f"completions {y.shape} and targets {t.shape} must be equal (N, C, H, W)")
    h = y.shape[2]
    first = h - (h // 2 if masked_rows is None else masked_rows)
    l1 = float(numpy.abs(y[:, :, first:] - t[:, :, first:]).mean())
    return {"l1": l1, **sharpness(y, rows=slice(max(first - 1, 0), None))}
