"""Winograd convolution on the CPU: F(4x4, 3x3) for 3x3 stride-1 convs, F(4x4, 2x2) or F(7x7,
2x2) on the polyphase components of 4x4 stride-2 ones; dilation 1, groups 1.

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

Strided convs whose kernel is twice the stride (DCGAN's 4x4 stride 2, and its transposed
conv) run the same machinery with F(4x4, 2x2) (5x5 tiles, 25 multiplications per 4x4 outputs
instead of 64) or F(7x7, 2x2) (8x8 tiles, 64 per 7x7 outputs instead of 196), whichever
computes fewer products over the output map, on their polyphase components: see "Strided
convs" below. Both take one :class:`_Plan`, a stride-1 Winograd conv over the (phase-split)
tiles of an NCHW input. The strided forward transforms the whole batch before its products
(one product group, run in phases over the threads), so it hands that V to the conv's node
(:class:`KeptTiles`) and its weight gradient reuses it.

``TENSORTAPE_WINOGRAD=0`` (read once, when this module is imported), :func:`set_mode` (from
then on) or :func:`set_enabled` (within a block) turns both off, for A/B benchmarks and tests;
im2col + GEMM then runs every conv.
"""

from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from kernels import parallel
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
# Bytes of a product group's tile arrays (V and the products) when its filters are too big to
# stay in cache (see _Plan).
GROUP_BYTES = 32 << 20

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


