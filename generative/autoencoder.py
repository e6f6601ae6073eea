"""Autoencoders, autoencoders as generators, latent arithmetic, and their trainer.

`Autoencoder(encoder, decoder)` learns z = encoder(x), x_hat = decode(z) by a reconstruction
loss (BCE on logits or MSE, summed over pixels and averaged over the batch). It is a generator
once a Gaussian is fitted to its latents: `fit_latent_gaussian(loader)` fits N(mean, full
covariance) to the encoded data and `sample(n)` decodes draws from it.

Latent arithmetic: `attribute_vector(x_with, x_without)` is the difference of the mean latents
of two groups (the "smiling vector"), `apply_attribute(x, v, alpha)` decodes z + alpha v, and
`interpolate(x0, x1, steps)` decodes the straight line between two codes. `save_latent_plot`
draws test latents projected to 2-D by PCA and coloured by class.

`mlp_encoder`/`mlp_decoder` and `conv_encoder`/`conv_decoder` build the networks (the VAE uses
them too); `AutoencoderTrainer` trains an `Autoencoder` or a `VAE` on the `Trainer` base.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
from engine import Tensor

from .distributions import MultivariateNormal
from .trainer import Trainer, evaluating

__all__ = [
    "Autoencoder",
    "AutoencoderTrainer",
    "mlp_encoder",
    "mlp_decoder",
    "conv_encoder",
    "conv_decoder",
    "build_networks",
    "pca_2d",
    "save_latent_plot",
    "encode_dataset",
]

LOSSES = ("bce", "mse")


# -------------------------------------------------------------------------------------------
# Networks


def mlp_encoder(in_shape: Sequence[int], out_features: int, hidden: int = 128) -> nn.Module:
    """Flatten, two ReLU hidden layers, a linear output of `out_features`."""
    n_in = math.prod(in_shape)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(n_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out_features),
    )


def mlp_decoder(latent_dim: int, out_shape: Sequence[int], hidden: int = 128) -> nn.Module:
    """Two ReLU hidden layers to prod(out_shape) outputs (logits or means), unflattened."""
    return nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, math.prod(out_shape)),
        nn.Unflatten(1, tuple(out_shape)),
    )


def _check_conv_shape(shape: Sequence[int]) -> None:
    if len(shape) != 3 or shape[1] % 4 or shape[2] % 4:
        raise ValueError(
            f"the conv networks take (C, H, W) images with H and W divisible by 4, got {shape}"
        )


def conv_encoder(in_shape: Sequence[int], out_features: int, channels: int = 32) -> nn.Module:
    """Two stride-2 3x3 convs (channels, 2 channels) with ReLU, flatten, linear."""
    _check_conv_shape(in_shape)
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * channels * (h // 4) * (w // 4), out_features),
    )


def conv_decoder(latent_dim: int, out_shape: Sequence[int], channels: int = 32) -> nn.Module:
    """Linear to (2 channels, H/4, W/4), two stride-2 4x4 transposed convs back to (C, H, W)."""
    _check_conv_shape(out_shape)
    c, h, w = out_shape
    return nn.Sequential(
        nn.Linear(latent_dim, 2 * channels * (h // 4) * (w // 4)),
        nn.ReLU(),
        nn.Unflatten(1, (2 * channels, h // 4, w // 4)),
        nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1),
    )


#: The `width` of `build_networks` when none is given, by architecture.
DEFAULT_WIDTH = {"mlp": 128, "conv": 32}


def build_networks(
    arch: str, in_shape: Sequence[int], latent_dim: int, encoder_out: int, width: int | None = None
) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) of `arch` "mlp" (width = hidden units, default 128) or "conv"
    (width = first conv's channels, default 32); the encoder has `encoder_out` outputs."""
    in_shape = tuple(int(s) for s in in_shape)
    if arch == "mlp":
        hidden = width or DEFAULT_WIDTH["mlp"]
        return (
            mlp_encoder(in_shape, encoder_out, hidden),
            mlp_decoder(latent_dim, in_shape, hidden),
        )
    if arch == "conv":
        channels = width or DEFAULT_WIDTH["conv"]
        return (
            conv_encoder(in_shape, encoder_out, channels),
            conv_decoder(latent_dim, in_shape, channels),
        )
    raise ValueError(f"arch must be 'mlp' or 'conv', got {arch!r}")


# -------------------------------------------------------------------------------------------
# Data helpers


