"""Gradient penalties for GAN critics, via double backward (`engine.grad(create_graph=True)`).

- `gradient_penalty` (WGAN-GP, Gulrajani et al. 2017): lambda * E[(||grad_x D(x_hat)|| - 1)^2] at
  random interpolates x_hat between real and fake samples.
- `r1_penalty` (R1, Mescheder et al. 2018; StyleGAN): gamma / 2 * E[||grad_x D(x)||^2] at real
  samples.

Both return a scalar Tensor whose graph reaches the critic's parameters, so adding it to the
critic's loss and calling `backward()` trains the critic on it. For a conditional critic pass
`lambda x: D(x, labels)`.
"""

from __future__ import annotations

from typing import Callable

import engine
from engine import Tensor

__all__ = ["gradient_penalty", "r1_penalty"]


def _input_grads(critic: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """d sum(critic(x)) / dx, recorded so it can be differentiated again; shape (N, -1)."""
    out = critic(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"the critic must return a Tensor, got {type(out).__name__}")
    if out.ndim == 0 or out.shape[0] != x.shape[0]:
        raise ValueError(
            f"the critic must return one score per sample (leading dim "
            f"{x.shape[0]}), got shape {out.shape}"
        )
    (grad,) = engine.grad(out.sum(), (x,), create_graph=True)
    return grad.reshape(x.shape[0], -1)


@engine.enable_grad()  # a penalty is for training: it records its graph even under no_grad
def gradient_penalty(
    critic: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    lambda_gp: float = 10.0,
    alpha: Tensor | None = None,
) -> Tensor:
    """WGAN-GP: lambda_gp * mean((||grad D(x_hat)||_2 - 1)^2), x_hat = a real + (1 - a) fake.

    `alpha` (shape (N,) or broadcastable to real) fixes the interpolation weights; by default one
    U(0, 1) draw per sample from the engine's generator. `real` and `fake` are detached.
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"gradient_penalty: real {real.shape} and fake {fake.shape} samples "
            "must have the same shape"
        )
    if real.device != fake.device:
        raise ValueError(f"gradient_penalty: real on {real.device}, fake on {fake.device}")
    n = real.shape[0]
    per_sample = (n,) + (1,) * (real.ndim - 1)
    if alpha is None:
        alpha = engine.rand(*per_sample, dtype=real.dtype, device=real.device)
    elif alpha.ndim == 1:
        alpha = alpha.reshape(per_sample)
    alpha = alpha.detach()
    x_hat = (alpha * real.detach() + (1.0 - alpha) * fake.detach()).detach().requires_grad_(True)
    grad = _input_grads(critic, x_hat)
    norm = ((grad * grad).sum(1) + 1e-12).sqrt()  # eps: finite gradient where grad is 0
    return ((norm - 1.0) ** 2).mean() * lambda_gp


@engine.enable_grad()
def r1_penalty(
    discriminator: Callable[[Tensor], Tensor], real: Tensor, gamma: float = 10.0
) -> Tensor:
    """R1: gamma / 2 * mean(||grad D(x)||^2) over real samples x (no square root needed)."""
    x = real.detach().requires_grad_(True)
    grad = _input_grads(discriminator, x)
    return (grad * grad).sum(1).mean() * (0.5 * gamma)
