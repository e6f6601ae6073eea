"""Lockstep runs against PyTorch: the same recipe trained in both libraries, step for step.

`torch_twin(module)` builds the torch.nn twin of one of our modules (the layers the recipes use)
with our weights copied into it, in float64. `Draws` hands our code the random numbers a test
chose (latents, reparameterisation noise, dropout's uniforms) in place of the engine's generator
and records them; a `Feed` gives the very same arrays to the torch side explicitly, and a draw
of an unexpected kind or shape there is an error, so neither side can consume a different
stream. `param_gap` measures
how far two parameter sets are apart, relative to the parameters' size.

Calibration: a torch replica fed the same batch with its rows permuted differs from the plain
replica only by summation order; how far it drifts is the noise floor that a tolerance must
exceed (`permuted`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

import engine
import layers as nn
import regularizers

try:
    import torch
except ImportError:  # the oracle is optional; the lockstep tests skip without it
    torch = None


# --------------------------------------------------------------------------------------------
# Twins


class MaskedDropout(torch.nn.Module if torch is not None else object):
    """torch's inverted dropout with its uniforms taken from `feed`, computed as ours is:
    x * ((u >= p) * (1 / (1 - p)))."""

    def __init__(self, p: float, feed: Feed) -> None:
        super().__init__()
        self.p, self.feed = p, feed

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        u = self.feed.take("uniform", tuple(x.shape))
        return x * ((u >= self.p).to(x.dtype) * (1.0 / (1.0 - self.p)))


def twin_layer(m: Any, feed: "Feed | None"):
    tnn = torch.nn
    if isinstance(m, nn.Sequential):
        return tnn.Sequential(*[twin_layer(c, feed) for c in m])
    if isinstance(m, nn.Linear):
        return tnn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
    if isinstance(m, nn.ConvTranspose2d):
        return tnn.ConvTranspose2d(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
            m.output_padding, m.groups, m.bias is not None, m.dilation,
        )  # fmt: skip
    if isinstance(m, nn.Conv2d):
        return tnn.Conv2d(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
            m.groups, m.bias is not None,
        )  # fmt: skip
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = tnn.BatchNorm1d if isinstance(m, nn.BatchNorm1d) else tnn.BatchNorm2d
        return cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
    if isinstance(m, nn.Embedding):
        return tnn.Embedding(m.num_embeddings, m.embedding_dim)
    if isinstance(m, nn.LeakyReLU):
        return tnn.LeakyReLU(m.negative_slope)
    if isinstance(m, nn.Flatten):
        return tnn.Flatten(m.start_dim, m.end_dim)
    if isinstance(m, nn.Unflatten):
        return tnn.Unflatten(m.dim, m.unflattened_size)
    if isinstance(m, nn.MaxPool2d):
        return tnn.MaxPool2d(m.kernel_size, m.stride, m.padding)
    if isinstance(m, regularizers.Dropout):
        if feed is None:
            raise ValueError("a Dropout twin needs the test's Feed")
        return MaskedDropout(m.p, feed)
    for ours, theirs in ((nn.ReLU, tnn.ReLU), (nn.Sigmoid, tnn.Sigmoid), (nn.Tanh, tnn.Tanh)):
        if isinstance(m, ours):
            return theirs()
    raise TypeError(f"no torch twin for {type(m).__name__}; write it in the test")


def copy_state(ours, theirs) -> None:
    """Our parameters and buffers into the torch module, by name (every torch parameter and
    running statistic must have one of ours)."""
    state = {
        k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in ours.state_dict().items()
    }
    missing = [k for k in theirs.state_dict() if k not in state and "num_batches" not in k]
    assert not missing, f"no weights of ours for torch's {missing}"
    with torch.no_grad():
        for k, t in theirs.state_dict().items():
            if k in state:
                assert tuple(t.shape) == state[k].shape, (
                    f"{k}: {tuple(t.shape)} vs {state[k].shape}"
                )
                t.copy_(torch.from_numpy(np.array(state[k], dtype=np.float64)))


def torch_twin(module, feed: "Feed | None" = None, twin=None):
    """The torch twin of `module` (or `twin`, built by the caller) in float64, holding our
    weights."""
    theirs = (twin if twin is not None else twin_layer(module, feed)).double()
    copy_state(module, theirs)
    theirs.train(module.training)
    return theirs


# --------------------------------------------------------------------------------------------
# Random draws chosen by the test


class Draws:
    """Our side's random numbers, drawn from a seeded NumPy generator in place of the engine's.

    `install(monkeypatch)` makes `engine.random.normal` / `uniform` (behind `engine.randn`,
    `randn_like` and dropout masks) return fresh draws and records each one, exactly as handed
    to our code (in its dtype); `step()` returns and forgets the draws made since the last call,
    for a `Feed` to give the torch side.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.made: list[tuple[str, np.ndarray]] = []
        self.active = False  # until `run_lockstep` starts, the engine draws as usual (init)

    def install(self, monkeypatch) -> Draws:
        for kind in ("normal", "uniform"):
            monkeypatch.setattr(engine.random, kind, self._ours(kind, getattr(engine.random, kind)))
        return self

    def _ours(self, kind: str, engine_draw):
        def draw(shape, dtype, device, *args):
            if not self.active:
                return engine_draw(shape, dtype, device, *args)
            if args:
                raise AssertionError(f"lockstep: {kind} draw with extra arguments {args}")
            shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
            a = self.rng.standard_normal(shape) if kind == "normal" else self.rng.random(shape)
            a = a.astype(np.float64 if dtype is None else dtype)
            self.made.append((kind, a))
            return engine.tensor(a, device=device).array

        return draw

    def step(self) -> list[tuple[str, np.ndarray]]:
        made, self.made = self.made, []
        return made


