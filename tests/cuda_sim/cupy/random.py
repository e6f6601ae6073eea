"""``cupy.random`` of the stand-in, on NumPy's generators.

Only what CuPy has: ``cupy.random.Generator`` offers ``random``, ``uniform``, ``integers``,
``standard_normal``, ``standard_exponential``, ``exponential``, ``gamma``, ``standard_gamma``,
``beta``, ``binomial``, ``poisson``, ``geometric`` (CuPy 13 has no ``Generator.normal``,
``permutation``, ``choice`` or ``shuffle``, so neither does this), returns 0-d arrays for
``size=None`` and takes ``dtype`` where CuPy does. The legacy ``RandomState`` functions
(``seed``, ``rand``, ``randn``, ``normal``, ``uniform``, ``randint``, ``permutation``, ...) are
here too. Streams differ from real CuPy's (seeded, but not bit-identical).
"""

from __future__ import annotations

import numpy as _np

from .. import counters as _counters
from ._array import ndarray as _ndarray
from ._array import unwrap as _unwrap
from ._array import wrap as _wrap_host


def _wrap(host):
    """A draw's result as a device array: one kernel (cuRAND or CuPy's own)."""
    _counters.launch("random")
    return _wrap_host(host)


__all__ = [
    "BitGenerator",
    "XORWOW",
    "MRG32k3a",
    "Philox4x3210",
    "Generator",
    "default_rng",
    "RandomState",
    "get_random_state",
    "set_random_state",
    "seed",
    "rand",
    "randn",
    "random",
    "random_sample",
    "uniform",
    "normal",
    "standard_normal",
    "randint",
    "permutation",
    "shuffle",
    "choice",
]


def _size(size):
    return () if size is None else size


def _float_dtype(dtype, method: str) -> _np.dtype:
    dt = _np.dtype(dtype)
    if dt.char not in "fd":
        raise TypeError(f"Unsupported dtype {dt.name} for {method}")
    return dt


def _param(x, where: str):
    return _unwrap(x, where) if isinstance(x, (_ndarray, _np.ndarray)) else x


class BitGenerator:
    """Seeded source of random bits (a NumPy PCG64 behind the curtain)."""

    def __init__(self, seed=None, *, size: int = -1):
        self._seed = seed
        self._numpy = _np.random.PCG64(seed)

    def random_raw(self, size=None, out=None):
        return _wrap(_np.random.Generator(self._numpy).integers(0, 2**32, _size(size), _np.uint64))


class XORWOW(BitGenerator):
    pass


class MRG32k3a(BitGenerator):
    pass


class Philox4x3210(BitGenerator):
    pass


class Generator:
    """``cupy.random.Generator(bit_generator)``."""

    def __init__(self, bit_generator: BitGenerator):
        self.bit_generator = bit_generator
        self._gen = _np.random.Generator(bit_generator._numpy)

    def random(self, size=None, dtype=_np.float64, out=None):
        dt = _np.dtype(dtype)
        draw = self._gen.random(_size(size), dtype=_np.float64 if dt.char == "d" else _np.float32)
        return self._out(draw.astype(dt, copy=False), out)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=_np.float64):
        low, high = _param(low, "uniform"), _param(high, "uniform")
        if size is None:
            size = _np.broadcast(low, high).shape
        dt = _np.dtype(dtype)
        y = self._gen.random(size, dtype=_np.float64 if dt.char == "d" else _np.float32)
        return _wrap(_np.asarray(low + (high - low) * y).astype(dt, copy=False))

    def integers(self, low, high=None, size=None, dtype=_np.int64, endpoint=False):
        lo, hi = (0, int(low)) if high is None else (int(low), int(high))
        hi1 = hi if endpoint else hi - 1
        if lo > hi1:
            raise ValueError("low >= high")
        return _wrap(self._gen.integers(lo, hi1, _size(size), dtype=dtype, endpoint=True))

    def standard_normal(self, size=None, dtype=_np.float64, out=None):
        dt = _float_dtype(dtype, "standard_normal")
        return self._out(self._gen.standard_normal(_size(size), dtype=dt), out)

    def standard_exponential(self, size=None, dtype=_np.float64, method="inv", out=None):
        if method == "zig":
            raise NotImplementedError("Ziggurat method is not supported")
        draw = self._gen.standard_exponential(_size(size))
        return self._out(draw.astype(dtype, copy=False), out)

    def exponential(self, scale=1.0, size=None):
        return _wrap(_np.asarray(self._gen.exponential(_param(scale, "exponential"), size)))

    def standard_gamma(self, shape, size=None, dtype=_np.float64, out=None):
        draw = self._gen.standard_gamma(_param(shape, "standard_gamma"), size)
        return self._out(_np.asarray(draw).astype(dtype, copy=False), out)

    def gamma(self, shape, scale=1.0, size=None):
        return _wrap(_np.asarray(self._gen.gamma(_param(shape, "gamma"), scale, size)))

    def beta(self, a, b, size=None, dtype=_np.float64):
        draw = self._gen.beta(_param(a, "beta"), _param(b, "beta"), size)
        return _wrap(_np.asarray(draw).astype(dtype, copy=False))

    def binomial(self, n, p, size=None):
        draw = self._gen.binomial(_param(n, "binomial"), _param(p, "binomial"), size)
        return _wrap(_np.asarray(draw, dtype=_np.int64))

    def poisson(self, lam=1.0, size=None):
        return _wrap(_np.asarray(self._gen.poisson(_param(lam, "poisson"), size), dtype=_np.int64))

    def geometric(self, p, size=None):
        return _wrap(_np.asarray(self._gen.geometric(_param(p, "geometric"), size), _np.int64))

    @staticmethod
    def _out(draw: _np.ndarray, out):
        draw = _np.asarray(draw)
        if out is None:
            return _wrap(draw)
        if not isinstance(out, _ndarray):
            raise TypeError(f"out must be a cupy.ndarray, got {type(out).__name__}")
        if out.dtype != draw.dtype or out.shape != draw.shape:
            raise TypeError(
                f"Supplied output array has the wrong type or shape: expected {draw.dtype} "
                f"{draw.shape}, got {out.dtype} {out.shape}"
            )
        _counters.launch("random")
        out._host[...] = draw
        return out


