"""The 1-D convolutions and pools (the 2-D kernels on a size-1 height), adaptive max-pooling
and max-unpooling against PyTorch and float64 central differences, on both devices."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import helper_test_op, torch

import engine
import engine.functional as F


def Fof(x):
    return F if isinstance(x, engine.Tensor) else torch.nn.functional


CASES = {
    "conv1d": ([(2, 3, 7), (4, 3, 3), (4,)], lambda x, w, b: Fof(x).conv1d(x, w, b)),
    "conv1d_stride_pad_dilation": (
        [(2, 2, 9), (3, 2, 2)],
        lambda x, w: Fof(x).conv1d(x, w, stride=2, padding=1, dilation=2),
    ),
    "conv1d_groups_same": (
        [(1, 4, 6), (4, 2, 3)],
        lambda x, w: Fof(x).conv1d(x, w, padding="same", groups=2),
    ),
    "conv1d_unbatched": ([(3, 5), (2, 3, 2)], lambda x, w: Fof(x).conv1d(x, w, padding=(1,))),
    "conv_transpose1d": (
        [(2, 3, 4), (3, 2, 3), (2,)],
        lambda x, w, b: Fof(x).conv_transpose1d(x, w, b, stride=2, padding=1, output_padding=1),
    ),
    "conv_transpose1d_groups_dilation": (
        [(1, 4, 3), (4, 1, 2)],
        lambda x, w: Fof(x).conv_transpose1d(x, w, groups=2, dilation=2),
    ),
    "max_pool1d": ([(2, 3, 8)], lambda x: Fof(x).max_pool1d(x, 2)),
    "max_pool1d_stride_pad_dilation_ceil": (
        [(1, 2, 9)],
        lambda x: Fof(x).max_pool1d(x, 3, 2, 1, 2, ceil_mode=True),
    ),
    "max_pool1d_indices": ([(2, 2, 7)], lambda x: Fof(x).max_pool1d(x, 3, 2, return_indices=True)),
    "max_pool1d_unbatched": ([(3, 6)], lambda x: Fof(x).max_pool1d(x, 2)),
    "avg_pool1d": ([(2, 3, 8)], lambda x: Fof(x).avg_pool1d(x, 3, 2)),
    "avg_pool1d_pad_no_count": (
        [(1, 2, 7)],
        lambda x: Fof(x).avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
    ),
    "adaptive_max_pool2d": ([(2, 3, 5, 7)], lambda x: Fof(x).adaptive_max_pool2d(x, (2, 3))),
    "adaptive_max_pool2d_indices": (
        [(1, 2, 6, 4)],
        lambda x: Fof(x).adaptive_max_pool2d(x, 4, return_indices=True),
    ),
    "adaptive_max_pool2d_none_unbatched": (
        [(2, 5, 3)],
        lambda x: Fof(x).adaptive_max_pool2d(x, (2, None)),
    ),
    "adaptive_max_pool2d_upscale": ([(1, 1, 2, 3)], lambda x: Fof(x).adaptive_max_pool2d(x, 5)),
    "max_unpool2d": (
        [(2, 3, 4, 6)],
        lambda x: Fof(x).max_unpool2d(*Fof(x).max_pool2d(x, 2, return_indices=True), 2),
    ),
    "max_unpool2d_pad_output_size": (
        [(1, 2, 5, 5)],
        lambda x: Fof(x).max_unpool2d(
            *Fof(x).max_pool2d(x, 2, 2, 1, return_indices=True), 2, 2, 1, output_size=(5, 5)
        ),
    ),
    "conv3d": ([(2, 2, 4, 5, 3), (3, 2, 2, 3, 2), (3,)], lambda x, w, b: Fof(x).conv3d(x, w, b)),
    "conv3d_stride_pad_dilation": (
        [(1, 2, 5, 4, 5), (2, 2, 2, 2, 3)],
        lambda x, w: Fof(x).conv3d(x, w, stride=(2, 1, 2), padding=(1, 0, 1), dilation=(2, 1, 1)),
    ),
    "conv3d_groups_unbatched": (
        [(4, 3, 3, 3), (2, 2, 2, 2, 2)],
        lambda x, w: Fof(x).conv3d(x, w, padding=1, groups=2),
    ),
    "conv_transpose3d": (
        [(1, 2, 2, 3, 2), (2, 3, 2, 2, 3), (3,)],
        lambda x, w, b: Fof(x).conv_transpose3d(x, w, b, stride=2, padding=1, output_padding=1),
    ),
    "conv_transpose3d_groups_dilation": (
        [(2, 4, 3, 2, 2), (4, 1, 2, 2, 2)],
        lambda x, w: Fof(x).conv_transpose3d(x, w, stride=(1, 2, 1), groups=2, dilation=(2, 1, 1)),
    ),
    "max_pool3d": ([(2, 2, 4, 4, 6)], lambda x: Fof(x).max_pool3d(x, 2)),
    "max_pool3d_stride_pad_dilation_ceil": (
        [(1, 2, 7, 5, 6)],
        lambda x: Fof(x).max_pool3d(x, 3, 2, 1, (2, 1, 1), ceil_mode=True),
    ),
    "max_pool3d_indices_unbatched": (
        [(2, 5, 4, 4)],
        lambda x: Fof(x).max_pool3d(x, (3, 2, 2), (2, 2, 1), (1, 0, 1), return_indices=True),
    ),
    "avg_pool3d": ([(2, 2, 4, 4, 6)], lambda x: Fof(x).avg_pool3d(x, 2)),
    "avg_pool3d_pad_ceil": (
        [(1, 2, 6, 5, 5)],
        lambda x: Fof(x).avg_pool3d(x, 3, 2, 1, ceil_mode=True),
    ),
    "avg_pool3d_no_count_pad": (
        [(1, 2, 5, 5, 4)],
        lambda x: Fof(x).avg_pool3d(x, (2, 3, 2), 2, (1, 1, 0), True, count_include_pad=False),
    ),
    "avg_pool3d_divisor": (
        [(1, 1, 4, 4, 4)],
        lambda x: Fof(x).avg_pool3d(x, 2, 1, divisor_override=3),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_conv_family_op(name, device):
    shapes, fn = CASES[name]
    helper_test_op(shapes, fn, device=device, atol=1e-5)


def test_errors_name_the_problem(device):
    x = engine.ones(2, 3, 4, 5, device=device)
    with pytest.raises(RuntimeError, match=r"conv1d: expected a 2-D \(C, L\) or 3-D"):
        F.conv1d(x, engine.ones(2, 3, 3, device=device))
    with pytest.raises(RuntimeError, match="3-D weight"):
        F.conv1d(x[0], engine.ones(2, 3, 3, 1, device=device))
    with pytest.raises(ValueError, match="1-tuple"):
        F.max_pool1d(x[0], (2, 2))
    with pytest.raises(RuntimeError, match="indices of its shape"):
        F.max_unpool2d(x, engine.zeros(2, 3, dtype="int64", device=device), 2)


def test_unpool_round_trip_keeps_the_maxima(device):
    x = engine.tensor(np.random.default_rng(0).standard_normal((1, 1, 4, 4)), device=device)
    y, i = F.max_pool2d(x, 2, return_indices=True)
    back = F.max_unpool2d(y, i, 2)
    kept = back.numpy() != 0
    assert kept.sum() == 4
    np.testing.assert_array_equal(back.numpy()[kept], x.numpy()[kept])


def test_unpool_of_overlapping_windows_matches_torch(device):
    """Overlapping windows repeat an index: every copy gets the gradient, as in torch (central
    differences see one copy, so no gradcheck here)."""
    helper_test_op(
        [(1, 2, 5, 5)],
        lambda x: Fof(x).max_unpool2d(
            *Fof(x).max_pool2d(x, 3, 2, 1, return_indices=True), 3, 2, 1, output_size=(5, 5)
        ),
        device=device,
        gradcheck=False,
    )


# The 3-D ops are checked by kernels.geometry's rules, as the 2-D ones: what PyTorch refuses,
# they refuse with one error naming the op and the sizes.
REFUSED_3D = {
    "conv3d C_out not divisible by groups": (
        lambda lib, x: lib.conv3d(x, _w(lib, 3, 1), groups=2),
        "conv3d: .*divisible by groups",
    ),
    "conv3d output too small": (
        lambda lib, x: lib.conv3d(x[:, :, :2], _w(lib, 2, 2)),
        r"conv3d: output size \(0, 3, 3\)",
    ),
    "conv_transpose3d output_padding past stride and dilation": (
        lambda lib, x: lib.conv_transpose3d(x, _w(lib, 2, 1), output_padding=(1, 0, 0)),
        "conv_transpose3d: output_padding",
    ),
    "max_pool3d padding past half the undilated window": (
        lambda lib, x: lib.max_pool3d(x, 3, 1, padding=(0, 2, 0), dilation=2),
        "max_pool3d: pad should be at most half of kernel size",
    ),
    "avg_pool3d padding past half the window": (
        lambda lib, x: lib.avg_pool3d(x, 2, padding=(2, 0, 0)),
        "avg_pool3d: pad should be at most half",
    ),
    "max_pool3d kernel of two sizes": (
        lambda lib, x: lib.max_pool3d(x, (2, 2)),
        "kernel_size must be an int or a 3-tuple",
    ),
}


def _w(lib, c_out, c_in):
    shape = (c_out, c_in, 3, 3, 3)
    return engine.ones(*shape) if lib is F else torch.ones(shape)


@pytest.mark.parametrize("case", list(REFUSED_3D))
def test_3d_ops_refuse_what_pytorch_refuses(case):
    call, message = REFUSED_3D[case]
    x = np.ones((1, 2, 5, 5, 5), np.float32)
    with pytest.raises(RuntimeError):
        call(torch.nn.functional, torch.from_numpy(x))
    with pytest.raises(RuntimeError, match=message):
        call(F, engine.tensor(x))