# F(4x4, 2x2) with points 0, 1, -1, 2 and infinity: the polyphase components of a 4x4 stride-2
# conv are 2x2 stride-1 convs (see "Strided convs" below). B^T solved from A^T and G (integer).
BT2 = np.array(
    [
        [2, -1, -2, 1, 0],
        [0, -2, -1, 1, 0],
        [0, 2, -3, 1, 0],
        [0, -1, 0, 1, 0],
        [0, 2, -1, -2, 1],
    ],
    dtype=np.float64,
)
G2 = np.array(
    [[1 / 2, 0], [-1 / 2, -1 / 2], [-1 / 6, 1 / 6], [1 / 6, 1 / 3], [0, 1]], dtype=np.float64
)
AT2 = np.array(
    [[1, 1, 1, 1, 0], [0, 1, -1, 2, 0], [0, 1, 1, 4, 0], [0, 1, -1, 8, 1]], dtype=np.float64
)
# F(7x7, 2x2) with points 0, +-1, +-2, +-1/2 and infinity: 64 multiplications per 7x7 outputs
# (1.31 an output; F(4x4, 2x2) takes 1.56, and 2.04 on a 7x7 map, whose 2 x 2 tiles compute 64
# outputs for 49). These are the points of F(6x6, 3x3) (NNPACK's float32 choice), so B^T is
# its B^T; G and A^T from the points (Lavin & Gray, section 4), G's first row and B^T's signed
# so that both start with +1. float32 error ~3.5x F(4x4, 2x2)'s: on random 256-channel tiles,
# |error| / (the same sum over absolute values) at most 3.2e-6 (F(4x4, 2x2): 9.2e-7).
BT7 = np.array(
    [
        [1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0],
        [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
        [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0],
        [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
        [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0],
        [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
        [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0],
        [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1],
    ],
    dtype=np.float64,
)
G7 = np.array(
    [
        [1, 0],
        [-2 / 9, -2 / 9],
        [-2 / 9, 2 / 9],
        [1 / 90, 1 / 45],
        [1 / 90, -1 / 45],
        [32 / 45, 16 / 45],
        [32 / 45, -16 / 45],
        [0, 1],
    ],
    dtype=np.float64,
)
AT7 = np.array(
    [[1, 1, 1, 1, 1, 1, 1, 0]]
    + [[0, 1, (-1) ** i, 2**i, (-2) ** i, 2.0**-i, (-2.0) ** -i, i == 6] for i in range(1, 7)],
    dtype=np.float64,
)
# By (outputs a side m, kernel side r).
_ALGORITHMS = {(4, 3): (BT, G, AT), (4, 2): (BT2, G2, AT2), (7, 2): (BT7, G7, AT7)}


def _strided_m(OH: int, OW: int) -> int:
    """Outputs a tile side for a 2x2 phase conv of (OH, OW) outputs: the F(m x m, 2x2) with the
    fewest products over the map (tiles times (m + 1)^2), the smaller m on a tie (the products
    are ~60% of a pass; the transforms cost about the same per output). 7x7 (DCGAN's D2, and
    G1's input gradient): F(7x7) 64 against F(4x4) 100; 8x8: 100 against 256; 14x14: 256
    against 400; 16x16: 400 against 576."""
    return min((M_OUT, 7), key=lambda m: -(-OH // m) * -(-OW // m) * (m + 1) ** 2)


@functools.cache
def _matrices(m: int, r: int, dtype: np.dtype) -> tuple[np.ndarray, ...]:
    """F(m x m, r x r)'s (B^T, A^T, A, G, G^T) in ``dtype``. Row-major (a, b) tile positions
    throughout."""
    bt, gm, at = _ALGORITHMS[m, r]
    A, GT = (np.ascontiguousarray(m.T, dtype=dtype) for m in (at, gm))
    return bt.astype(dtype), at.astype(dtype), A, gm.astype(dtype), GT


def _both_sides(m: np.ndarray, d: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> None:
    """out (p, p, X) = m d m^T on every column: d (q, q, X), m (p, q), tmp >= p*q*X scratch;
    d and out may be views with any strides on their first two axes (slices of a group's
    arrays), X contiguous. Along one axis, then the other: 2 p GEMMs of (p x q) @ (q x X)."""
    p, q = m.shape
    t = tmp[: q * p * d.shape[-1]].reshape(q, p, -1)
    np.matmul(m, d, out=t)  # t[i] = m @ d[i]
    np.matmul(m, t.transpose(1, 0, 2), out=out.transpose(1, 0, 2))


def _channels_last(dst: np.ndarray, src: np.ndarray) -> None:
    """dst (b, h, w, C) = src (b, C, h, w) as channels-last (:func:`_gather`): a 64 x 32 x 32
    float32 image 202 -> 72 us in blocks, 64 x 64 x 64 858 -> 243 (benchmarks/NOTES.md item
    20); 14 x 14 maps (784 bytes) copy fastest in one go."""
    _gather(dst, src.transpose(0, 2, 3, 1))


def _gather(dst: np.ndarray, src: np.ndarray) -> None:
    """dst = src for a view src whose last axis is strided. The copy reads one float from each
    of the last axis's rows in turn; rows a multiple of 4 KiB apart all fall in one set of the
    L1 cache (8 ways) and evict each other, so then 8 of the last axis at a time."""
    n = src.shape[-1]
    if src.strides[-1] % 4096 or n <= 8:
        np.copyto(dst, src)
        return
    for i in range(0, n, 8):
        np.copyto(dst[..., i : i + 8], src[..., i : i + 8])


def _tiles(OH: int, OW: int, m: int = M_OUT) -> tuple[int, int]:
    return -(-OH // m), -(-OW // m)


class _Plan:
    """One stride-1 Winograd conv F(m x m, r x r) of C' = sy sx C input channels into K outputs
    of (OH, OW), on the tiles of an NCHW source x (C, H, W) zero-padded by (ph, pw) and split
    into its (sy, sx) phases: input channel (ry, rx, c) at phase pixel (i, j) is the padded
    x[c, sy i + ry, sx j + rx]. Stride 1 is sy = sx = 1 (C' = C).

    The copies and transforms run in chunks of ``nb`` images (CHUNK_BYTES); the products run
    over groups of ``ng`` images, a multiple of nb: nb itself by default, the whole batch (up
    to GROUP_BYTES of tiles) with ``group_all``, for filters U too big to stay in cache
    between chunks (DCGAN's 4x4 stride-2 conv: U is 3.3 MB and was streamed from memory for
    every 4-image chunk). ``m`` outputs a tile side: 4, or 7 for F(7x7, 2x2)."""

    def __init__(self, r, C, H, W, ph, pw, K, OH, OW, N, dtype, phases=(1, 1), group_all=False,
                 m=M_OUT):  # fmt: skip
        self.r, self.m, self.n = r, m, m + r - 1
        self.C, self.H, self.W, self.ph, self.pw, self.K, self.N = C, H, W, ph, pw, K, N
        self.OH, self.OW, self.dtype, (self.sy, self.sx) = OH, OW, dtype, phases
        self.th, self.tw = _tiles(OH, OW, m)
        self.T = self.th * self.tw
        self.Ci = self.sy * self.sx * C
        per_image = self.n**2 * self.T * (2 * self.Ci + K) * dtype.itemsize
        self.nb = max(1, min(N, CHUNK_BYTES // per_image))
        self.ng = self.nb
        if group_all:
            per_image = self.n**2 * self.T * (self.Ci + K) * dtype.itemsize
            fit = min(N, GROUP_BYTES // per_image)
            self.ng = N if fit == N else max(1, fit // self.nb) * self.nb
        self.BT, self.AT, self.A, self.G, self.GT = _matrices(m, r, dtype)

    def taps(self, wt: np.ndarray) -> np.ndarray:
        """The weight's taps transformed along their rows, G wt: (n, r C' K), from the stride-1
        weight with its taps first, wt (r, r, C', K) (any strides: one gathering copy; the
        caller picks the order whose gather reads the weight most nearly in order). U's row
        a of tile positions is then G along the columns of row a (:meth:`_filter_row`): the
        strided passes make each U row on the thread that multiplies by it, just before (U is
        16x the weight in F(7x7), 8.4 MB for DCGAN's D2), the others all of U at once
        (:meth:`filters`). Two GEMMs in the weight's dtype (one GEMM with the n^2 x r^2
        kron(G, G) took 0.5 ms for DCGAN's F(4x4) U, whose inner dimension r^2 = 4 BLAS runs
        slowly; as two, 0.1). The float32 sums of <= 3 terms add a few ulp to the rounding of
        U itself, inside the tests' bounds."""
        w = np.ascontiguousarray(wt, dtype=self.dtype)
        return np.matmul(self.G, w.reshape(self.r, -1))

    def _filter_row(self, rows: np.ndarray, a: int, out: np.ndarray) -> np.ndarray:
        """U's tile positions (a, 0 .. n - 1), (n, C', K), into out (n C' K scratch), from
        ``rows`` = :meth:`taps`. The same GEMM whichever thread makes it, so the products
        do not depend on the thread count."""
        u = out[: self.n * self.Ci * self.K].reshape(self.n, -1)
        np.matmul(self.G, rows[a].reshape(self.r, -1), out=u)
        return u.reshape(self.n, self.Ci, self.K)

    def filters(self, rows: np.ndarray) -> np.ndarray:
        """U = G g G^T as (n^2, C', K), from ``rows`` = :meth:`taps` (each row as
        :meth:`_filter_row` makes it)."""
        U = np.matmul(self.G, rows.reshape(self.n, self.r, -1))  # along the columns, per row
        return U.reshape(self.n**2, self.Ci, self.K)

    def _row_spans(self, s: slice):
        """The tile-position rows a that span ``s`` touches, with the positions (p0, p1) of
        row a in s and whether s holds the whole row."""
        n = self.n
        for a in range(s.start // n, -(-s.stop // n)):
            p0, p1 = max(s.start, a * n), min(s.stop, (a + 1) * n)
            yield a, p0, p1, (p0, p1) == (a * n, (a + 1) * n)

    def _products(self, v: np.ndarray, rows: np.ndarray, prods: np.ndarray, s: slice) -> None:
        """prods[p] = V[p] @ U[p] for the positions p of span s, U made row by row into this
        thread's scratch (:meth:`_filter_row`) while it is still in the cache."""
        u = np.empty(self.n * self.Ci * self.K, dtype=self.dtype)
        for a, p0, p1, _ in self._row_spans(s):
            U = self._filter_row(rows, a, u)
            np.matmul(v[p0:p1], U[p0 - a * self.n : p1 - a * self.n], out=prods[p0:p1])

    def _groups(self, ng: int | None = None) -> list[tuple[list[tuple[int, int, int]], int, int]]:
        """Per product group of ``ng`` images (default the plan's): its chunks (first image,
        images, first tile row in the group), its tile rows and its first image."""
        ng, out = ng or self.ng, []
        for g0 in range(0, self.N, ng):
            end = min(g0 + ng, self.N)
            chunks = [(n0, min(self.nb, end - n0), (n0 - g0) * self.T)
                      for n0 in range(g0, end, self.nb)]  # fmt: skip
            out.append((chunks, (end - g0) * self.T, g0))
        return out

    def _parts(self) -> list[list]:
        """The groups cut into one run per BLAS thread (kernels/parallel.py), each run done
        on a thread of its own with BLAS at one thread: the plan's groups when there are at
        least two a thread (the 3x3 path: one chunk a group, 36 products far too small for
        BLAS to split), else the batch re-cut into one group a thread (the strided path's
        single group, whose 25 products BLAS splits, but not the copies and transforms
        around them) when each holds at least two chunks: a hand-off costs ~0.1 ms, a chunk
        0.2-0.6 ms. One run of all groups otherwise."""
        groups, t = self._groups(), parallel.threads()
        if t == 1:
            return [groups]
        if len(groups) >= 2 * t:
            return parallel.split(groups, t)
        chunks = -(-self.N // self.nb)
        if chunks < 2 * t:
            return [groups]
        return [[g] for g in self._groups(-(-chunks // t) * self.nb)]

    def _runs(self, chunks: list) -> list[list]:
        """The whole batch's ``chunks`` cut into one run per BLAS thread for the phased
        passes (:meth:`forward`, :meth:`weight_grad`), as :meth:`_parts` cuts groups: one run
        on one thread, or with fewer than two chunks a thread."""
        t = parallel.threads()
        return [chunks] if t == 1 or len(chunks) < 2 * t else parallel.split(chunks, t)

    def _positions(self, runs: int) -> list[slice]:
        """The n^2 tile positions cut into ``runs`` spans: each thread's share of the
        products."""
        return [slice(r.start, r.stop) for r in parallel.split(range(self.n**2), runs)]

    def input_tiles(self):
        """A function (x, n0, b, out) writing V = B^T d B of images n0 .. n0 + b into out,
        (n^2, b T, C') (a slice of the group's array).

        It holds a zero-padded channels-last buffer (images, rows, cols, C) whose border is
        never written, so each chunk only copies the image into the interior; input rows that
        no tile reaches are not copied."""
        n, nb, C, sy, sx, th, tw, m = (self.n, self.nb, self.C, self.sy, self.sx, self.th,
                                       self.tw, self.m)  # fmt: skip
        rows, cols = sy * (m * th + self.r - 1), sx * (m * tw + self.r - 1)
        xc = np.zeros((nb, rows, cols, C), dtype=self.dtype)
        hu, wu = max(0, min(self.H, rows - self.ph)), max(0, min(self.W, cols - self.pw))
        d, tmp = (np.empty(n * n * nb * self.T * self.Ci, dtype=self.dtype) for _ in range(2))
        s0, s1, s2, s3 = xc.strides
        strides = (sy * s1, sx * s2, s0, m * sy * s1, m * sx * s2, s1, s2, s3)
        views = {}  # images -> (interior, tile view, its copy, the copy as (n, n, X))

        def views_of(b: int):
            view = as_strided(xc, (n, n, b, th, tw, sy, sx, C), strides)
            dc = d[: view.size].reshape(view.shape)
            interior = xc[:b, self.ph : self.ph + hu, self.pw : self.pw + wu]
            views[b] = (interior, view, dc, dc.reshape(n, n, -1))
            return views[b]

        def tiles(x: np.ndarray, n0: int, b: int, out: np.ndarray) -> None:
            # The views are made once per chunk size: as_strided alone cost ~5 us a call, and
            # the 14x14 convs of the CNN run ~60 chunks a step (benchmarks/NOTES.md item 17).
            interior, view, dc, dn = views.get(b) or views_of(b)
            _channels_last(interior, x[n0 : n0 + b, :, :hu, :wu])
            np.copyto(dc, view)
            _both_sides(self.BT, dn, tmp, out.reshape(n, n, -1))

        return tiles

    def _outputs(self):
        """A function (prods, n0, b, write) taking the products (n^2, b T, K) of images n0 ..
        n0 + b through A^T . A into channels-last blocks and handing them to ``write(n0, b,
        yc)``, yc (b, m th, m tw, K) (rows and columns beyond (OH, OW) are tile overhang); it
        holds its own scratch, so each thread's run takes one."""
        n, m, nb, th, tw, T, K = self.n, self.m, self.nb, self.th, self.tw, self.T, self.K
        yt = np.empty((m, m, nb * T * K), dtype=self.dtype)
        tmp = np.empty(m * n * nb * T * K, dtype=self.dtype)
        yc = np.empty((nb, m * th, m * tw, K), dtype=self.dtype)
        views = {}  # images -> output views

        def views_of(bn: int):
            ytc, ycc = yt[:, :, : bn * T * K], yc[:bn]
            src = ytc.reshape(m, m, bn, th, tw, K).transpose(2, 3, 0, 4, 1, 5)
            dst = ycc.reshape(bn, th, m, tw, m, K)
            views[bn] = (ytc, ycc, dst, src)
            return views[bn]

        def outputs(prods: np.ndarray, n0: int, bn: int, write) -> None:
            ytc, ycc, dst, src = views.get(bn) or views_of(bn)
            _both_sides(self.AT, prods.reshape(n, n, -1), tmp, ytc)
            np.copyto(dst, src)  # (m, m, images, th, tw, K) -> (images, m th, m tw, K)
            write(n0, bn, ycc)

        return outputs

    def forward(self, x: np.ndarray, rows: np.ndarray, write) -> np.ndarray | None:
        """The conv of x with the filters whose :meth:`taps` are ``rows``. Per chunk,
        ``write(n0, b, yc)`` gets the outputs channels-last, (b, m th, m tw, K)
        (rows and columns beyond (OH, OW) are tile overhang; on more than one BLAS thread
        ``write`` runs on several threads at once, for disjoint images). Returns the input's
        transformed tiles V (n^2, N T, C') when the plan's one group holds the whole batch
        (else None): what :meth:`weight_grad` would compute again from x.

        One group of the whole batch (the strided path) runs in three phases, each cut over
        the threads: the input tiles by images, the products by tile positions, the outputs
        by images. Cut by images, the products were n^2 GEMMs of half the rows on each
        thread, both reading all of U: DCGAN's 25 products of (256 x 256) @ (256 x 128) took
        6.4 ms on one thread, 4.7 so cut on two, 3.7 cut by positions (benchmarks/NOTES.md
        item 24). Each image and each position is computed as on one thread."""
        if self.ng != self.N:
            U = self.filters(rows)
            parallel.run([functools.partial(self._forward_groups, x, U, write, part)
                          for part in self._parts()])  # fmt: skip
            return None
        n, NT = self.n, self.N * self.T
        v = np.empty((n * n, NT, self.Ci), dtype=self.dtype)
        prods = np.empty((n * n, NT, self.K), dtype=self.dtype)
        ((chunks, _, _),) = self._groups()
        runs = self._runs(chunks)
        T = self.T
        parallel.run([functools.partial(_into_rows, self.input_tiles(), x, run, T, v)
                      for run in runs])  # fmt: skip
        parallel.run([functools.partial(self._products, v, rows, prods, s)
                      for s in self._positions(len(runs))])  # fmt: skip
        parallel.run([functools.partial(_from_rows, self._outputs(), prods, run, T, write)
                      for run in runs])  # fmt: skip
        return v

    def _forward_groups(self, x, U, write, groups: list) -> None:
        """:meth:`forward` on ``groups`` of a plan of several, chunk by chunk."""
        n, T, K = self.n, self.T, self.K
        rows = max(P for _, P, _ in groups)
        v = np.empty((n * n, rows, self.Ci), dtype=self.dtype)
        prods = np.empty((n * n, rows, K), dtype=self.dtype)
        tiles, outputs = self.input_tiles(), self._outputs()
        for chunks, P, _ in groups:
            _into_rows(tiles, x, chunks, T, v)
            np.matmul(v[:, :P], U, out=prods[:, :P])
            _from_rows(outputs, prods, chunks, T, write)

    def _gy_tiles(self):
        """A function (gy, n0, b, out) writing A gy_tile A^T of images n0 .. n0 + b into out
        (n^2, b T, K); its own scratch, as :meth:`_outputs`."""
        n, m, nb, th, tw, T, K, OH, OW = (self.n, self.m, self.nb, self.th, self.tw, self.T,
                                          self.K, self.OH, self.OW)  # fmt: skip
        tmp = np.empty(n * m * nb * T * K, dtype=self.dtype)
        gyc = np.zeros((nb, m * th, m * tw, K), dtype=self.dtype)  # 0 beyond (OH, OW)
        e = np.empty(m * m * nb * T * K, dtype=self.dtype)

        def gy_tiles(gy: np.ndarray, n0: int, bn: int, out: np.ndarray) -> None:
            _channels_last(gyc[:bn, :OH, :OW], gy[n0 : n0 + bn])
            # gy's m x m tiles (m, m, images, th, tw, K), then A gy A^T: (n^2, images T, K).
            ec = e[: m * m * bn * T * K].reshape(m, m, bn, th, tw, K)
            ec[...] = gyc[:bn].reshape(bn, th, m, tw, m, K).transpose(2, 4, 0, 1, 3, 5)
            _both_sides(self.A, ec.reshape(m, m, -1), tmp, out.reshape(n, n, -1))

        return gy_tiles

    def weight_grad(self, gy: np.ndarray, x: np.ndarray, v: np.ndarray | None = None):
        """dL/dw1 (K, C', r, r) for output gradient gy (N, K, OH, OW): the adjoint,
        dU = sum over tiles of (A gy_tile A^T) * V, dw1 = G^T dU G; V the forward's (read
        only, all N T rows; only for a plan of one group) when given, else computed from x
        chunk by chunk. One group runs in phases as :meth:`forward` does (the products cut
        by positions: the same values as on one thread); with several groups, on more than
        one BLAS thread, each thread's run sums its own dU, added up at the end."""
        n, r, K, Ci = self.n, self.r, self.K, self.Ci
        if self.ng == self.N:
            h = self._weight_grad_phased(gy, x, v)
        else:
            assert v is None, "kept tiles come from a plan of one group"
            dus = parallel.run([functools.partial(self._weight_grad_groups, gy, x, part)
                                for part in self._parts()])  # fmt: skip
            du = dus[0]
            for d in dus[1:]:
                du += d
            h = np.matmul(self.GT, du.reshape(n, n, K * Ci))  # each row as _grad_row
        # dw1 = G^T dU G: h along the tile columns (per row, :meth:`_grad_row`), then the rows.
        gw = np.matmul(self.GT, h.reshape(n, -1))  # (r, r K C')
        return gw.reshape(r, r, K, Ci).transpose(2, 3, 0, 1)  # a view, (K, C', r, r)

    def _grad_row(self, du: np.ndarray, h: np.ndarray, a: int) -> None:
        """h[a] = G^T along the columns of dU's row a of tile positions: (r, K C')."""
        n = self.n
        np.matmul(self.GT, du[a * n : (a + 1) * n].reshape(n, -1), out=h[a])

    def _grad_products(self, mg, v, du, h, s: slice) -> None:
        """dU[p] = Mg[p]^T (K x tiles) @ V[p] (tiles x C') for the positions p of span s, and
        h of the rows s holds whole, each just after its dU (still in the cache)."""
        for a, p0, p1, whole in self._row_spans(s):
            np.matmul(mg[p0:p1].transpose(0, 2, 1), v[p0:p1], out=du[p0:p1])
            if whole:
                self._grad_row(du, h, a)

    def _weight_grad_phased(self, gy, x, v: np.ndarray | None) -> np.ndarray:
        """h = G^T along the columns of dU (n, r, K C'), dU (n^2, K, C') of a plan of one
        group: the gradient's tiles (and V, unless given) by images, then dU[ab] = Mg[ab]^T
        (K x tiles) @ V[ab] (tiles x C') and h by positions (the rows two threads share made
        after, from their dU: h the same on any thread count)."""
        n, T = self.n, self.T
        mg = np.empty((n * n, self.N * T, self.K), dtype=self.dtype)
        x_tiles = v is None
        if x_tiles:
            v = np.empty((n * n, self.N * T, self.Ci), dtype=self.dtype)

        def gradient_tiles(chunks: list) -> None:  # each run its own scratch
            if x_tiles:
                _into_rows(self.input_tiles(), x, chunks, T, v)
            _into_rows(self._gy_tiles(), gy, chunks, T, mg)

        ((chunks, _, _),) = self._groups()
        runs = self._runs(chunks)
        parallel.run([functools.partial(gradient_tiles, run) for run in runs])
        du = np.empty((n * n, self.K, self.Ci), dtype=self.dtype)
        h = np.empty((n, self.r, self.K * self.Ci), dtype=self.dtype)
        spans = self._positions(len(runs))
        parallel.run([functools.partial(self._grad_products, mg, v, du, h, s) for s in spans])
        for s in spans[1:]:  # a row cut between two spans
            a, _, _, whole = next(self._row_spans(s))
            if not whole:
                self._grad_row(du, h, a)
        return h

    def _weight_grad_groups(self, gy, x, groups: list) -> np.ndarray:
        """dU (n^2, K, C') summed over ``groups``' tiles (a plan of several)."""
        n, T, K, Ci = self.n, self.T, self.K, self.Ci
        rows = max(P for _, P, _ in groups)
        tiles, gy_tiles = self.input_tiles(), self._gy_tiles()
        v = np.empty((n * n, rows, Ci), dtype=self.dtype)
        mg = np.empty((n * n, rows, K), dtype=self.dtype)
        du = np.zeros((n * n, K, Ci), dtype=self.dtype)
        part = np.empty_like(du) if len(groups) > 1 else du
        for chunks, P, _ in groups:
            _into_rows(tiles, x, chunks, T, v)
            _into_rows(gy_tiles, gy, chunks, T, mg)
            # dU[ab] += Mg[ab]^T (K x tiles) @ V[ab] (tiles x C')
            np.matmul(mg[:, :P].transpose(0, 2, 1), v[:, :P], out=part)
            if part is not du:
                du += part
        return du


def _into_rows(tiles, src: np.ndarray, chunks: list, T: int, out: np.ndarray) -> None:
    """``tiles(src, n0, b, rows)`` (a plan's input_tiles or _gy_tiles function) for each chunk
    (n0, b, r0) of a group: its images' T rows each, from row r0 of out."""
    for n0, bn, r0 in chunks:
        tiles(src, n0, bn, out[:, r0 : r0 + bn * T])


def _from_rows(outputs, prods: np.ndarray, chunks: list, T: int, write) -> None:
    """``outputs(rows, n0, b, write)`` (a plan's _outputs function) for each chunk (n0, b, r0)
    of a group: the products' rows of its images, from row r0."""
    for n0, bn, r0 in chunks:
        outputs(prods[:, r0 : r0 + bn * T], n0, bn, write)


def _plan3(g: Geometry, dtype: np.dtype) -> _Plan:
    return _Plan(3, g.C, g.H, g.W, g.ph, g.pw, g.K, g.OH, g.OW, g.N, dtype)


def _chunk_images(g: Geometry, T: int, itemsize: int) -> int:
    per_image = 36 * T * (2 * g.C + g.K) * itemsize  # input tiles, V, products
    return max(1, min(g.N, CHUNK_BYTES // per_image))


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry) -> np.ndarray:
    """y = conv2d(x, w) + b for a geometry where :func:`applies` holds: (N, K, OH, OW)."""
    plan = _plan3(g, x.dtype)
    y = np.empty(g.y_shape, dtype=x.dtype)

    def write(n0: int, bn: int, yc: np.ndarray) -> None:
        if b is not None:
            yc += b
        y[n0 : n0 + bn] = yc[:, : g.OH, : g.OW].transpose(0, 3, 1, 2)

    plan.forward(x, plan.taps(w.transpose(2, 3, 1, 0)), write)
    return y


def conv2d_backward_weight(gy: np.ndarray, x: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dw (K, C, 3, 3) of :func:`conv2d` for output gradient gy (N, K, OH, OW)."""
    gw = _plan3(g, x.dtype).weight_grad(gy, x)
    return np.ascontiguousarray(gw, dtype=x.dtype)


# Strided convs on their polyphase components ---------------------------------------------
# A conv whose kernel is twice its stride (DCGAN's 4x4 stride 2) is, on the sy sx phases of its
# padded input (kernels/polyphase.py), one stride-1 2x2 conv with sy sx C input channels; F(4x4,
# 2x2) runs it with 25 multiplications per 4x4 outputs instead of 64, F(7x7, 2x2) with 64 per
# 7x7 instead of 196 (:func:`_strided_m` picks). Its input gradient (the
# transposed conv) is a stride-1 2x2 conv of gy, padded by 1, into the sy sx C phase channels,
# interleaved back into the image; its weight gradient is that conv's, mapped back to the taps.


def strided_eligible(g: Geometry) -> bool:
    """Kernel twice the stride on both axes (each phase a 2x2 conv), strided, plain otherwise."""
    plain = (g.dy, g.dx, g.groups) == (1, 1, 1) and (g.sy, g.sx) != (1, 1)
    return plain and (g.kh, g.kw) == (2 * g.sy, 2 * g.sx)


def strided_applies(g: Geometry, dtype: np.dtype) -> bool:
    """Whether the conv of geometry ``g`` (all three passes) runs on its phases here.

    Measured A/B against im2col + GEMM (forward / input grad / weight grad, one thread, CPU
    time, 4x4 stride 2 pad 1, benchmarks/NOTES.md item 16): the input channels C decide as
    for the 3x3 path: 64x1x28x28 -> 64 (DCGAN's D1) 4.9 / 2.7 / 2.2x slower, 64x8x28x28 ->
    64 1.02 / 1.15 / 1.39, 64x16x14x14 -> 32 0.91 / 0.96 / 0.96, 64x64x14x14 -> 128 (D2, and
    G1's transposed conv) 0.89 / 0.81 / 0.99; and so does the batch's tile count: 4x64x14x14
    -> 128 (16 tiles) 1.14 / 0.93 / 1.61, 16x32x16x16 -> 64 (64 tiles) 0.62 / 0.93 / 0.71."""
    # strided_eligible's test, inline: this runs under every conv forward, whose depth to its
    # kernel is held down (tests/benchmarks/test_call_depth.py).
    plain = (g.dy, g.dx, g.groups) == (1, 1, 1) and (g.sy, g.sx) != (1, 1)
    if not plain or (g.kh, g.kw) != (2 * g.sy, 2 * g.sx) or dtype not in (np.float32, np.float64):
        return False
    if _switch.value != "1":
        return _switch.value == "all"
    tiles = g.N * -(-g.OH // M_OUT) * -(-g.OW // M_OUT)  # _tiles, inline as above
    return g.C >= MIN_CHANNELS and tiles >= MIN_TILES


def _strided_plan(g: Geometry, dtype: np.dtype) -> _Plan:
    return _Plan(2, g.C, g.H, g.W, g.ph, g.pw, g.K, g.OH, g.OW, g.N, dtype, (g.sy, g.sx), True,
                 _strided_m(g.OH, g.OW))  # fmt: skip


def _phase_taps(w: np.ndarray, g: Geometry, flip: bool = False) -> np.ndarray:
    """w (K, C, 2 sy, 2 sx) as the phases' 2x2 conv with its taps first, contiguous: (2, 2,
    sy sx C, K), [a, b, (ry, rx, c), k] = w[k, c, sy a + ry, sx b + rx]; with ``flip`` (2, 2,
    K, sy sx C), [a, b, k, (ry, rx, c)] = w[k, c, sy (1 - a) + ry, sx (1 - b) + rx], the
    transposed conv's (C' = K, K' = (ry, rx, c)). The products' U then has K' inner (its
    GEMM with U (C', K) ran at 93 GFLOP/s for DCGAN's F(7x7), as the transpose of (K, C')
    at 73). k inner, the gather reads w with a stride of C kh kw floats (4 KiB for DCGAN):
    in blocks (:func:`_gather`), 0.36 -> 0.10 ms."""
    w6 = w.reshape(g.K, g.C, 2, g.sy, 2, g.sx)  # (k, c, a, ry, b, rx)
    if flip:
        flipped = w6[:, :, ::-1, :, ::-1].transpose(2, 4, 0, 3, 5, 1)
        return np.ascontiguousarray(flipped).reshape(2, 2, g.K, -1)
    src = w6.transpose(2, 4, 3, 5, 1, 0)
    out = np.empty(src.shape, dtype=w.dtype)
    _gather(out, src)
    return out.reshape(2, 2, -1, g.K)


class KeptTiles(NamedTuple):
    """A strided conv forward's transformed input tiles V (n^2, N T, 4C) of its plan (F(4x4)
    or F(7x7); the weight gradient's plan is the same one), kept by the conv's node (as
    im2col's columns are) for :func:`strided_backward_weight`: its input transform,
    the tile copy and the channels-last copy of x are then not done again (2.8 of a 9.3 ms
    DCGAN weight gradient, benchmarks/NOTES.md item 18). V is 2.1x the input in F(4x4)
    (6.5 MB for DCGAN's 64x64x14x14; im2col's columns were 4x), 1.3x in F(7x7) (4.2 MB)."""

    v: np.ndarray


def strided_conv2d(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, g: Geometry, keep: bool = False
) -> tuple[np.ndarray, KeptTiles | None]:
    """(y = conv2d(x, w) + b, its kept tiles or None) for a geometry where
    :func:`strided_applies` holds; tiles only with ``keep`` and when the whole batch was
    transformed at once (one product group)."""
    plan = _strided_plan(g, x.dtype)
    y = np.empty(g.y_shape, dtype=x.dtype)

    def write(n0: int, bn: int, yc: np.ndarray) -> None:
        if b is not None:
            yc += b
        y[n0 : n0 + bn] = yc[:, : g.OH, : g.OW].transpose(0, 3, 1, 2)

    v = plan.forward(x, plan.taps(_phase_taps(w, g)), write)
    return y, (KeptTiles(v) if keep and v is not None else None)


def strided_backward_input(gy: np.ndarray, w: np.ndarray, g: Geometry) -> np.ndarray:
    """dL/dx (N, C, H, W) of :func:`strided_conv2d`, also the transposed conv: phase (ry, rx)
    of the padded dL/dx is gy (padded by 1) correlated with the flipped phase filter,
    (OH + 1, OW + 1) pixels; the phases are interleaved and the padding dropped per chunk."""
    sy, sx, C = g.sy, g.sx, g.C
    H2, W2 = g.OH + 1, g.OW + 1
    plan = _gx_plan(g, gy.dtype)
    hu, wu = min(g.H, sy * H2 - g.ph), min(g.W, sx * W2 - g.pw)  # rows no window reaches: 0
    gx = (np.empty if (hu, wu) == (g.H, g.W) else np.zeros)(g.x_shape, dtype=gy.dtype)
    fulls = {}  # thread -> its padded channels-last scratch (parts may write at once)

    def write(n0: int, bn: int, yc: np.ndarray) -> None:
        full = fulls.get(threading.get_ident())
        if full is None:
            full = fulls[threading.get_ident()] = np.empty((plan.nb, sy * H2, sx * W2, C), gy.dtype)
        f = full[:bn]
        f.reshape(bn, H2, sy, W2, sx, C)[...] = (
            yc[:, :H2, :W2].reshape(bn, H2, W2, sy, sx, C).transpose(0, 1, 3, 2, 4, 5)
        )
        gx[n0 : n0 + bn, :, :hu, :wu] = f[:, g.ph : g.ph + hu, g.pw : g.pw + wu].transpose(
            0, 3, 1, 2
        )

    plan.forward(gy, plan.taps(_phase_taps(w, g, flip=True)), write)
    return gx


def strided_backward_weight(
    gy: np.ndarray, x: np.ndarray, g: Geometry, kept: KeptTiles | None = None
) -> np.ndarray:
    """dL/dw (K, C, 2 sy, 2 sx) of :func:`strided_conv2d`, from the forward's ``kept`` tiles
    of x when given."""
    gw1 = _strided_plan(g, x.dtype).weight_grad(gy, x, None if kept is None else kept.v)
    gw = gw1.reshape(g.K, g.sy, g.sx, g.C, 2, 2).transpose(0, 3, 4, 1, 5, 2)
    return np.ascontiguousarray(gw, dtype=x.dtype).reshape(g.w_shape)


def _plan_flops(plan: _Plan) -> dict[str, float]:
    """FLOPs (multiply-adds x 2) of one pass of ``plan``: the input transform (2 n^3 per tile
    and input channel: along rows, then columns), the n^2 GEMMs, the output transform (m n
    (n + m) per tile and output channel; the weight gradient's gy transform is its adjoint,
    the same count)."""
    n, P = plan.n, plan.N * plan.T
    return {
        "input transform": 2.0 * 2 * n**3 * P * plan.Ci,
        "products": 2.0 * n * n * P * plan.Ci * plan.K,
        "output transform": 2.0 * plan.m * n * (n + plan.m) * P * plan.K,
    }


def _gx_plan(g: Geometry, dtype: np.dtype) -> _Plan:
    """The plan of :func:`strided_backward_input`: gy padded by 1 into the phases' channels."""
    sy, sx = g.sy, g.sx
    return _Plan(2, g.K, g.OH, g.OW, 1, 1, sy * sx * g.C, g.OH + 1, g.OW + 1, g.N, dtype, (1, 1),
                 True, _strided_m(g.OH + 1, g.OW + 1))  # fmt: skip


def flops(g: Geometry, which: str = "forward") -> dict[str, float]:
    """FLOPs of this module's pass ``which`` ("forward", "input grad", "weight grad") on
    geometry ``g`` (a 3x3 stride-1 conv, whose input gradient is the forward of the flipped
    conv, or a strided one on its phases), by stage, and the direct (im2col) count."""
    f32 = np.dtype(np.float32)
    if strided_eligible(g):
        plan = _gx_plan(g, f32) if which == "input grad" else _strided_plan(g, f32)
    else:
        plan = _plan3(g, f32)
    return {**_plan_flops(plan), "direct": 2.0 * g.N * g.K * g.OH * g.OW * g.C * g.kh * g.kw}