def default_rng(seed=None) -> Generator:
    """``Generator(XORWOW(seed))``, as in CuPy."""
    if isinstance(seed, BitGenerator):
        return Generator(seed)
    return Generator(XORWOW(seed))


# ---------------------------------------------------------------------- legacy RandomState


class RandomState:
    """``cupy.random.RandomState``: the legacy API, with ``dtype`` arguments."""

    def __init__(self, seed=None, method=None):
        self._rs = _np.random.RandomState(seed)

    def seed(self, seed=None) -> None:
        self._rs.seed(seed)

    def random_sample(self, size=None, dtype=float):
        return _wrap(
            _np.asarray(self._rs.random_sample(size)).astype(_float_dtype(dtype, "random_sample"))
        )

    def rand(self, *size, dtype=float):
        return self.random_sample(size, dtype)

    def randn(self, *size, dtype=float):
        return self.normal(size=size, dtype=dtype)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=float):
        draw = self._rs.uniform(_param(low, "uniform"), _param(high, "uniform"), size)
        return _wrap(_np.asarray(draw).astype(_float_dtype(dtype, "uniform")))

    def normal(self, loc=0.0, scale=1.0, size=None, dtype=float):
        draw = self._rs.normal(_param(loc, "normal"), _param(scale, "normal"), size)
        return _wrap(_np.asarray(draw).astype(_float_dtype(dtype, "normal")))

    def standard_normal(self, size=None, dtype=float):
        return self.normal(size=size, dtype=dtype)

    def randint(self, low, high=None, size=None, dtype="l"):
        return _wrap(_np.asarray(self._rs.randint(low, high, size, dtype=dtype)))

    def permutation(self, a):
        if isinstance(a, _ndarray):
            return _wrap(self._rs.permutation(a._host))
        return _wrap(self._rs.permutation(a))

    def shuffle(self, a) -> None:
        if not isinstance(a, _ndarray):
            raise TypeError("The array must be cupy.ndarray")
        self._rs.shuffle(a._host)

    def choice(self, a, size=None, replace=True, p=None):
        a = a._host if isinstance(a, _ndarray) else a
        p = p._host if isinstance(p, _ndarray) else p
        return _wrap(_np.asarray(self._rs.choice(a, size, replace, p)))


_random_state = RandomState()


def get_random_state() -> RandomState:
    return _random_state


def set_random_state(rs: RandomState) -> None:
    global _random_state
    _random_state = rs


def seed(seed=None) -> None:
    _random_state.seed(seed)


def rand(*size, dtype=float):
    return _random_state.rand(*size, dtype=dtype)


def randn(*size, dtype=float):
    return _random_state.randn(*size, dtype=dtype)


def random_sample(size=None, dtype=float):
    return _random_state.random_sample(size, dtype)


random = random_sample


def uniform(low=0.0, high=1.0, size=None, dtype=float):
    return _random_state.uniform(low, high, size, dtype)


def normal(loc=0.0, scale=1.0, size=None, dtype=float):
    return _random_state.normal(loc, scale, size, dtype)


def standard_normal(size=None, dtype=float):
    return _random_state.standard_normal(size, dtype)


def randint(low, high=None, size=None, dtype="l"):
    return _random_state.randint(low, high, size, dtype)


def permutation(a):
    return _random_state.permutation(a)


def shuffle(a) -> None:
    _random_state.shuffle(a)


def choice(a, size=None, replace=True, p=None):
    return _random_state.choice(a, size, replace, p)
