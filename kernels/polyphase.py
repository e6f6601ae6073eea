"""Input gradient of a strided conv (= transposed conv) by polyphase decomposition (CPU).

A conv with stride (sy, sx) whose kernel (kh, kw) is a multiple of the stride reads, for output
o and kernel tap k = s a + r (phase r < s, a < q = k / s), the padded input at s (o + a) + r,
i.e. the phase-r component x_r[i] = x_pad[s i + r] at o + a:

    conv_s(x, w) = sum over the sy sx phases r of conv_1(x_r, w_r),   w_r[a] = w[s a + r],

stride-1 convs with (qy, qx) = (kh / sy, kw / sx) kernels (DCGAN's 4x4 stride 2: four 2x2
convs). Its input gradient, the transposed conv of DCGAN's generator, is then per phase a
stride-1 transposed conv: the GEMM W^T gy gives each (phase, tap) slab of (C, OH, OW, N); a
phase's image is the sum of its qy qx slabs shifted by their taps (rows of OW N contiguous
floats, batch-last), and one depth-to-space copy interleaves the phases into (N, C, H, W):
no col2im scatter-add through stride-s windows of the image. Same GEMM, same FLOPs.

Measured (benchmarks/NOTES.md, item 15), it does not beat im2col + GEMM once both hand back
NCHW through the blocked transpose of ``kernels.layout``: DCGAN's 64x64x14x14 -> 128 input
gradient 14.1 vs 13.8-14.1 ms (0.99-1.02), whole DCGAN step no faster; the forward and the
weight gradient the same way (one GEMM over (phase, tap, channel), columns as qy qx window
copies of the phases) measured 1.03-1.05 and 1.04-1.06 and were dropped. The GEMM, the same
in both, is 60% of each pass. So it is off by default; ``TENSORTAPE_POLYPHASE=1`` (or
:func:`set_enabled`) takes it for every eligible conv's input gradient (tests, A/B), ahead of
the Winograd F(4x4, 2x2) / F(7x7, 2x2) on the same phases (``kernels/winograd.py``, "Strided
convs"), which cuts the GEMM itself and runs DCGAN's 4x4 stride-2 convs by default.
"""

from __future__ import annotations

import numpy as np

from kernels.geometry import Geometry
from kernels.layout import batch_first
from kernels.switch import Switch

ENV_VAR = "TENSORTAPE_POLYPHASE"
MODES = ("0", "1")

# "0" (the default, off) or "1" (every eligible geometry), read once, at import.
_switch = Switch(ENV_VAR, MODES, "0")
mode_from_env, mode = _switch.mode_from_env, _switch.mode
set_mode, set_enabled = _switch.set_mode, _switch.set_enabled


def eligible(g: Geometry) -> bool:
    """Strided, no dilation, groups 1, and the kernel a multiple of the stride on both axes."""
    if (g.sy, g.sx) == (1, 1) or (g.dy, g.dx) != (1, 1) or g.groups != 1:
        return False
    return g.kh % g.sy == 0 and g.kw % g.sx == 0


def applies(g: Geometry, dtype: np.dtype) -> bool:
    """Whether the input gradient of the conv of geometry ``g`` runs here."""
    return _switch.value == "1" and eligible(g)


def _phase_sizes(g: Geometry) -> tuple[int, int, int, int]:
    """(qy, qx, H', W'): the phases' kernel and map size; H' sy covers every window."""
    qy, qx = g.kh // g.sy, g.kw // g.sx
    return qy, qx, g.OH + qy - 1, g.OW + qx - 1


def _span(n: int, p: int, s: int, r: int, size: int) -> tuple[int, int, int]:
    """Along one axis, phase r of the padded input: (i0, count, first input row) of the
    phase rows i in [0, size) whose padded row s i + r - p is an input row in [0, n)."""
    i0 = max(0, -(-(p - r) // s))
    first = s * i0 + r - p
    count = min(size - i0, -(-(n - first) // s)) if first < n else 0
    return i0, max(0, count), first


def _from_phases(ps: np.ndarray, g: Geometry) -> np.ndarray:
    """The phase images ps (sy, sx, C, H', W', N) -> (N, C, H, W): x_pad[n, c, sy i + ry,
    sx j + rx] = ps[ry, rx, c, i, j, n], each pixel written once, the padding dropped, input
    rows no window reaches zero. Back to batch-first in blocks, then one strided copy a phase."""
    _, _, H2, W2 = _phase_sizes(g)
    pt = batch_first(ps.reshape(-1, 1, 1, g.N)).reshape(g.N, g.sy, g.sx, g.C, H2, W2)
    covered = H2 * g.sy - g.ph >= g.H and W2 * g.sx - g.pw >= g.W  # the phases span the input
    gx = (np.empty if covered else np.zeros)(g.x_shape, dtype=ps.dtype)
    for ry in range(g.sy):
        i0, ni, y0 = _span(g.H, g.ph, g.sy, ry, H2)
        for rx in range(g.sx):
            j0, nj, x0 = _span(g.W, g.pw, g.sx, rx, W2)
            if ni and nj:
                rows = slice(y0, y0 + g.sy * (ni - 1) + 1, g.sy)
                cols = slice(x0, x0 + g.sx * (nj - 1) + 1, g.sx)
                gx[:, :, rows, cols] = pt[:, ry, rx, :, i0 : i0 + ni, j0 : j0 + nj]
    return gx


def _weight_matrix(w: np.ndarray, g: Geometry) -> np.ndarray:
    """w (K, C, kh, kw) as the (K, sy sx qy qx C) matrix, columns in (ry, rx, a, b, c) order
    for tap (sy a + ry, sx b + rx): its transpose makes one contiguous slab per (phase, tap)."""
    qy, qx, _, _ = _phase_sizes(g)
    w6 = w.reshape(g.K, g.C, qy, g.sy, qx, g.sx).transpose(0, 3, 5, 2, 4, 1)
    return np.ascontiguousarray(w6).reshape(g.K, -1)


def conv2d_backward_input(gy: np.ndarray, w: np.ndarray, g: Geometry, buf: np.ndarray):
    """dL/dx (N, C, H, W), also the transposed conv: the slabs W^T gy (in ``buf``, any buffer
    of sy sx qy qx C OH OW N elements), summed per phase at their taps' shifts, interleaved."""
    qy, qx, H2, W2 = _phase_sizes(g)
    gyt = np.ascontiguousarray(gy.transpose(1, 2, 3, 0)).reshape(g.K, -1)
    slabs = buf.reshape(-1, gyt.shape[1])
    np.matmul(_weight_matrix(w, g).T, gyt, out=slabs)
    slabs = slabs.reshape(g.sy, g.sx, qy, qx, g.C, g.OH, g.OW, g.N)
    ps = np.zeros((g.sy, g.sx, g.C, H2, W2, g.N), dtype=gy.dtype)
    for a in range(qy):
        for b in range(qx):
            ps[:, :, :, a : a + g.OH, b : b + g.OW] += slabs[:, :, a, b]
    return _from_phases(ps, g)


def col_shape(g: Geometry) -> tuple[int, int]:
    """The size of the slabs' buffer :func:`conv2d_backward_input` takes."""
    qy, qx, _, _ = _phase_sizes(g)
    return (g.sy * g.sx * qy * qx * g.C, g.OH * g.OW * g.N)
