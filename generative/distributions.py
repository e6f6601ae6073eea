"""Generators as distributions: Gaussians a network can output, fit or sample from.

Three ways a network defines a distribution over data x:

- `GaussianHead`: the network outputs the mean and the log-variance of a diagonal Gaussian
  p(x | h) = N(mean(h), diag(exp(logvar(h)))): it says how sure it is, and it is trained by
  maximum likelihood (`F.gaussian_nll_loss`, PyTorch's semantics);
- `PushforwardGenerator`: push z ~ N(0, I) through a network, x = G(z) (GANs, decoders);
- `LatentGaussianGenerator`: both at once, z ~ N(0, I), then x ~ N(mean(z), diag(var(z))).

`DiagonalNormal` holds a batch of diagonal Gaussians (log_prob, reparameterised samples, KL);
`MultivariateNormal` is a full-covariance Gaussian fitted to data (an autoencoder's latents).
`naive_mse_generator` is the demo of why a generator cannot be trained by regressing random
noise onto random data points: the MSE optimum is the mean of the data, whatever z is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
from engine import Tensor

__all__ = [
    "LOG_2PI",
    "normal_log_prob",
    "kl_standard_normal",
    "kl_normal",
    "DiagonalNormal",
    "GaussianHead",
    "PushforwardGenerator",
    "LatentGaussianGenerator",
    "MultivariateNormal",
    "naive_mse_generator",
]

LOG_2PI = math.log(2.0 * math.pi)


# -------------------------------------------------------------------------------------------
# Elementwise densities and divergences (no reduction: callers sum over event dimensions)


def normal_log_prob(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(x; mean, exp(logvar)) per element: -0.5 (log 2 pi + logvar + (x - mean)^2 / var)."""
    return -0.5 * (LOG_2PI + logvar + (x - mean) ** 2 * (-logvar).exp())


def kl_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) per element: 0.5 (var + mean^2 - 1 - logvar)."""
    return 0.5 * (logvar.exp() + mean * mean - 1.0 - logvar)


def kl_normal(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) per element."""
    ratio = (logvar1 - logvar2).exp()
    return 0.5 * (ratio + (mean1 - mean2) ** 2 * (-logvar2).exp() - 1.0 - (logvar1 - logvar2))


def _event_sum(x: Tensor, event_ndim: int) -> Tensor:
    if event_ndim == 0:
        return x
    return x.sum(tuple(range(x.ndim - event_ndim, x.ndim)))


# -------------------------------------------------------------------------------------------
# Diagonal Gaussians


class DiagonalNormal:
    """A batch of Gaussians N(mean, diag(exp(logvar))) with the last `event_ndim` dims as events.

    `event_ndim` defaults to all dims but the first (the batch): `log_prob`, `entropy` and the
    KLs sum over the event dims and return one number per batch element.
    """

    def __init__(self, mean: Tensor, logvar: Tensor, event_ndim: int | None = None) -> None:
        if mean.shape != logvar.shape:
            raise ValueError(
                f"DiagonalNormal: mean {mean.shape} and logvar {logvar.shape} differ in shape"
            )
        self.mean, self.logvar = mean, logvar
        self.event_ndim = max(mean.ndim - 1, 0) if event_ndim is None else event_ndim
        if not 0 <= self.event_ndim <= mean.ndim:
            raise ValueError(f"event_ndim {event_ndim} out of range for shape {mean.shape}")

    @property
    def variance(self) -> Tensor:
        return self.logvar.exp()

    @property
    def stddev(self) -> Tensor:
        return (0.5 * self.logvar).exp()

    def rsample(self) -> Tensor:
        """mean + stddev * eps with eps ~ N(0, I): differentiable in mean and logvar."""
        return self.mean + self.stddev * engine.randn_like(self.mean)

    def sample(self) -> Tensor:
        """A draw without a graph."""
        with engine.no_grad():
            return self.rsample()

    def log_prob(self, x: Tensor) -> Tensor:
        """log density of x summed over the event dims."""
        return _event_sum(normal_log_prob(x, self.mean, self.logvar), self.event_ndim)

    def entropy(self) -> Tensor:
        return _event_sum(0.5 * (LOG_2PI + 1.0 + self.logvar), self.event_ndim)

    def kl_standard_normal(self) -> Tensor:
        """KL(self || N(0, I)) summed over the event dims (closed form)."""
        return _event_sum(kl_standard_normal(self.mean, self.logvar), self.event_ndim)

    def kl(self, other: DiagonalNormal) -> Tensor:
        """KL(self || other) summed over the event dims (closed form)."""
        return _event_sum(
            kl_normal(self.mean, self.logvar, other.mean, other.logvar), self.event_ndim
        )

    def __repr__(self) -> str:
        return f"DiagonalNormal(shape={self.mean.shape}, event_ndim={self.event_ndim})"


