"""Autoencoders, autoencoders as generators, and latent arithmetic.

`Autoencoder(encoder, decoder)` learns z = encoder(x), x_hat = decode(z) by a reconstruction
loss (BCE on logits or MSE, summed over pixels and averaged over the batch). It is a generator
once a Gaussian is fitted to its latents: `fit_latent_gaussian(loader)` fits N(mean, full
covariance) to the encoded data and `sample(n)` decodes draws from it.

Latent arithmetic: `attribute_vector(x_with, x_without)` is the difference of the mean latents
of two groups (the "smiling vector"), `apply_attribute(x, v, alpha)` decodes z + alpha v, and
`interpolate(x0, x1, steps)` decodes the straight line between two codes.

The networks come from `generative.encoders` (the VAE uses them too); `AutoencoderTrainer`
(generative.autoencoder_trainer) trains an `Autoencoder` or a `VAE`; `dataio.plots` draws the
latent space.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import engine
import engine.functional as F
import layers as nn
from engine import Tensor

from .distributions import MultivariateNormal
from .trainer import evaluating

__all__ = ["Autoencoder", "encode_dataset"]

LOSSES = ("bce", "mse")


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
