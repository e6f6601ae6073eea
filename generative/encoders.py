"""The autoencoder's and VAE's networks: MLP and conv encoders/decoders, and `build_networks`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import layers as nn

__all__ = [
    "DEFAULT_WIDTH",
    "mlp_encoder",
    "mlp_decoder",
    "conv_encoder",
    "conv_decoder",
    "build_networks",
]


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
