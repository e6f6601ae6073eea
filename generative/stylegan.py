"""A compact StyleGAN (Karras et al. 2019, 2020) for small images such as the 8x8 digits.

Generator:

- mapping network z -> w: pixel norm, then an MLP of equalized-lr linear layers (LeakyReLU 0.2)
  with a reduced learning rate (`lr_multiplier`, as in StyleGAN);
- synthesis network: a learned constant at `start_resolution`, then `layers_per_resolution`
  style layers per resolution, doubling the size (bilinear) at the first layer of each new
  resolution. Every style layer is a modulated 3x3 convolution (StyleGAN2's weight
  modulation/demodulation: the input is scaled per channel by the style `affine(w)`, the output
  divided by the norm of the per-sample effective weight), plus per-pixel noise with a learned
  per-channel strength, a bias and LeakyReLU(0.2). Each resolution has a modulated 1x1 "toRGB"
  and the image is the sum of the upsampled outputs (StyleGAN2's skip architecture), so the
  coarse layers draw the low-frequency picture and the fine layers add detail;
- each style layer has its own w (`ws` of shape (N, num_ws, w_dim)): style mixing
  (`mix(z_src, z_dst, layers)`) takes the source's w for the chosen layers, and mixing
  regularisation during training (`mixing_prob`) teaches the layers to be independent;
- truncation trick: w' = w_avg + psi (w - w_avg), w_avg an exponential moving average of the
  mapped latents tracked during training.

Discriminator: strided 3x3 convolutions down to the starting resolution, a minibatch-stddev
feature, a 3x3 convolution and two linear layers.

Training: the non-saturating logistic loss, Adam(betas=(0, 0.99)), the optional R1 penalty on
real images (`r1_gamma`, applied lazily every `r1_every` steps with the weight scaled to match,
a double backward through the discriminator's convolutions). Images are scaled to [-1, 1] for the
networks; `sample` returns [0, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy

import engine
import engine.functional as F
import layers as nn
import optimizers
import regularizers
from engine import Tensor

from . import adversarial
from .gan import _as_latents, _check_positive_int
from .trainer import Trainer, evaluating, frozen, rng_state_preserved

__all__ = [
    "EqualizedLinear",
    "MappingNetwork",
    "ModulatedConv2d",
    "StyleLayer",
    "SynthesisNetwork",
    "StyleGenerator",
    "StyleDiscriminator",
    "StyleGAN",
    "RECIPES",
    "build_stylegan",
]

NOISE_MODES = ("random", "const", "none")
_GAIN = math.sqrt(2.0)  # keeps LeakyReLU activations at unit variance


def _lrelu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, 0.2) * _GAIN


# ------------------------------------------------------------------------------------------
# Generator building blocks


class EqualizedLinear(nn.Module):
    """y = x (W c)^T + b m, W ~ N(0, 1/m^2), c = m / sqrt(in_features) (equalized learning rate:
    Adam's step moves every weight at the same relative speed; `lr_multiplier` m slows it)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(engine.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(engine.full((out_features,), float(bias_init) / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.weight_gain, self.bias * self.lr_multiplier)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"lr_multiplier={self.lr_multiplier}"
        )


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> w (N, w_dim): pixel norm, then `num_layers` equalized linear layers."""

    def __init__(
        self, z_dim: int, w_dim: int, num_layers: int = 4, lr_multiplier: float = 0.01
    ) -> None:
        super().__init__()
        dims = [z_dim] + [w_dim] * num_layers
        self.net = nn.ModuleList(
            EqualizedLinear(a, b, lr_multiplier=lr_multiplier)
            for a, b in zip(dims[:-1], dims[1:], strict=True)
        )

    def forward(self, z: Tensor) -> Tensor:
        x = z * ((z * z).mean(1, keepdim=True) + 1e-8).rsqrt()
        for layer in self.net:
            x = _lrelu(layer(x))
        return x


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution, as scale -> conv -> rescale (no per-sample weights).

    s = affine(w) (N, C_in); y = conv(x * s, W c) and, with `demodulate`, y is divided per sample
    and output channel by sqrt(sum_{i,k} (W c s_i)^2), the norm of the modulated weight.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        w_dim: int,
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.demodulate = kernel_size, demodulate
        self.weight = nn.Parameter(
            engine.randn(out_channels, in_channels, kernel_size, kernel_size)
        )
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)  # (N, C_in)
        weight = self.weight * self.weight_gain
        y = F.conv2d(x * styles.reshape(*styles.shape, 1, 1), weight, padding=self.kernel_size // 2)
        if not self.demodulate:
            return y
        # |W s|^2 per (sample, out channel) = s^2 @ (sum over the kernel of W^2)^T
        power = (styles * styles).matmul((weight * weight).sum((2, 3)).t())
        return y * (power + 1e-8).rsqrt().reshape(*power.shape, 1, 1)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"demodulate={self.demodulate}"
        )


class StyleLayer(nn.Module):
    """[2x bilinear upsample] -> modulated conv -> + noise * strength -> + bias -> LeakyReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        upsample: bool = False,
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        self.upsample, self.resolution = upsample, resolution
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, w_dim)
        self.noise_strength = nn.Parameter(engine.zeros(out_channels))
        self.bias = nn.Parameter(engine.zeros(out_channels))
        # The fixed noise of noise_mode="const" (a buffer, so checkpoints keep it).
        self.register_buffer("noise_const", engine.randn(1, 1, resolution, resolution))

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random") -> Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        y = self.conv(x, w)
        if noise_mode != "none":
            if noise_mode == "random":
                size = (x.shape[0], 1, self.resolution, self.resolution)
                noise = engine.randn(*size, dtype=y.dtype, device=y.device)
            else:
                noise = self.noise_const
            y = y + noise * self.noise_strength.reshape(1, -1, 1, 1)
        return _lrelu(y + self.bias.reshape(1, -1, 1, 1))


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> images (N, image_channels, R, R), R = start * 2^(len(channels)-1).

    `channels[i]` is the width at resolution start * 2^i. One w per style layer; each
    resolution's toRGB uses the w of that resolution's last layer.
    """

    def __init__(
        self,
        w_dim: int,
        channels: Sequence[int] = (64, 32),
        start_resolution: int = 4,
        layers_per_resolution: int = 2,
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        _check_positive_int("start_resolution", start_resolution)
        _check_positive_int("layers_per_resolution", layers_per_resolution)
        if not channels:
            raise ValueError("channels must list at least one width")
        self.w_dim, self.channels = w_dim, tuple(int(c) for c in channels)
        self.start_resolution = start_resolution
        self.layers_per_resolution = layers_per_resolution
        self.image_channels = image_channels
        self.const = nn.Parameter(
            engine.randn(self.channels[0], start_resolution, start_resolution)
        )
        blocks, to_rgb = [], []
        c_in, res = self.channels[0], start_resolution
        for i, c in enumerate(self.channels):
            res = start_resolution * 2**i
            blocks.append(StyleLayer(c_in, c, w_dim, res, upsample=i > 0))
            blocks.extend(StyleLayer(c, c, w_dim, res) for _ in range(layers_per_resolution - 1))
            to_rgb.append(ModulatedConv2d(c, image_channels, 1, w_dim, demodulate=False))
            c_in = c
        self.layers = nn.ModuleList(blocks)
        self.to_rgb = nn.ModuleList(to_rgb)
        self.rgb_bias = nn.Parameter(engine.zeros(image_channels))
        self.resolution = res
        self.num_ws = len(blocks)

    def layer_groups(self) -> dict[str, list[int]]:
        """Style-layer indices by scale: coarse = the first resolution, fine = the last one,
        middle = those between (with two resolutions: the first layer of the last one)."""
        per = self.layers_per_resolution
        by_res = [list(range(i * per, (i + 1) * per)) for i in range(len(self.channels))]
        if len(by_res) >= 3:
            middle = [i for r in by_res[1:-1] for i in r]
            return {"coarse": by_res[0], "middle": middle, "fine": by_res[-1]}
        if len(by_res) == 2 and per >= 2:
            return {"coarse": by_res[0], "middle": by_res[1][:1], "fine": by_res[1][1:]}
        return {"coarse": by_res[0], "middle": [], "fine": by_res[-1]}

    def forward(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(
                f"synthesis expects ws shaped (N, {self.num_ws}, {self.w_dim}), got {ws.shape}"
            )
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        n, per = ws.shape[0], self.layers_per_resolution
        x = self.const.unsqueeze(0).expand(n, *self.const.shape)
        image = None
        for i, layer in enumerate(self.layers):
            w = ws[:, i]
            x = layer(x, w, noise_mode)
            if (i + 1) % per == 0:
                rgb = self.to_rgb[i // per](x, w)
                if image is not None:
                    image = F.interpolate(
                        image, scale_factor=2, mode="bilinear", align_corners=False
                    )
                    rgb = rgb + image
                image = rgb
        return image + self.rgb_bias.reshape(1, -1, 1, 1)


class StyleGenerator(nn.Module):
    """Mapping + synthesis + the tracked mean w (buffer `w_avg`) for the truncation trick."""

    def __init__(
        self,
        z_dim: int = 32,
        w_dim: int = 32,
        mapping_layers: int = 4,
        mapping_lr_multiplier: float = 0.01,
        channels: Sequence[int] = (64, 32),
        start_resolution: int = 4,
        layers_per_resolution: int = 2,
        image_channels: int = 1,
    ) -> None:
        super().__init__()
        _check_positive_int("z_dim", z_dim)
        _check_positive_int("w_dim", w_dim)
        self.z_dim, self.w_dim = z_dim, w_dim
        self.mapping_layers, self.mapping_lr_multiplier = mapping_layers, mapping_lr_multiplier
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, mapping_lr_multiplier)
        self.synthesis = SynthesisNetwork(
            w_dim, channels, start_resolution, layers_per_resolution, image_channels
        )
        self.register_buffer("w_avg", engine.zeros(w_dim))
        self.num_ws = self.synthesis.num_ws

    def map(
        self, z: Tensor, truncation_psi: float = 1.0, w_avg_beta: float | None = None
    ) -> Tensor:
        """ws (N, num_ws, w_dim): the mapped w, truncated towards `w_avg` by psi, per layer.

        With `w_avg_beta`, first moves `w_avg` towards this batch's mean w (training).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"latents must be shaped (N, {self.z_dim}), got {z.shape}")
        w = self.mapping(z)
        if w_avg_beta is not None:
            with engine.no_grad():
                self.w_avg.copy_(w.detach().mean(0).lerp(self.w_avg, w_avg_beta))
        if truncation_psi != 1.0:
            w = self.w_avg.detach().lerp(w, truncation_psi)
        return w.unsqueeze(1).expand(w.shape[0], self.num_ws, self.w_dim)

    def forward(self, z: Tensor, truncation_psi: float = 1.0, noise_mode: str = "random") -> Tensor:
        return self.synthesis(self.map(z, truncation_psi), noise_mode)


