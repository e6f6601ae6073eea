"""Test-only, put on PYTHONPATH by tests/cli/test_nproc_cli.py: the GAN's training draws come
from one stream per step for the GLOBAL batch, and each rank takes its rows of it in
DistributedSampler's interleaved order (rank r: rows r, r + N, ...), so `--nproc 2` and one
process draw the same latent and the same WGAN-GP interpolation weight for the same sample.

By design ranks draw their own noise (seed, rank, epoch), so a 2-rank GAN run can never equal a
1-process run; with this the two runs do the same arithmetic on the same numbers, and the test
can compare their checkpoints. Only the draws change: the CLI, the Trainer, DDP, SyncBatchNorm
and the penalty run as shipped."""

import numpy as np

import engine
import engine.distributed as dist
import regularizers
from generative.gan import GAN

_shipped_step, _shipped_noise, _shipped_gp = (
    GAN.train_step,
    GAN.noise,
    regularizers.gradient_penalty,
)
_step = [None]  # the global step of the train_step running, None outside one


def _rows(kind: str, shape: tuple) -> np.ndarray:
    """This rank's rows of the global batch's draw of `kind` at the current step."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    rng = np.random.default_rng([_step[0], 1 if kind == "normal" else 2])
    full = getattr(rng, "standard_normal" if kind == "normal" else "random")(
        (shape[0] * world, *shape[1:])
    )
    return full[rank::world].astype(np.float32)


def train_step(self, batch):
    _step[0] = self.global_step
    try:
        return _shipped_step(self, batch)
    finally:
        _step[0] = None


def noise(self, n: int):
    if _step[0] is None:  # previews and samples: as shipped
        return _shipped_noise(self, n)
    return engine.tensor(_rows("normal", (n, self.latent_dim)), device=self.device)


def gradient_penalty(critic, real, fake, alpha=None, **kw):
    if alpha is None and _step[0] is not None:
        alpha = engine.tensor(_rows("uniform", (real.shape[0],)), device=real.device)
    return _shipped_gp(critic, real, fake, alpha=alpha, **kw)


GAN.train_step, GAN.noise, regularizers.gradient_penalty = train_step, noise, gradient_penalty
