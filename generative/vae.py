"""The variational autoencoder (Kingma & Welling), with its importance-weighted likelihood.

The encoder outputs the mean and log-variance of q(z | x) = N(mu, diag(sigma^2)) as one
(N, 2 * latent_dim) tensor; z = mu + sigma * eps (the reparameterisation trick) is decoded into
the parameters of p(x | z): Bernoulli logits, or Gaussian means with one learned log-variance
shared by all pixels. Training minimises the negative ELBO

    -ELBO(x) = -E_q[log p(x | z)] + KL(q(z | x) || N(0, I))

with one z per image and the KL in closed form. `log_likelihood(x, k)` is the
importance-weighted bound (Burda et al.) log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z | x):
it is >= the ELBO on average and tightens to log p(x) as k grows.
"""

from __future__ import annotations

import math
from typing import Any

import engine
import engine.functional as F
import layers as nn
from engine import Tensor

from .autoencoder import Autoencoder, _batches
from .distributions import LOG_2PI, DiagonalNormal
from .trainer import evaluating

__all__ = ["VAE", "LIKELIHOODS"]

LIKELIHOODS = ("bernoulli", "gaussian")


class VAE(Autoencoder):
    """`VAE(encoder, decoder, latent_dim, likelihood="bernoulli"|"gaussian")`.

    `encoder(x)` -> (N, 2 * latent_dim) = [mu, logvar]; `decoder(z)` -> logits (bernoulli) or
    means (gaussian) shaped like x. `encode(x)` is the posterior mean (for latent arithmetic and
    pictures); `posterior(x)` the whole q(z | x).
    """

    def __init__(
        self, encoder: nn.Module, decoder: nn.Module, latent_dim: int, likelihood: str = "bernoulli"
    ) -> None:
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}")
        # The inherited `decode` (sigmoid for "bce") then gives the mean of p(x | z).
        super().__init__(
            encoder,
            decoder,
            loss="bce" if likelihood == "bernoulli" else "mse",
            latent_dim=latent_dim,
        )
        self.likelihood = likelihood
        if likelihood == "gaussian":
            # log sigma^2 of p(x | z), shared by every pixel and learned with the rest.
            self.decoder_logvar = nn.Parameter(engine.zeros(1))

    # q(z | x) ---------------------------------------------------------------------------------
    def posterior(self, x: Tensor) -> DiagonalNormal:
        h = self.encoder(x)
        if h.ndim != 2 or h.shape[1] != 2 * self.latent_dim:
            raise ValueError(
                f"the VAE encoder must output (N, 2 * latent_dim) = (N, {2 * self.latent_dim}), "
                f"got {h.shape} for input {x.shape}"
            )
        return DiagonalNormal(h[:, : self.latent_dim], h[:, self.latent_dim :])

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean of z."""
        return self.posterior(x).mean

    # p(x | z) ---------------------------------------------------------------------------------
    def log_likelihood_given_z(self, x: Tensor, out: Tensor) -> Tensor:
        """log p(x | z) per sample from the decoder output `out` (x's shape, maybe with a leading
        sample dim: out (k, N, ...) against x (N, ...) gives (k, N))."""
        target = x.expand(*out.shape) if out.shape != x.shape else x
        if self.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(out, target, reduction="none")
        else:
            var = self.decoder_logvar.exp().expand(*out.shape)
            nll = F.gaussian_nll_loss(out, target, var, full=True, reduction="none")
        lead = out.ndim - x.ndim + 1
        return -nll.reshape(out.shape[:lead] + (-1,)).sum(-1)

    # The bound ----------------------------------------------------------------------------------
    def elbo_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log p(x | z) with z ~ q(z | x) reparameterised, KL(q || N(0, I))), each (N,)."""
        q = self.posterior(x)
        out = self.decoder_output(q.rsample())
        if out.shape != x.shape:
            raise ValueError(f"the decoder returned {out.shape} for an input of shape {x.shape}")
        return self.log_likelihood_given_z(x, out), q.kl_standard_normal()

    def elbo(self, x: Tensor) -> Tensor:
        """The evidence lower bound per sample (N,), one-sample estimate, differentiable."""
        log_px, kl = self.elbo_terms(x)
        return log_px - kl

    def training_losses(self, x: Tensor) -> dict[str, Tensor]:
        """{"loss": mean negative ELBO, "rec": mean -log p(x | z), "kl": mean KL} (nats)."""
        log_px, kl = self.elbo_terms(x)
        rec, kl = -log_px.mean(), kl.mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    def reconstruction_loss(self, x: Tensor) -> Tensor:
        return -self.elbo_terms(x)[0]

    def evaluate(self, data: Any, samples: int = 1) -> dict[str, float]:
        """Mean negative ELBO ("loss"), "rec" and "kl" over `data`, over `samples` draws each."""
        runs = [super(VAE, self).evaluate(data) for _ in range(samples)]
        return {k: sum(r[k] for r in runs) / samples for k in runs[0]}

    # Importance-weighted likelihood ------------------------------------------------------------
    def log_likelihood(self, x: Tensor, k: int = 100, chunk: int = 50) -> Tensor:
        """Importance-weighted estimate of log p(x) per sample (N,) with k posterior draws
        (decoded `chunk` draws at a time); no graph."""
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        with evaluating(self):
            q = self.posterior(x)
            parts = []
            for start in range(0, k, chunk):
                m = min(chunk, k - start)
                parts.append(self._log_weights(x, q, m))
            log_w = engine.cat(parts, 0)  # (k, N)
            return log_w.logsumexp(0) - math.log(k)

    def _log_weights(self, x: Tensor, q: DiagonalNormal, m: int) -> Tensor:
        """log p(x, z_i) - log q(z_i | x) for m draws: (m, N)."""
        eps = engine.randn(m, *q.mean.shape, dtype=q.mean.dtype, device=q.mean.device)
        z = q.mean + q.stddev * eps
        out = self.decoder_output(z.reshape(-1, self.latent_dim))
        out = out.reshape((m,) + tuple(x.shape))
        log_pz = -0.5 * (z * z + LOG_2PI).sum(-1)
        log_qz = -0.5 * (eps * eps + q.logvar + LOG_2PI).sum(-1)
        return self.log_likelihood_given_z(x, out) + log_pz - log_qz

    def evaluate_log_likelihood(self, data: Any, k: int = 100) -> float:
        """Mean importance-weighted log p(x) over `data` (nats)."""
        total, count = 0.0, 0
        for batch in _batches(data, 256):
            x = batch[0].to(self.device)
            total += self.log_likelihood(x, k).sum().item()
            count += x.shape[0]
        return total / count

    # Sampling ---------------------------------------------------------------------------------
    def generate(self, eps: Tensor) -> Tensor:
        """The means of p(x | z) at z = eps (N, latent_dim), in eval mode without a graph."""
        with evaluating(self):
            return self.decode(eps.to(self.device))

    def sample(self, n: int, mean: bool = True) -> Tensor:
        """n images from z ~ N(0, I): the means of p(x | z), or draws from it (`mean=False`)."""
        z = engine.randn(n, self.latent_dim, device=self.device)
        x = self.generate(z)
        if mean:
            return x
        if self.likelihood == "bernoulli":
            return (engine.rand_like(x) < x).float()
        with engine.no_grad():
            return x + (0.5 * self.decoder_logvar).exp() * engine.randn_like(x)

    def fit_latent_gaussian(self, loader: Any, eps: float = 1e-5):
        raise TypeError(
            "a VAE samples from its prior N(0, I); fit_latent_gaussian is for plain autoencoders"
        )

    def extra_repr(self) -> str:
        return f"latent_dim={self.latent_dim}, likelihood={self.likelihood!r}"
