"""`GAN`: the textbook adversarial loop with the BCE (non-saturating), hinge and WGAN-GP losses.

Discriminator step: real samples are pushed towards "real", generated ones (detached) towards
"fake". Generator step: the discriminator is frozen (`requires_grad_(False)`, each flag restored
afterwards) and the generator is trained so that the discriminator calls its samples real:

====================  =======================================  =============================
loss                  discriminator loss                       generator loss
====================  =======================================  =============================
``"bce"``             softplus(-D(x)) + softplus(D(G(z)))      softplus(-D(G(z)))
``"hinge"``           relu(1 - D(x)) + relu(1 + D(G(z)))       -D(G(z))
``"wgan-gp"``         D(G(z)) - D(x) + gp_weight * GP          -D(G(z))
====================  =======================================  =============================

(all averaged over the batch; GP is `regularizers.gradient_penalty`, a double backward). With
`n_critic > 1` the generator is updated on every `n_critic`-th batch only.
"""

from __future__ import annotations

import os
from typing import Any

import engine
import optimizers
import regularizers
from engine import Tensor

from . import adversarial
from .trainer import Trainer, evaluating, frozen

__all__ = ["GAN", "LOSSES"]

LOSSES = ("bce", "hinge", "wgan-gp")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _as_latents(z: Any, dim: int, device: Any) -> Tensor:
    """Latents (N, dim) on `device` from a Tensor or an array-like; (dim,) gives (1, dim)."""
    z = z if isinstance(z, Tensor) else engine.tensor(z, dtype="float32")
    if z.ndim == 1:
        z = z.unsqueeze(0)
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"latents must be shaped (N, {dim}) or ({dim},), got {z.shape}")
    return z.to(device)


def _one_score_each(out: Tensor, x: Tensor) -> Tensor:
    """A discriminator's output (N,) or (N, 1) for the inputs `x`, as (N,)."""
    if out.ndim != 1 and not (out.ndim == 2 and out.shape[1] == 1):
        raise ValueError(
            f"the discriminator must return one score per sample, shaped ({x.shape[0]},) "
            f"or ({x.shape[0]}, 1), got {out.shape} for input {x.shape}"
        )
    return out.reshape(-1)


