"""The adversarial losses every GAN trainer here shares, on raw discriminator scores.

Scores are logits (any shape; every loss is a mean over all of them). For a discriminator the
real scores are pushed towards "real" and the fake ones towards "fake"; for a generator its
fakes' scores are pushed towards "real":

=========  ==========================================  ===================
kind       discriminator loss                          generator loss
=========  ==========================================  ===================
``bce``    softplus(-real) + softplus(fake)            softplus(-fake)
``lsgan``  (real - 1)^2 + fake^2                       (fake - 1)^2
``hinge``  relu(1 - real) + relu(1 + fake)             -fake
``wgan``   fake - real                                 -fake
=========  ==========================================  ===================

(``bce`` is the non-saturating logistic loss, computed as BCE on logits; WGAN-GP is ``wgan``
plus `regularizers.gradient_penalty`, added by the trainer.)
"""

from __future__ import annotations

import engine
import engine.functional as F
from engine import Tensor

__all__ = ["KINDS", "discriminator_loss", "generator_loss"]

KINDS = ("bce", "lsgan", "hinge", "wgan")


def _towards(scores: Tensor, real: bool, kind: str) -> Tensor:
    """The bce / lsgan loss that pushes `scores` towards real (target 1) or fake (target 0)."""
    target = engine.ones_like(scores) if real else engine.zeros_like(scores)
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(scores, target)
    return F.mse_loss(scores, target)


def discriminator_loss(real_scores: Tensor, fake_scores: Tensor, kind: str) -> Tensor:
    """The discriminator's loss on the scores of real and of (detached) fake samples."""
    if kind == "hinge":
        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()
    if kind == "wgan":
        return fake_scores.mean() - real_scores.mean()
    _check_kind(kind)
    return _towards(real_scores, True, kind) + _towards(fake_scores, False, kind)


def generator_loss(fake_scores: Tensor, kind: str) -> Tensor:
    """The generator's loss on the discriminator's scores of its samples."""
    if kind in ("hinge", "wgan"):
        return -fake_scores.mean()
    _check_kind(kind)
    return _towards(fake_scores, True, kind)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"adversarial loss must be one of {KINDS}, got {kind!r}")