def _batches(data: Any, batch_size: int = 512) -> Iterable[tuple]:
    """(x,) or (x, y) batches from a Tensor, a TensorDataset or any loader of batches."""
    if isinstance(data, Tensor):
        for i in range(0, data.shape[0], batch_size):
            yield (data[i : i + batch_size],)
    elif isinstance(data, engine.data.TensorDataset):
        yield from engine.data.DataLoader(data, batch_size)
    else:
        for batch in data:
            yield batch if isinstance(batch, (tuple, list)) else (batch,)


def encode_dataset(model: Autoencoder, data: Any, device: Any = None) -> tuple[Tensor, Any]:
    """(latent codes (N, latent_dim), labels or None) of every batch of `data`, without a graph."""
    device = device or model.device
    codes, labels = [], []
    with evaluating(model):
        for batch in _batches(data):
            codes.append(model.encode(batch[0].to(device)))
            if len(batch) > 1:
                labels.append(batch[1].to("cpu"))
    return engine.cat(codes), (engine.cat(labels) if labels else None)


# -------------------------------------------------------------------------------------------
# The model


class Autoencoder(nn.Module):
    """`Autoencoder(encoder, decoder, loss="bce"|"mse")`: z = encoder(x), x_hat = decode(z).

    With `loss="bce"` the decoder outputs logits and `decode` applies the sigmoid; with "mse"
    the decoder's output is the reconstruction. `latent_dim` (the encoder's output size) is
    found on the first `fit_latent_gaussian` when not given.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        loss: str = "bce",
        latent_dim: int | None = None,
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.encoder, self.decoder = encoder, decoder
        self.loss_type = loss
        self.latent_dim = latent_dim
        # The fitted latent Gaussian: buffers, so checkpoints carry it (None until fitted).
        self.register_buffer("latent_loc", None)
        self.register_buffer("latent_covariance", None)
        self._latent_gaussian: MultivariateNormal | None = None

    @property
    def device(self):
        for p in self.parameters():
            return p.device
        return engine.device("cpu")

    # Encoding and decoding -----------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """Latent codes (N, latent_dim)."""
        z = self.encoder(x)
        if z.ndim != 2:
            raise ValueError(
                f"the encoder must output (N, latent_dim), got {z.shape} for {x.shape}"
            )
        return z

    def decoder_output(self, z: Tensor) -> Tensor:
        """The decoder's raw output (logits for BCE)."""
        return self.decoder(z)

    def decode(self, z: Tensor) -> Tensor:
        """Images from codes: sigmoid(logits) for BCE, the decoder's output for MSE."""
        out = self.decoder_output(z)
        return out.sigmoid() if self.loss_type == "bce" else out

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.reconstruct(x)

    # Losses --------------------------------------------------------------------------------
    def reconstruction_loss(self, x: Tensor) -> Tensor:
        """Per-sample loss (N,): BCE or squared error summed over the pixels."""
        out = self.decoder_output(self.encode(x))
        if out.shape != x.shape:
            raise ValueError(f"the decoder returned {out.shape} for an input of shape {x.shape}")
        if self.loss_type == "bce":
            per_pixel = F.binary_cross_entropy_with_logits(out, x, reduction="none")
        else:
            per_pixel = F.mse_loss(out, x, reduction="none")
        return per_pixel.reshape(x.shape[0], -1).sum(1)

    def training_losses(self, x: Tensor) -> dict[str, Tensor]:
        """{"loss": the mean reconstruction loss}: what the trainer minimises and logs."""
        return {"loss": self.reconstruction_loss(x).mean()}

    def evaluate(self, data: Any) -> dict[str, float]:
        """Per-sample means of `training_losses` over `data`, in eval mode without a graph."""
        totals: dict[str, float] = {}
        count = 0
        with evaluating(self):
            for batch in _batches(data):
                x = batch[0].to(self.device)
                for name, value in self.training_losses(x).items():
                    totals[name] = totals.get(name, 0.0) + value.item() * x.shape[0]
                count += x.shape[0]
        return {k: v / count for k, v in totals.items()}

    # As a generator ------------------------------------------------------------------------
    def fit_latent_gaussian(self, loader: Any, eps: float = 1e-5) -> MultivariateNormal:
        """Fit N(mean, full covariance) to the codes of every image in `loader`; keep it."""
        codes, _ = encode_dataset(self, loader)
        mvn = MultivariateNormal.fit(codes, eps=eps)
        self.latent_dim = mvn.dim
        self.register_buffer("latent_loc", mvn.loc)
        self.register_buffer("latent_covariance", mvn.covariance_matrix)
        self._latent_gaussian = mvn
        return mvn

    @property
    def latent_gaussian(self) -> MultivariateNormal:
        if self.latent_loc is None:
            raise RuntimeError("call fit_latent_gaussian(loader) before sampling an Autoencoder")
        mvn, loc = self._latent_gaussian, self.latent_loc
        # `Module.to` converts the buffers in place (so mvn.loc follows) but not the cached
        # Cholesky factor: rebuild when the factor no longer matches the buffers.
        stale = mvn is None or mvn.loc is not loc
        if stale or (mvn.scale_tril.device, mvn.scale_tril.dtype) != (loc.device, loc.dtype):
            mvn = MultivariateNormal(loc, self.latent_covariance)
            self._latent_gaussian = mvn
        return mvn

    def generate(self, eps: Tensor) -> Tensor:
        """Decode standard-normal noise eps (N, latent_dim) mapped through the fitted Gaussian
        (z = mean + eps L^T), in eval mode without a graph."""
        mvn = self.latent_gaussian
        with evaluating(self):
            return self.decode(mvn.loc + eps.to(self.device) @ mvn.scale_tril.T)

    def sample(self, n: int) -> Tensor:
        """n images decoded from draws of the fitted latent Gaussian."""
        return self.generate(engine.randn(n, self.latent_gaussian.dim, device=self.device))

    # Latent arithmetic ---------------------------------------------------------------------
    def attribute_vector(self, x_with: Tensor, x_without: Tensor) -> Tensor:
        """mean code of `x_with` minus mean code of `x_without` (latent_dim,)."""
        with evaluating(self):
            return self.encode(x_with).mean(0) - self.encode(x_without).mean(0)

    def apply_attribute(self, x: Tensor, vector: Tensor, alpha: float = 1.0) -> Tensor:
        """decode(encode(x) + alpha * vector)."""
        with evaluating(self):
            return self.decode(self.encode(x) + alpha * vector)

    def interpolate(self, x0: Tensor, x1: Tensor, steps: int = 8) -> Tensor:
        """Decoded straight line from code(x0) to code(x1), endpoints included.

        Single images (C, H, W) give (steps, C, H, W); batches (B, C, H, W) give
        (B * steps, C, H, W), pair by pair (one row each with `nrow=steps`).
        """
        if x0.shape != x1.shape:
            raise ValueError(f"interpolate: x0 {x0.shape} and x1 {x1.shape} differ in shape")
        if not isinstance(steps, int) or steps < 2:
            raise ValueError(f"steps must be an int >= 2, got {steps!r}")
        single = x0.ndim == 3
        x0, x1 = (x0.unsqueeze(0), x1.unsqueeze(0)) if single else (x0, x1)
        with evaluating(self):
            z0, z1 = self.encode(x0), self.encode(x1)
            t = engine.linspace(0.0, 1.0, steps, dtype=z0.dtype, device=z0.device)
            t = t.reshape(1, steps, 1)
            z = z0.unsqueeze(1) * (1.0 - t) + z1.unsqueeze(1) * t
            return self.decode(z.reshape(-1, z0.shape[1]))

    # State -----------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict, strict: bool = True):
        """As Module's, and a fitted latent Gaussian in `state_dict` is adopted."""
        dtype = next(iter(self.parameters()), engine.zeros(0)).dtype
        for name in ("latent_loc", "latent_covariance"):
            if name in state_dict and getattr(self, name) is None:
                shape = tuple(state_dict[name].shape)
                self.register_buffer(name, engine.zeros(*shape, dtype=dtype, device=self.device))
        result = super().load_state_dict(state_dict, strict)
        self._latent_gaussian = None
        if self.latent_loc is not None:
            self.latent_dim = self.latent_loc.shape[0]
        return result

    def extra_repr(self) -> str:
        return f"loss={self.loss_type!r}, latent_dim={self.latent_dim}"


