"""Winograd F(4x4, 3x3) convolution on the CPU: 3x3, stride 1, dilation 1, groups 1.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). Each 4x4 block of
outputs comes from a 6x6 tile of the padded input d (tiles overlap by 2) and the 3x3 filter g:

    y_tile = A^T [ (G g G^T) * (B^T d B) ] A            (* elementwise over the 6x6 tile)

i.e. 36 multiplications per 4x4 outputs instead of 144. Summed over input channels, the
elementwise stage is 36 GEMMs (tiles x C_in) @ (C_in x C_out); the transforms are fixed linear
maps applied along the tile rows, then along the tile columns, each a GEMM with the 6x6 (4x6)
matrix over all tiles and channels at once (a third of the FLOPs of one GEMM with the 36x36
Kronecker matrix, and twice as fast in cache). Every step is a BLAS call or one copy; no loops
over pixels. The work is done in chunks of a few images whose transformed tiles fit in the L2
cache: over the whole batch the tile arrays (2.25x the input, 36 GEMM operands) would stream
through memory several times, and the batched GEMM ran at 49 GFLOP/s instead of ~130
(benchmarks/NOTES.md, item 14).

Layout inside a chunk is channels-last: a tile row then is C contiguous floats, so the tile
copy has long inner loops (in NCHW it would be rows of 8 floats strided by 4).

Accuracy: the transforms use the points 0, +-1, +-2 and integer B^T, A^T; G has 1/4, 1/6, 1/12,
1/24 and is applied to the weight in float64. In float32 the error is ~10x that of im2col + GEMM
(measured and bounded in tests/kernels/test_winograd.py); float64 stays at ~1e-15 relative.

The weight gradient is the adjoint of the same map: dU = sum over tiles of (A gy_tile A^T) * V,
dw = G^T dU G, again 36 GEMMs (C_out x tiles) @ (tiles x C_in) accumulated over the chunks,
with V recomputed chunk by chunk (cheaper than keeping 2.25x the input between forward and
backward). The input gradient is a stride-1 conv of gy with the flipped, transposed filter
(``kernels.cpu.conv2d_backward_input``), so it takes this path through the forward.

``TENSORTAPE_WINOGRAD=0`` (read once, when this module is imported), :func:`set_mode` (from
then on) or :func:`set_enabled` (within a block) turns it off, for A/B benchmarks and tests;
im2col + GEMM then runs every conv.
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels.geometry import Geometry
from kernels.switch import Switch

ENV_VAR = "TENSORTAPE_WINOGRAD"

# F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity (Lavin & Gray, section 4.2).
BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=np.float64,
)
AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=np.float64,
)
M_OUT, TILE = 4, 6  # outputs per tile side, input tile side (M_OUT + 3 - 1)

# Bytes of one chunk's tile arrays (input tiles, transformed tiles, products): half of a core's
# L2 cache here (2 MiB), the rest is for the GEMMs' packed panels. Forward, CPU time, one thread:
# the 32x64x32x32 conv (1.8 MB an image) 20.5 ms with 1 image per chunk, 22.0 with 2, 26.9 with
# 4, 38 with the whole batch at once; the 64x32x14x14 one (0.3 MB an image) 6.8 ms with 2 or 4
# images, 10.6 with 8, 12.6 with 14, 14.2 with 32.
CHUNK_BYTES = 1 << 20

MODES = ("0", "1", "all")  # off; on where the rule below says; every 3x3 stride-1 conv

# "1" (the default, where :func:`applies`'s size rule says), "0" (never) or "all" (every 3x3
# stride-1 conv whatever its size: for tests and A/B measurements), read once, at import.
_switch = Switch(ENV_VAR, MODES, "1")
mode_from_env, mode = _switch.mode_from_env, _switch.mode
set_mode, set_enabled = _switch.set_mode, _switch.set_enabled


# Which convs take this path: measured A/B against im2col + GEMM, forward, input and weight
# gradient, one thread, CPU time (benchmarks/NOTES.md, item 14). What decides is the input
# channels C of the call: every tile copy moves rows of C floats and the input transform works
# on C columns per tile; below 16 NumPy's per-row cost wins over the saved multiplications
# (64x4x28x28 -> 32: 1.9x slower forward; 64x8x14x14 -> 8: 1.16x; 64x16x28x28 -> 16: 0.48x).
# The output channels do not matter (64x32x28x28 -> 1: 0.27x). And the batch must hold enough
# tiles to pay for the filter transform (36 C K values) and the tiles' 6x6 overlap: 16x64x4x4
# (16 tiles) 1.45x slower, 64x128x4x4 (64 single-tile images) 1.04x, 8x64x8x8 (32 tiles) 1.0x,
# 1x64x32x32 (64 tiles) 0.78x, 32x16x8x8 (128 tiles) 0.75x.
MIN_CHANNELS = 16
MIN_TILES = 64


def applies(g: Geometry, dtype: np.dtype) -> bool:
    """Whether the conv of geometry ``g`` (as a forward) runs here."""
    if (g.kh, g.kw, g.sy, g.sx, g.dy, g.dx, g.groups) != (3, 3, 1, 1, 1, 1, 1):
        return False
    if dtype not in (np.float32, np.float64):
        return False
    if _switch.value != "1":
        return _switch.value == "all"
    if g.C < MIN_CHANNELS:
        return False
    th, tw = _tiles(g.OH, g.OW)
    return g.N * th * tw >= MIN_TILES and th * tw > 1


@functools.cache
def _matrices(dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, A^T, A) in ``dtype`` and kron(G, G) (36x9) in float64. Row-major (a, b) tile
    positions throughout."""
    A = np.ascontiguousarray(AT.T, dtype=dtype)
    return BT.astype(dtype), AT.astype(dtype), A, np.kron(G, G)