class GaussianHead(nn.Module):
    """Linear heads for the mean and the log-variance: features (N, in) -> `DiagonalNormal`.

    `logvar` is soft-clamped into [min_logvar, max_logvar] (a scaled tanh), so a confident
    network cannot drive its variance to zero and its likelihood to infinity.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        min_logvar: float = -10.0,
        max_logvar: float = 10.0,
    ) -> None:
        super().__init__()
        if not min_logvar < max_logvar:
            raise ValueError(f"need min_logvar < max_logvar, got {min_logvar}, {max_logvar}")
        self.mean = nn.Linear(in_features, out_features)
        self.logvar = nn.Linear(in_features, out_features)
        self.min_logvar, self.max_logvar = float(min_logvar), float(max_logvar)

    def forward(self, h: Tensor) -> DiagonalNormal:
        mid = 0.5 * (self.max_logvar + self.min_logvar)
        half = 0.5 * (self.max_logvar - self.min_logvar)
        raw = self.logvar(h)
        logvar = mid + half * ((raw - mid) * (1.0 / half)).tanh()
        return DiagonalNormal(self.mean(h), logvar)

    def log_prob(self, h: Tensor, x: Tensor) -> Tensor:
        """log p(x | h) per sample."""
        return self(h).log_prob(x)

    def sample(self, h: Tensor) -> Tensor:
        """x ~ p(x | h), one draw per row of h."""
        return self(h).sample()

    def loss(self, h: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
        """`F.gaussian_nll_loss(mean, target, var, full=True)`: the per-element NLL."""
        dist = self(h)
        return F.gaussian_nll_loss(dist.mean, target, dist.variance, full=True, reduction=reduction)

    def extra_repr(self) -> str:
        return f"logvar in [{self.min_logvar}, {self.max_logvar}]"


class PushforwardGenerator(nn.Module):
    """x = net(z), z ~ N(0, I_latent_dim): an implicit distribution (no density)."""

    def __init__(self, net: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.net, self.latent_dim = net, latent_dim

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def sample(self, n: int, device: Any = None) -> Tensor:
        device = device or _module_device(self)
        return self.net(engine.randn(n, self.latent_dim, device=device))


class LatentGaussianGenerator(nn.Module):
    """z ~ N(0, I), x ~ N(mean(z), diag(var(z))): `net` maps z to features, `head` to a Gaussian."""

    def __init__(self, net: nn.Module, head: GaussianHead, latent_dim: int) -> None:
        super().__init__()
        self.net, self.head, self.latent_dim = net, head, latent_dim

    def forward(self, z: Tensor) -> DiagonalNormal:
        return self.head(self.net(z))

    def sample(self, n: int, device: Any = None) -> Tensor:
        device = device or _module_device(self)
        return self(engine.randn(n, self.latent_dim, device=device)).sample()


def _module_device(module: nn.Module):
    for p in module.parameters():
        return p.device
    return engine.device("cpu")


# -------------------------------------------------------------------------------------------
# Full-covariance Gaussian


class MultivariateNormal:
    """N(loc, covariance_matrix) in d dimensions, through the Cholesky factor L (cov = L L^T).

    Fitting and factorising run on raw arrays (no gradient flows into loc or the covariance);
    `log_prob(x)` is differentiable in x.
    """

    def __init__(self, loc: Tensor, covariance_matrix: Tensor) -> None:
        d = loc.shape[-1] if loc.ndim == 1 else None
        if d is None or covariance_matrix.shape != (d, d):
            raise ValueError(
                f"MultivariateNormal: loc must be (d,) and covariance (d, d), got {loc.shape} "
                f"and {covariance_matrix.shape}"
            )
        if loc.device != covariance_matrix.device:
            raise ValueError(
                f"MultivariateNormal: loc on {loc.device}, covariance on {covariance_matrix.device}"
            )
        self.loc = loc.detach()
        self.covariance_matrix = covariance_matrix.detach()
        xp = loc.xp
        cov64 = self.covariance_matrix.array.astype(numpy.float64)
        try:
            chol = xp.linalg.cholesky(cov64)
        except Exception as e:  # numpy.linalg.LinAlgError; cupy returns NaNs instead
            raise ValueError(
                f"MultivariateNormal: covariance is not positive definite ({e})"
            ) from e
        if not bool(xp.isfinite(chol).all()):
            raise ValueError("MultivariateNormal: covariance is not positive definite")
        dtype = loc.dtype
        self.scale_tril = Tensor._wrap(chol.astype(dtype), loc.device)
        self._precision_tril = Tensor._wrap(
            xp.linalg.inv(chol).T.astype(dtype), loc.device
        )  # (L^-1)^T: whitened = (x - loc) @ (L^-1)^T
        self._half_log_det = float(xp.log(xp.diagonal(chol)).sum())

    @classmethod
    def fit(cls, x: Tensor, eps: float = 1e-6) -> MultivariateNormal:
        """Maximum-likelihood fit to the rows of x (N, d): sample mean and covariance (1/N),
        plus `eps` on the diagonal so a degenerate direction stays invertible."""
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"MultivariateNormal.fit expects (N >= 2, d) data, got {x.shape}")
        xp, a = x.xp, x.detach().array.astype(numpy.float64)
        mean = a.mean(axis=0)
        centred = a - mean
        cov = centred.T @ centred / a.shape[0] + eps * xp.eye(a.shape[1])
        return cls(
            Tensor._wrap(mean.astype(x.dtype), x.device),
            Tensor._wrap(cov.astype(x.dtype), x.device),
        )

    @property
    def dim(self) -> int:
        return self.loc.shape[0]

    @property
    def device(self):
        return self.loc.device

    def sample(self, n: int) -> Tensor:
        """(n, d) draws loc + eps L^T, eps ~ N(0, I)."""
        eps = engine.randn(n, self.dim, dtype=self.loc.dtype, device=self.device)
        return self.loc + eps @ self.scale_tril.T

    def log_prob(self, x: Tensor) -> Tensor:
        """log density of each row of x (..., d)."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"log_prob: x of shape {x.shape} for a {self.dim}-d Gaussian")
        w = (x - self.loc) @ self._precision_tril
        return -0.5 * (w * w).sum(-1) - self._half_log_det - 0.5 * self.dim * LOG_2PI

    def to(self, device: Any) -> MultivariateNormal:
        return MultivariateNormal(self.loc.to(device), self.covariance_matrix.to(device))

    def __repr__(self) -> str:
        return f"MultivariateNormal(dim={self.dim}, device={self.device})"