# -------------------------------------------------------------------------------------------
# Latent-space picture


def pca_2d(z: Any) -> numpy.ndarray:
    """Rows of z projected on their first two principal components (host float64 (N, 2))."""
    a = numpy.asarray(z.detach().cpu().numpy() if isinstance(z, Tensor) else z, dtype=numpy.float64)
    a = a.reshape(a.shape[0], -1) - a.mean(axis=0)
    if a.shape[1] == 1:
        return numpy.concatenate([a, numpy.zeros_like(a)], axis=1)
    _, _, vt = numpy.linalg.svd(a, full_matrices=False)
    return a @ vt[:2].T


_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def save_latent_plot(
    z: Any, labels: Any, path: str | os.PathLike, size: int = 480, title: str = "latent space (PCA)"
) -> None:
    """Scatter of the 2-D PCA projection of codes `z`, one colour per class, as a PNG."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    xy = pca_2d(z)
    if labels is None:
        labels = numpy.zeros(len(xy), dtype=numpy.int64)
    labels = numpy.asarray(labels.cpu().numpy() if isinstance(labels, Tensor) else labels)
    if labels.shape != (len(xy),):
        raise ValueError(f"save_latent_plot: {len(xy)} codes but labels of shape {labels.shape}")
    margin, legend = 30, 60
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = numpy.where(hi - lo > 0, hi - lo, 1.0)
    pix = margin + (xy - lo) / span * (size - 2 * margin)
    pix[:, 1] = size - pix[:, 1]  # y grows upwards
    image = Image.new("RGB", (size + legend, size), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((margin, 8), title, fill="black", font=font)
    classes = numpy.unique(labels)
    for (px, py), lab in zip(pix, labels, strict=True):
        color = _PALETTE[int(numpy.searchsorted(classes, lab)) % len(_PALETTE)]
        draw.ellipse([px - 2.5, py - 2.5, px + 2.5, py + 2.5], fill=color)
    for i, lab in enumerate(classes):
        y = margin + 18 * i
        draw.ellipse([size + 10, y, size + 20, y + 10], fill=_PALETTE[i % len(_PALETTE)])
        draw.text((size + 26, y - 1), str(lab), fill="black", font=font)
    from engine.utils import _atomic_save  # noqa: PLC0415

    _atomic_save(image, path)


# -------------------------------------------------------------------------------------------
# Trainer


class AutoencoderTrainer(Trainer):
    """Trains an `Autoencoder` (or a `VAE`) with Adam on `model.training_losses(x)["loss"]`.

    After each epoch: the test metrics (`test_<name>` for each training loss, e.g.
    `test_neg_elbo` for a VAE) when `test_data` is given, and for a plain autoencoder a refit of
    the latent Gaussian on the training images, so the per-epoch sample grid is drawn from it.
    `architecture` (JSON-able) is stored in checkpoints so `tensortape sample` can rebuild the
    model; `task` names the CLI verb that trained it.
    """

    def __init__(
        self,
        model: Autoencoder,
        lr: float = 1e-3,
        test_data: Any = None,
        task: str = "ae",
        architecture: dict | None = None,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        self.model = model.to(self.device)
        self.lr = lr
        self.test_data = test_data
        self.task = task
        self.checkpoint_meta = {"task": task}  # `tensortape sample` dispatches on it
        self.architecture = dict(architecture or {})
        self.modules = {"model": self.model}
        self.optimizers = {"model": optimizers.Adam(self.model.parameters(), lr=lr)}
        self.summary: dict[str, Any] = {}  # final numbers, written at the top of metrics.json
        self._fit_data: Any = None
        self.fixed_eps: Tensor | None = None

    @property
    def is_vae(self) -> bool:
        return hasattr(self.model, "elbo")

    def train(self, loader: Iterable, epochs: int) -> dict:
        # A plain autoencoder refits its latent Gaussian on the training images, in order.
        dataset = getattr(loader, "dataset", None)
        self._fit_data = dataset if dataset is not None else loader
        return super().train(loader, epochs)

    def train_step(self, batch: tuple) -> dict[str, float]:
        opt = self.optimizers["model"]
        losses = self.model.training_losses(batch[0])
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        return {k: v.item() for k, v in losses.items()}

    def epoch_metrics(self) -> dict[str, float]:
        if not self.is_vae and self._fit_data is not None:
            self.model.fit_latent_gaussian(self._fit_data)
        if self.test_data is None:
            return {}
        tests = self.model.evaluate(self.test_data)
        if self.is_vae:
            tests["neg_elbo"] = tests.pop("loss")
        return {f"test_{k}": v for k, v in tests.items()}

    def _eps(self) -> Tensor:
        dim = self.model.latent_dim
        if self.fixed_eps is None or self.fixed_eps.shape[1] != dim:
            gen = numpy.random.default_rng(1234 if self.seed is None else self.seed)
            eps = gen.standard_normal((self.preview_count, dim)).astype(numpy.float32)
            self.fixed_eps = engine.tensor(eps, device=self.device)
        return self.fixed_eps

    def sample(self, n: int) -> Tensor:
        return self.model.sample(n)

    def preview(self) -> Tensor:
        """The same latent noise every epoch (decoded through the fitted Gaussian for an AE)."""
        if not self.is_vae and self.model.latent_loc is None:
            raise RuntimeError("the autoencoder has no latent Gaussian yet: train one epoch first")
        return self.model.generate(self._eps())

    def config(self) -> dict:
        return {"task": self.task, "lr": self.lr, **self.architecture}

    def extra_state(self) -> dict:
        return {"summary": self.summary}

    def load_extra_state(self, state: dict) -> None:
        self.summary = dict(state.get("summary") or {})

    def metrics(self) -> dict:
        return {**self.summary, **super().metrics()}