def _both_sides(m: np.ndarray, d: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
    """out (p, p, X) = m d m^T on every column: d (q, q, X), m (p, q), tmp >= p*q*X scratch.
    First along the rows (one GEMM over all q*X columns), then along the columns (p GEMMs)."""
    p, q = m.shape
    X = d.shape[-1]
    t = tmp[: p * q * X].reshape(p, q * X)
    np.matmul(m, d.reshape(q, q * X), out=t)
    np.matmul(m, t.reshape(p, q, X), out=out.reshape(p, p, X))


def _tiles(OH: int, OW: int) -> tuple[int, int]:
    return -(-OH // M_OUT), -(-OW // M_OUT)


def _chunk_images(g: Geometry, T: int, itemsize: int) -> int:
    per_image = 36 * T * (2 * g.C + g.K) * itemsize  # input tiles, V, products
    return max(1, min(g.N, CHUNK_BYTES // per_image))


class _InputTiles:
    """Transformed input tiles V = B^T d B of a chunk of images, (36, images * tiles, C).

    Holds a zero-padded channels-last buffer (images, Hp, Wp, C) whose border is never written,
    so each chunk only copies the image into the interior."""

    def __init__(self, g: Geometry, dtype: np.dtype, nb: int):
        self.g, self.nb = g, nb
        self.th, self.tw = _tiles(g.OH, g.OW)
        Hp, Wp = M_OUT * self.th + 2, M_OUT * self.tw + 2
        self.xc = np.zeros((nb, Hp, Wp, g.C), dtype=dtype)
        T = self.th * self.tw
        self.d = np.empty(36 * nb * T * g.C, dtype=dtype)
        self.v = np.empty(36 * nb * T * g.C, dtype=dtype)
        self.tmp = np.empty(36 * nb * T * g.C, dtype=dtype)
        self.BT = _matrices(dtype)[0]

    def __call__(self, x: np.ndarray, n0: int, b: int) -> np.ndarray:
        g, th, tw, xc = self.g, self.th, self.tw, self.xc
        xc[:b, g.ph : g.ph + g.H, g.pw : g.pw + g.W] = x[n0 : n0 + b].transpose(0, 2, 3, 1)
        s0, s1, s2, s3 = xc.strides
        view = as_strided(
            xc, (TILE, TILE, b, th, tw, g.C), (s1, s2, s0, M_OUT * s1, M_OUT * s2, s3)
        )
        d = self.d[: 36 * b * th * tw * g.C].reshape(view.shape)
        np.copyto(d, view)
        v = self.v[: d.size]
        _both_sides(self.BT, d.reshape(TILE, TILE, -1), self.tmp, v)
        return v.reshape(36, b * th * tw, g.C)


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry) -> np.ndarray:
    """y = conv2d(x, w) + b for a geometry where :func:`applies` holds: (N, K, OH, OW)."""
    N, C, K, OH, OW = g.N, g.C, g.K, g.OH, g.OW
    dtype = x.dtype
    _, AT_, _, GG = _matrices(dtype)
    # U = G g G^T for every (out, in) channel pair, as (36, C, K): the GEMMs' right operand.
    U = (GG @ w.reshape(K * C, 9).T.astype(np.float64)).reshape(36, K, C)
    U = np.ascontiguousarray(U.transpose(0, 2, 1), dtype=dtype)
    th, tw = _tiles(OH, OW)
    T = th * tw
    nb = _chunk_images(g, T, dtype.itemsize)
    tiles = _InputTiles(g, dtype, nb)
    m = np.empty(36 * nb * T * K, dtype=dtype)
    yt = np.empty(16 * nb * T * K, dtype=dtype)
    tmp = np.empty(24 * nb * T * K, dtype=dtype)
    yc = np.empty((nb, M_OUT * th, M_OUT * tw, K), dtype=dtype)
    y = np.empty(g.y_shape, dtype=dtype)
    for n0 in range(0, N, nb):
        bn = min(nb, N - n0)
        v = tiles(x, n0, bn)
        mc = m[: 36 * bn * T * K].reshape(36, bn * T, K)
        np.matmul(v, U, out=mc)
        ytc = yt[: 16 * bn * T * K]
        _both_sides(AT_, mc.reshape(TILE, TILE, -1), tmp, ytc)
        # (4, 4, images, th, tw, K) -> channels-last (images, 4 th, 4 tw, K), then NCHW.
        ycc = yc[:bn]
        ycc.reshape(bn, th, M_OUT, tw, M_OUT, K)[...] = ytc.reshape(
            M_OUT, M_OUT, bn, th, tw, K
        ).transpose(2, 3, 0, 4, 1, 5)
        if b is not None:
            ycc += b
        y[n0 : n0 + bn] = ycc[:, :OH, :OW].transpose(0, 3, 1, 2)
    return y


def conv2d_backward_weight(gy: np.ndarray, x: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dw (K, C, 3, 3) of :func:`conv2d` for output gradient gy (N, K, OH, OW)."""
    N, C, K, OH, OW = g.N, g.C, g.K, g.OH, g.OW
    dtype = x.dtype
    _, _, A, GG = _matrices(dtype)
    th, tw = _tiles(OH, OW)
    T = th * tw
    nb = _chunk_images(g, T, dtype.itemsize)
    tiles = _InputTiles(g, dtype, nb)
    tmp = np.empty(24 * nb * T * K, dtype=dtype)
    gyc = np.zeros((nb, M_OUT * th, M_OUT * tw, K), dtype=dtype)  # zero beyond (OH, OW)
    e = np.empty(16 * nb * T * K, dtype=dtype)
    mg = np.empty(36 * nb * T * K, dtype=dtype)
    du = np.zeros((36, K, C), dtype=dtype)
    part = np.empty_like(du)
    for n0 in range(0, N, nb):
        bn = min(nb, N - n0)
        v = tiles(x, n0, bn)
        gyc[:bn, :OH, :OW] = gy[n0 : n0 + bn].transpose(0, 2, 3, 1)
        # gy's 4x4 tiles (4, 4, images, th, tw, K), then A gy A^T: (36, images * tiles, K).
        ec = e[: 16 * bn * T * K].reshape(M_OUT, M_OUT, bn, th, tw, K)
        ec[...] = gyc[:bn].reshape(bn, th, M_OUT, tw, M_OUT, K).transpose(2, 4, 0, 1, 3, 5)
        mgc = mg[: 36 * bn * T * K].reshape(36, -1)
        _both_sides(A, ec.reshape(M_OUT, M_OUT, -1), tmp, mgc)
        # dU[ab] += Mg[ab]^T (K x tiles) @ V[ab] (tiles x C)
        np.matmul(mgc.reshape(36, bn * T, K).transpose(0, 2, 1), v, out=part)
        du += part
    gw = GG.T @ du.reshape(36, K * C).astype(np.float64, copy=False)  # (9, K*C), dw = G^T dU G
    return np.ascontiguousarray(gw.reshape(3, 3, K, C).transpose(2, 3, 0, 1), dtype=dtype)


def flops(g: Geometry) -> dict[str, float]:
    """Floating-point operations (multiply-adds x 2) of :func:`conv2d` on geometry ``g``: its
    input transform, the 36 GEMMs, its output transform (the same counts for
    :func:`conv2d_backward_weight`, whose gy transform mirrors the output transform); and, for
    comparison, the direct (im2col) count."""
    th, tw = _tiles(g.OH, g.OW)
    P = g.N * th * tw
    return {
        "input transform": 2.0 * (36 * 6 + 36 * 6) * P * g.C,  # rows, then columns
        "products": 2.0 * 36 * P * g.C * g.K,
        "output transform": 2.0 * (24 * 6 + 16 * 6) * P * g.K,
        "direct": 2.0 * g.N * g.K * g.OH * g.OW * g.C * 9,
    }