# -------------------------------------------------------------------------------------------
# Why a generator is not trained by regression


def naive_mse_generator(
    data: Tensor,
    latent_dim: int = 2,
    hidden: int = 64,
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 1e-3,
    n_samples: int = 256,
) -> dict:
    """Train x = G(z) by MSE between G(z) and a *randomly paired* data point; report the collapse.

    z is independent of the data point it is paired with, so the MSE optimum is G(z) = E[x] for
    every z: the generator collapses onto the mean of the modes. Returns the trained generator,
    `n_samples` samples and two numbers: `sample_spread` (mean distance of samples to the data
    mean) against `data_spread` (the same for the data); their ratio `spread_ratio` is ~0.
    """
    flat = data.detach().reshape(data.shape[0], -1)
    device, dim = flat.device, flat.shape[1]
    net = nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, dim),
    ).to(device)
    opt = optimizers.Adam(net.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        idx = engine.randint(0, flat.shape[0], (batch_size,), device=device)
        target = flat[idx]  # independent of z: the "random pairing"
        loss = F.mse_loss(net(engine.randn(batch_size, latent_dim, device=device)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with engine.no_grad():
        samples = net(engine.randn(n_samples, latent_dim, device=device))
        centre = flat.mean(0)
        sample_spread = ((samples - centre) ** 2).sum(1).sqrt().mean().item()
        data_spread = ((flat - centre) ** 2).sum(1).sqrt().mean().item()
    return {
        "generator": net,
        "samples": samples.reshape((n_samples,) + tuple(data.shape[1:])),
        "losses": losses,
        "sample_spread": sample_spread,
        "data_spread": data_spread,
        "spread_ratio": sample_spread / data_spread,
    }