# ------------------------------------------------------------------------------------------
# Discriminator


class StyleDiscriminator(nn.Module):
    """Images (N, C, R, R) -> one logit each: a 3x3 conv, strided 3x3 convs down to
    `end_resolution`, the minibatch-stddev feature, a 3x3 conv, two linear layers."""

    def __init__(
        self,
        resolution: int = 8,
        channels: Sequence[int] = (32, 32, 32),
        image_channels: int = 1,
        end_resolution: int = 2,
        mbstd_group_size: int = 4,
    ) -> None:
        super().__init__()
        steps = int(round(math.log2(resolution / end_resolution)))
        if end_resolution * 2**steps != resolution:
            raise ValueError(
                f"resolution {resolution} must be end_resolution {end_resolution} "
                "times a power of 2"
            )
        if len(channels) != steps + 1:
            raise ValueError(
                f"channels needs {steps + 1} widths (one per resolution from {resolution} down "
                f"to {end_resolution}), got {tuple(channels)}"
            )
        self.resolution, self.channels = resolution, tuple(int(c) for c in channels)
        self.image_channels, self.end_resolution = image_channels, end_resolution
        convs = [nn.Conv2d(image_channels, channels[0], 3, padding=1)]
        convs += [
            nn.Conv2d(a, b, 3, stride=2, padding=1)
            for a, b in zip(channels[:-1], channels[1:], strict=True)
        ]
        self.convs = nn.ModuleList(convs)
        self.mbstd_group_size = mbstd_group_size
        c = channels[-1]
        self.conv_out = nn.Conv2d(c + (mbstd_group_size > 0), c, 3, padding=1)
        self.fc = nn.Linear(c * end_resolution * end_resolution, c)
        self.out = nn.Linear(c, 1)

    def minibatch_stddev(self, x: Tensor) -> Tensor:
        """Append the mean stddev over groups of samples as one more channel (sees diversity)."""
        n, c, h, w = x.shape
        g = min(self.mbstd_group_size, n)
        if n % g:
            g = math.gcd(n, g)
        y = x.reshape(g, n // g, c, h, w)
        y = (y.var(0, unbiased=False) + 1e-8).sqrt().mean((1, 2, 3))  # (n // g,)
        y = y.reshape(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
        return engine.cat([x, y], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        if self.mbstd_group_size > 0:
            x = self.minibatch_stddev(x)
        x = F.leaky_relu(self.conv_out(x), 0.2)
        x = F.leaky_relu(self.fc(x.flatten(1)), 0.2)
        return self.out(x)


# ------------------------------------------------------------------------------------------
# The trainer


class StyleGAN(Trainer):
    """`StyleGAN(generator, discriminator, lr=2e-3, r1_gamma=0.1, mixing_prob=0.9, ...)`.

    `train_step`: a discriminator update (logistic loss, plus the R1 penalty every `r1_every`
    steps, weighted by `r1_gamma * r1_every`), then a generator update through the frozen
    discriminator (non-saturating loss). With probability `mixing_prob` a batch is generated
    from two latents switching at a random layer (mixing regularisation). `w_avg` follows the
    mapped latents with momentum `w_avg_beta`. With a `judge` (`generative.judge.Judge`), each
    epoch's metrics include its classes covered and inception score of `judge_samples` samples.
    """

    def __init__(
        self,
        generator: StyleGenerator | None = None,
        discriminator: nn.Module | None = None,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.0, 0.99),
        r1_gamma: float = 0.1,
        r1_every: int = 4,
        mixing_prob: float = 0.9,
        w_avg_beta: float = 0.995,
        judge: Any = None,
        judge_samples: int = 1000,
        device: Any = "auto",
        seed: int | None = None,
        out_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        _check_positive_int("r1_every", r1_every)
        if not 0.0 <= mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob must be in [0, 1], got {mixing_prob!r}")
        if r1_gamma < 0:
            raise ValueError(f"r1_gamma must be >= 0, got {r1_gamma!r}")
        super().__init__(device=device, seed=seed, out_dir=out_dir, progress=progress)
        generator = generator if generator is not None else StyleGenerator()
        if discriminator is None:
            s = generator.synthesis
            discriminator = StyleDiscriminator(
                s.resolution,
                (32,) * (len(s.channels)),
                image_channels=s.image_channels,
                end_resolution=s.start_resolution,
            )
        self.generator = generator.to(self.device)
        self.discriminator = discriminator.to(self.device)
        self.lr, self.betas = lr, tuple(betas)
        self.r1_gamma, self.r1_every = r1_gamma, r1_every
        self.mixing_prob, self.w_avg_beta = mixing_prob, w_avg_beta
        self.networks = {"generator": self.generator, "discriminator": self.discriminator}
        self.optimizers = {
            name: optimizers.Adam(module.parameters(), lr=lr, betas=self.betas)
            for name, module in self.networks.items()
        }
        self.judge, self.judge_samples = judge, judge_samples
        self.fixed_z = self.noise(self.preview_count)
        self.checkpoint_meta = {"task": "stylegan"}  # what `from_checkpoint` and the CLI check

    @property
    def z_dim(self) -> int:
        return self.generator.z_dim

    @property
    def num_ws(self) -> int:
        return self.generator.num_ws

    def noise(self, n: int) -> Tensor:
        """n standard-normal latents (n, z_dim) on the trainer's device."""
        return engine.randn(n, self.z_dim, device=self.device)

    # ---------------------------------------------------------------------------------------
    # Training

    def _training_ws(self, n: int) -> Tensor:
        """ws for a training batch, mixed from two latents with probability `mixing_prob`."""
        ws = self.generator.map(self.noise(n), w_avg_beta=self.w_avg_beta)
        cpu = engine.random.generator(engine.device("cpu"))
        if self.num_ws > 1 and cpu.random() < self.mixing_prob:
            cutoff = int(cpu.integers(1, self.num_ws))
            ws2 = self.generator.map(self.noise(n))
            ws = engine.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
        return ws

    def train_step(self, batch: tuple) -> dict[str, Tensor]:
        real = batch[0] * 2.0 - 1.0
        fake = self.generator.synthesis(self._training_ws(real.shape[0]))
        losses = self.discriminator_step(real, fake.detach())
        losses["loss_g"] = self.generator_step(fake)
        return losses

    def discriminator_step(self, real: Tensor, fake: Tensor) -> dict[str, Tensor]:
        """Logistic loss on real and (detached) fake images in [-1, 1], plus lazy R1."""
        opt = self.optimizers["discriminator"]
        opt.zero_grad()
        d = self.discriminator
        loss = adversarial.discriminator_loss(d(real), d(fake.detach()), "bce")
        out = {"loss_d": loss.detach()}
        if self.r1_gamma > 0 and self.global_step % self.r1_every == 0:
            r1 = regularizers.r1_penalty(d, real, gamma=self.r1_gamma * self.r1_every)
            loss = loss + r1
            out["r1"] = r1.detach() / self.r1_every
        self.backward(loss)
        self.step(opt)
        return out

    def generator_step(self, fake: Tensor) -> Tensor:
        """Non-saturating loss softplus(-D(G(z))) through the frozen discriminator."""
        opt = self.optimizers["generator"]
        opt.zero_grad()
        with frozen(self.discriminator):
            loss = adversarial.generator_loss(self.discriminator(fake), "bce")
            self.backward(loss)
        self.step(opt)
        return loss.detach()

    # ---------------------------------------------------------------------------------------
    # Sampling and style mixing

    def _to_images(self, x: Tensor) -> Tensor:
        return ((x + 1.0) * 0.5).clip(0.0, 1.0)

    def synthesize(self, ws: Tensor, noise_mode: str = "random") -> Tensor:
        """Images in [0, 1] from per-layer ws (N, num_ws, w_dim), eval mode, no graph."""
        with evaluating(self.generator):
            return self._to_images(self.generator.synthesis(ws.to(self.device), noise_mode))

    def mapped(self, z: Any, truncation_psi: float = 1.0) -> Tensor:
        """ws (N, num_ws, w_dim) of latents z, truncated by psi; no graph."""
        with evaluating(self.generator):
            return self.generator.map(_as_latents(z, self.z_dim, self.device), truncation_psi)

    def generate(self, z: Any, truncation_psi: float = 1.0, noise_mode: str = "random") -> Tensor:
        """G(z) in [0, 1]: (N, C, H, W) for z of shape (N, z_dim)."""
        return self.synthesize(self.mapped(z, truncation_psi), noise_mode)

    def sample(self, n: int, truncation_psi: float = 1.0, noise_mode: str = "random") -> Tensor:
        """n images G(z), z ~ N(0, I)."""
        _check_positive_int("n", n)
        return self.generate(self.noise(n), truncation_psi, noise_mode)

    def preview(self) -> Tensor:
        return self.generate(self.fixed_z, noise_mode="const")

    def epoch_metrics(self) -> dict[str, float]:
        """The judge's scores of fresh samples (the training random state is left alone)."""
        if self.judge is None:
            return {}
        with rng_state_preserved():
            report = self.judge.report(self.sample(self.judge_samples).cpu())
        return {
            "classes_covered": float(report["classes_covered"]),
            "inception_score": report["inception_score"],
        }

    def layer_indices(self, layers: str | Sequence[int]) -> list[int]:
        """Style-layer indices for "coarse" | "middle" | "fine" | "all" or a list of indices."""
        groups = self.generator.synthesis.layer_groups()
        if isinstance(layers, str):
            if layers == "all":
                return list(range(self.num_ws))
            if layers not in groups:
                raise ValueError(
                    f"layers must be one of {sorted(groups) + ['all']} or a list of indices in "
                    f"[0, {self.num_ws}), got {layers!r}"
                )
            return list(groups[layers])
        indices = [int(i) for i in layers]
        bad = [i for i in indices if not 0 <= i < self.num_ws]
        if bad:
            raise ValueError(f"style layer indices {bad} out of range [0, {self.num_ws})")
        return indices

    def mix(
        self,
        z_src: Any,
        z_dst: Any,
        layers: str | Sequence[int] = "coarse",
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> Tensor:
        """Style mixing: for every pair (source i, destination j) the destination's ws with the
        source's w at `layers`. z_src (N, z_dim), z_dst (M, z_dim) -> (N * M, C, H, W), row i
        of the grid (`save_image(out, nrow=M)`) holding source i."""
        mask = numpy.zeros(self.num_ws, dtype=bool)
        mask[self.layer_indices(layers)] = True
        ws_src, ws_dst = self.mapped(z_src, truncation_psi), self.mapped(z_dst, truncation_psi)
        n, m = ws_src.shape[0], ws_dst.shape[0]
        shape = (n, m, self.num_ws, self.generator.w_dim)
        cond = engine.tensor(mask.reshape(1, 1, -1, 1), device=self.device)
        ws = engine.where(
            cond, ws_src.unsqueeze(1).expand(*shape), ws_dst.unsqueeze(0).expand(*shape)
        )
        return self.synthesize(ws.reshape(n * m, *shape[2:]), noise_mode)

    def mixing_grid(
        self,
        z_src: Any,
        z_dst: Any,
        layers: str | Sequence[int] = "coarse",
        truncation_psi: float = 1.0,
        noise_mode: str = "const",
    ) -> Tensor:
        """The StyleGAN figure: (N + 1) x (M + 1) images, a blank corner, the destinations along
        the top row, the sources down the left column, the mixes in between (nrow = M + 1)."""
        src = self.generate(z_src, truncation_psi, noise_mode)
        dst = self.generate(z_dst, truncation_psi, noise_mode)
        mixed = self.mix(z_src, z_dst, layers, truncation_psi, noise_mode)
        n, m = src.shape[0], dst.shape[0]
        rows = [engine.cat([engine.zeros_like(dst[:1]), dst], dim=0)]
        mixed = mixed.reshape(n, m, *mixed.shape[1:])
        for i in range(n):  # one row per source (N is a handful)
            rows.append(engine.cat([src[i : i + 1], mixed[i]], dim=0))
        return engine.cat(rows, dim=0)

    # ---------------------------------------------------------------------------------------
    # Checkpointing

    def config(self) -> dict:
        g, s, d = self.generator, self.generator.synthesis, self.discriminator
        arch = {
            "z_dim": g.z_dim,
            "w_dim": g.w_dim,
            "mapping_layers": g.mapping_layers,
            "mapping_lr_multiplier": g.mapping_lr_multiplier,
            "channels": list(s.channels),
            "start_resolution": s.start_resolution,
            "layers_per_resolution": s.layers_per_resolution,
            "image_channels": s.image_channels,
            "num_ws": self.num_ws,
            "layer_groups": s.layer_groups(),
        }
        if isinstance(d, StyleDiscriminator):
            arch["d_channels"] = list(d.channels)
            arch["d_end_resolution"] = d.end_resolution
            arch["mbstd_group_size"] = d.mbstd_group_size
        return {
            **arch,
            "lr": self.lr,
            "betas": list(self.betas),
            "r1_gamma": self.r1_gamma,
            "r1_every": self.r1_every,
            "mixing_prob": self.mixing_prob,
            "w_avg_beta": self.w_avg_beta,
        }

    def extra_state(self) -> dict:
        return {"fixed_z": self.fixed_z}

    def load_extra_state(self, state: dict) -> None:
        if "fixed_z" in state:
            self.fixed_z = state["fixed_z"].to(self.device)

    @classmethod
    def from_config(cls, config: dict, **kwargs: Any) -> StyleGAN:
        """A fresh trainer with the architecture and hyper-parameters `config()` returned."""
        generator, discriminator = _networks(config)
        options = {k: config[k] for k in _TRAINER_KEYS if k in config}
        if "betas" in config:
            options["betas"] = tuple(config["betas"])
        return cls(generator, discriminator, **options, **kwargs)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: Any = "auto", **kwargs: Any
    ) -> StyleGAN:
        """Rebuild a trainer from a checkpoint written by `save_checkpoint` and restore it."""
        state = engine.load(path)
        if state.get("task") != "stylegan" or "config" not in state:
            raise ValueError(f"{path} is not a StyleGAN checkpoint (task={state.get('task')!r})")
        trainer = cls.from_config(state["config"], device=device, progress=False, **kwargs)
        trainer.load_checkpoint(path)
        return trainer


# ------------------------------------------------------------------------------------------
# Default recipes

_DIGITS = dict(
    z_dim=32,
    w_dim=32,
    mapping_layers=4,
    channels=(64, 32),
    start_resolution=4,
    layers_per_resolution=2,
    d_channels=(32, 32, 32),
    d_end_resolution=2,
    lr=2e-3,
    r1_gamma=0.1,
    r1_every=4,
    mixing_prob=0.9,
    batch_size=64,
    epochs=30,
)
# 28x28: 7x7 -> 14x14 -> 28x28 (meant for a GPU; slow on a CPU)
_MNIST = dict(
    _DIGITS,
    z_dim=64,
    w_dim=64,
    channels=(128, 64, 32),
    start_resolution=7,
    d_channels=(32, 64, 128),
    d_end_resolution=7,
    r1_gamma=1.0,
    batch_size=64,
    epochs=20,
)

#: Hyper-parameters of the default recipes by dataset (batch size and epochs are the caller's).
RECIPES: dict[str, dict[str, Any]] = {"digits": _DIGITS, "mnist": _MNIST, "fashion": _MNIST}

_GENERATOR_KEYS = (
    "z_dim",
    "w_dim",
    "mapping_layers",
    "mapping_lr_multiplier",
    "channels",
    "start_resolution",
    "layers_per_resolution",
    "image_channels",
)
_DISCRIMINATOR_KEYS = ("d_channels", "d_end_resolution", "mbstd_group_size")
_TRAINER_KEYS = ("lr", "r1_gamma", "r1_every", "mixing_prob", "w_avg_beta")


def _networks(settings: dict[str, Any]) -> tuple[StyleGenerator, StyleDiscriminator]:
    """The generator and discriminator that a recipe or a `config()` describes (settings it
    leaves out take the classes' defaults; d_channels and d_end_resolution are required)."""
    generator = StyleGenerator(**{k: settings[k] for k in _GENERATOR_KEYS if k in settings})
    s = generator.synthesis
    mbstd = {k: settings[k] for k in ("mbstd_group_size",) if k in settings}
    discriminator = StyleDiscriminator(
        s.resolution,
        settings["d_channels"],
        image_channels=s.image_channels,
        end_resolution=settings["d_end_resolution"],
        **mbstd,
    )
    return generator, discriminator


def build_stylegan(dataset: str = "digits", **overrides: Any) -> StyleGAN:
    """A ready-to-train `StyleGAN` with the recipe for `dataset`; keyword arguments override
    recipe entries or pass trainer options (device, seed, out_dir, progress, betas, ...)."""
    if dataset not in RECIPES:
        raise ValueError(f"no StyleGAN recipe for dataset {dataset!r}; have {sorted(RECIPES)}")
    r = {**RECIPES[dataset], **overrides}
    seed = r.get("seed")
    if seed is not None:
        engine.manual_seed(seed)  # the networks' initial weights follow the seed too
    generator, discriminator = _networks(r)
    networks_and_loader = {*_GENERATOR_KEYS, *_DISCRIMINATOR_KEYS, "batch_size", "epochs"}
    options = {k: v for k, v in r.items() if k not in networks_and_loader}
    return StyleGAN(generator, discriminator, **options)