class GAN(Trainer):
    """`GAN(generator, discriminator, latent_dim, loss="bce"|"hinge"|"wgan-gp")`.

    `generator` maps z of shape (N, latent_dim) to images (N, C, H, W) in [0, 1];
    `discriminator` maps images to one logit/score per sample, shaped (N,) or (N, 1).
    Both are trained with Adam(lr, betas). The networks are moved to `device`.
    """

    def __init__(
        self,
        generator,
        discriminator,
        latent_dim: int,
        loss: str = "bce",
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_critic: int = 1,
        gp_weight: float = 10.0,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        _check_positive_int("latent_dim", latent_dim)
        _check_positive_int("n_critic", n_critic)
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.latent_dim = latent_dim
        self.loss = loss
        self.lr, self.betas = lr, tuple(betas)
        self.n_critic = n_critic
        self.gp_weight = gp_weight
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {
            "generator": optimizers.Adam(self.generator.parameters(), lr=lr, betas=self.betas),
            "discriminator": optimizers.Adam(
                self.discriminator.parameters(), lr=lr, betas=self.betas
            ),
        }
        # Fixed latents for the per-epoch grid: the same 64 points every epoch.
        self.fixed_z = self.noise(self.preview_count)

    # ---------------------------------------------------------------------------------------
    # Hooks a conditional subclass overrides

    def _split(self, batch: tuple) -> tuple[Tensor, Any]:
        """(images, condition) from a batch: an unconditional GAN ignores labels."""
        return batch[0], None

    def _generate(self, z: Tensor, cond: Any) -> Tensor:
        return self.generator(z)

    def _discriminate(self, x: Tensor, cond: Any) -> Tensor:
        return _one_score_each(self.discriminator(x), x)

    # ---------------------------------------------------------------------------------------
    # Steps

    def noise(self, n: int) -> Tensor:
        """n standard-normal latents (n, latent_dim) on the trainer's device."""
        return engine.randn(n, self.latent_dim, device=self.device)

    def train_step(self, batch: tuple) -> dict[str, Tensor]:
        real, cond = self._split(batch)
        update_g = (self.global_step + 1) % self.n_critic == 0
        with engine.set_grad_enabled(update_g):
            fake = self._generate(self.noise(real.shape[0]), cond)
        losses = {"loss_d": self.discriminator_step(real, fake.detach(), cond)}
        if update_g:
            losses["loss_g"] = self.generator_step(fake, cond)
        return losses

    def discriminator_loss(self, real: Tensor, fake: Tensor, cond: Any) -> Tensor:
        d_real, d_fake = self._discriminate(real, cond), self._discriminate(fake, cond)
        if self.loss != "wgan-gp":
            return adversarial.discriminator_loss(d_real, d_fake, self.loss)
        penalty = regularizers.gradient_penalty(
            lambda x: self._discriminate(x, cond), real, fake, lambda_gp=self.gp_weight
        )
        return adversarial.discriminator_loss(d_real, d_fake, "wgan") + penalty

    def generator_loss(self, fake: Tensor, cond: Any) -> Tensor:
        kind = "wgan" if self.loss == "wgan-gp" else self.loss
        return adversarial.generator_loss(self._discriminate(fake, cond), kind)

    def discriminator_step(self, real: Tensor, fake: Tensor, cond: Any = None) -> Tensor:
        """One discriminator update on real and (detached) fake samples; returns its loss
        (detached, on the device: the Trainer reads it at its log points, no sync per step)."""
        opt = self.optimizers["discriminator"]
        opt.zero_grad()
        loss = self.discriminator_loss(real, fake.detach(), cond)
        self.backward(loss)
        self.step(opt)
        return loss.detach()

    def generator_step(self, fake: Tensor, cond: Any = None) -> Tensor:
        """One generator update through the frozen discriminator; returns its loss (detached)."""
        opt = self.optimizers["generator"]
        opt.zero_grad()
        with frozen(self.discriminator):
            loss = self.generator_loss(fake, cond)
            self.backward(loss)
        self.step(opt)
        return loss.detach()

    # ---------------------------------------------------------------------------------------
    # Sampling

    def generate(self, z: Tensor) -> Tensor:
        """G(z) in eval mode without a graph; z (N, latent_dim)."""
        z = self._check_latents(z)
        with evaluating(self.generator):
            return self._generate(z, None)

    def sample(self, n: int) -> Tensor:
        """n images G(z), z ~ N(0, I)."""
        _check_positive_int("n", n)
        return self.generate(self.noise(n))

    def preview(self) -> Tensor:
        return self.generate(self.fixed_z)

    def interpolate(self, z0: Tensor, z1: Tensor, steps: int = 8) -> Tensor:
        """Images along the straight line from z0 to z1, endpoints included.

        z0, z1 of shape (latent_dim,) give (steps, C, H, W); of shape (B, latent_dim) they give
        (B * steps, C, H, W), pair by pair, so `save_image(out, nrow=steps)` draws one row each.
        """
        return self.generate(self._interpolated_latents(z0, z1, steps))

    def _interpolated_latents(self, z0: Tensor, z1: Tensor, steps: int) -> Tensor:
        _check_positive_int("steps", steps)
        if z0.shape != z1.shape:
            raise ValueError(f"interpolate: z0 {z0.shape} and z1 {z1.shape} differ in shape")
        z0, z1 = self._check_latents(z0), self._check_latents(z1)
        t = engine.linspace(0.0, 1.0, steps, dtype=z0.dtype, device=self.device)
        t = t.reshape(1, steps, 1)
        z = z0.unsqueeze(1) * (1.0 - t) + z1.unsqueeze(1) * t  # (B, steps, latent_dim)
        return z.reshape(-1, self.latent_dim)

    def _check_latents(self, z: Tensor) -> Tensor:
        return _as_latents(z, self.latent_dim, self.device)

    # ---------------------------------------------------------------------------------------
    # Checkpointing

    def config(self) -> dict:
        return {
            "latent_dim": self.latent_dim,
            "loss": self.loss,
            "lr": self.lr,
            "betas": list(self.betas),
            "n_critic": self.n_critic,
            "gp_weight": self.gp_weight,
        }

    def extra_state(self) -> dict:
        return {"fixed_z": self.fixed_z}

    def load_extra_state(self, state: dict) -> None:
        if "fixed_z" in state:
            self.fixed_z = state["fixed_z"].to(self.device)
