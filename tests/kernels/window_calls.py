"""The conv/pool kernels called with PyTorch-style window arguments, for the kernel tests.

Each wrapper builds the :class:`kernels.geometry.Geometry` that the op's entry would build
(``kernels.geometry.conv2d`` / ``pool2d``, which check the sizes) and calls the backend's
kernel with it: ``kern=kernels.cpu`` by default, ``kernels.gpu`` for the cuda path.
"""

from __future__ import annotations

import numpy as np

from kernels import cpu, geometry


def conv_geo(x_shape, w_shape, s=1, p=0, d=1, g=1):
    return geometry.conv2d(x_shape, w_shape, s, p, d, g)


def window_geo(x_shape, kh, kw, sy, sx, ph, pw, dy=1, dx=1):
    """The geometry of an im2col with this window (one output channel)."""
    return geometry.conv2d(x_shape, (1, x_shape[1], kh, kw), (sy, sx), (ph, pw), (dy, dx))


def pool_geo(x_shape, kh, kw, sy, sx, ph, pw, dy=1, dx=1, ceil_mode=False, cip=True, out=None):
    """A pooling geometry; with ``out`` (OH, OW) given, ceil mode when floor mode differs."""
    args = (x_shape, (kh, kw), (sy, sx), (ph, pw), (dy, dx))
    geo = geometry.pool2d(*args, ceil_mode, cip)
    if out is not None and (geo.OH, geo.OW) != tuple(out):
        geo = geometry.pool2d(*args, True, cip)
    return geo


def im2col(x, kh, kw, sy, sx, ph, pw, dy=1, dx=1):
    return cpu.im2col(x, window_geo(x.shape, kh, kw, sy, sx, ph, pw, dy, dx))


def col2im(col, sy, sx, ph, pw, H, W, dy=1, dx=1):
    N, C, kh, kw = col.shape[:4]
    return cpu.col2im(col, window_geo((N, C, H, W), kh, kw, sy, sx, ph, pw, dy, dx))


def conv2d_forward(x, w, b=None, s=1, p=0, d=1, g=1, kern=cpu):
    return kern.conv2d_forward(x, w, b, conv_geo(x.shape, w.shape, s, p, d, g))[0]


def conv2d_backward_input(gy, w, x_shape, s=1, p=0, d=1, g=1, kern=cpu):
    return kern.conv2d_backward_input(gy, w, conv_geo(x_shape, w.shape, s, p, d, g))


def conv2d_backward_weight(gy, x, w_shape, s=1, p=0, d=1, g=1, kern=cpu, cols=None):
    return kern.conv2d_backward_weight(gy, x, conv_geo(x.shape, w_shape, s, p, d, g), cols)


def max_pool2d_forward(x, kh, kw, sy, sx, ph, pw, dy=1, dx=1, ceil_mode=False, kern=cpu):
    return kern.max_pool2d_forward(x, pool_geo(x.shape, kh, kw, sy, sx, ph, pw, dy, dx, ceil_mode))


def max_pool2d_backward(gy, am, x_shape, kh, kw, sy, sx, ph, pw, dy=1, dx=1, kern=cpu):
    geo = pool_geo(x_shape, kh, kw, sy, sx, ph, pw, dy, dx, out=gy.shape[2:])
    return kern.max_pool2d_backward(gy, am, geo)


def max_pool2d_indices(am, x_shape, kh, kw, sy, sx, ph, pw, dy=1, dx=1, xp=np):
    geo = pool_geo(x_shape, kh, kw, sy, sx, ph, pw, dy, dx, out=am.shape[2:])
    return geo.indices(am, xp)


def avg_pool2d_forward(x, kh, kw, sy, sx, ph, pw, count_include_pad=True, kern=cpu):
    return kern.avg_pool2d_forward(
        x, pool_geo(x.shape, kh, kw, sy, sx, ph, pw, cip=count_include_pad)
    )


def avg_pool2d_backward(gy, x_shape, kh, kw, sy, sx, ph, pw, count_include_pad=True, kern=cpu):
    geo = pool_geo(x_shape, kh, kw, sy, sx, ph, pw, cip=count_include_pad, out=gy.shape[2:])
    return kern.avg_pool2d_backward(gy, geo)