class Feed:
    """The draws of one step handed to a torch replica in order (rows permuted by `perm` for
    the calibration replica: every draw here is per sample, batch first)."""

    def __init__(self) -> None:
        self.items: deque = deque()

    def load(self, draws: list[tuple[str, np.ndarray]], perm: np.ndarray | None = None) -> None:
        self.assert_consumed()
        self.items.extend((k, a if perm is None else a[perm]) for k, a in draws)

    def take(self, kind: str, shape: tuple):
        """The next draw as a torch tensor; it must be of `kind` and `shape`."""
        assert self.items, f"lockstep: torch wants a {kind} draw {shape} that ours never made"
        k, a = self.items.popleft()
        assert (k, a.shape) == (kind, tuple(shape)), (
            f"lockstep: ours drew {k} {a.shape} where torch wants {kind} {tuple(shape)}"
        )
        return torch.from_numpy(a)

    def assert_consumed(self) -> None:
        assert not self.items, (
            f"lockstep: draws torch never used: {[(k, a.shape) for k, a in self.items]}"
        )


# --------------------------------------------------------------------------------------------
# Comparing trajectories


def named_arrays(modules) -> dict[str, np.ndarray]:
    """Parameters (ours or torch's) by name as float64 NumPy arrays; `modules` is one module or
    a dict of them (names prefixed by the keys)."""
    if not isinstance(modules, dict):
        modules = {"": modules}
    out = {}
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            a = p.detach().cpu().numpy() if _is_torch(p) else p.numpy()
            out[f"{prefix}.{name}" if prefix else name] = np.array(a, dtype=np.float64)  # a copy
    return out


def _is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def param_gap(ours, theirs) -> float:
    """max over parameters of max|ours - theirs| / max(max|theirs|, 1e-3): the largest
    relative difference, each parameter tensor on its own scale."""
    a, b = named_arrays(ours), named_arrays(theirs)
    assert a.keys() == b.keys(), f"parameter names differ: {sorted(a.keys() ^ b.keys())}"
    return max(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-3) for k in a)


def permuted(perm: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays' rows reordered by `perm` (the calibration replica's batches)."""
    return [a[perm] for a in arrays]


class Replica:
    """A torch replica of a recipe: `module` (compared with ours; a module or a dict of them),
    the `feed` of draws, the row permutation `perm` of its batches (None: as ours) and whatever
    its step needs (`parts`: networks, optimizers, schedulers) as attributes."""

    def __init__(self, module, feed: Feed, perm: np.ndarray | None = None, **parts) -> None:
        self.module, self.feed, self.perm = module, feed, perm
        self.__dict__.update(parts)


def run_lockstep(data, ours, ours_step, make_replica, torch_step, draws: Draws, perm):
    """Train ours and two torch replicas (one fed every batch and draw with rows permuted by
    `perm`) on `data`, a list of per-step tuples of batch-first arrays.

    `ours_step(i, *batch)` runs our step i; `make_replica(feed, perm)` builds a `Replica` from
    our current weights; `torch_step(replica, i, *batch)` runs its step. Returns the per-step
    gaps (ours vs replica, permuted replica vs replica) as two arrays (`param_gap`).
    """
    plain, shuffled = make_replica(Feed(), None), make_replica(Feed(), perm)
    draws.active = True
    gaps, noise = [], []
    for i, batch in enumerate(data):
        ours_step(i, *batch)
        made = draws.step()
        for replica in (plain, shuffled):
            replica.feed.load(made, replica.perm)
            rows = batch if replica.perm is None else permuted(replica.perm, *batch)
            torch_step(replica, i, *rows)
            replica.feed.assert_consumed()
        gaps.append(param_gap(ours, plain.module))
        noise.append(param_gap(shuffled.module, plain.module))
    return np.array(gaps), np.array(noise)
