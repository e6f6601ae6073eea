"""`python -m benchmarks.call_depth`: the conv path's depth may only go down (issue 16)."""

from __future__ import annotations

import engine
import engine.functional as F
import layers
from benchmarks import call_depth

# The project frames from the call to the kernel's entry, as measured now: the layer adds
# Module.__call__ and its forward, the op is its wrapper, Function.__call__ and the Function's
# forward. Lower these when a change cuts a frame.
LAYER_TO_KERNEL = 6
OP_TO_KERNEL = 4
# The whole deepest stack of project frames, kernel helpers included, and the files on it. The
# op's count is where Chainer's F.convolution_2d starts (about 6 frames in 4 files, issue 16).
OP_FRAMES, OP_FILES = 6, 4
LAYER_FRAMES = 8
# One backward of the layer's output sum: the tape's walk, the conv's backward, its input
# gradient's Function and kernel (a stride-1 conv of the flipped weight) and the im2col fill.
BACKWARD_FRAMES = 10


def _frames_to_kernel(c: call_depth._Counter) -> int:
    return next(i for i, f in enumerate(c.deepest_own, 1) if f.startswith("kernels/"))


def test_the_conv_forward_reaches_its_kernel_in_few_frames():
    conv = layers.Conv2d(3, 4, 3, padding=1)
    x = engine.randn(2, 3, 8, 8, requires_grad=True)
    conv(x)  # warm-up: imports and workspace
    layer = call_depth.measure(lambda: conv(x))
    op = call_depth.measure(lambda: F.conv2d(x, conv.weight, conv.bias, 1, 1))
    assert _frames_to_kernel(layer) <= LAYER_TO_KERNEL, layer.deepest_own
    assert _frames_to_kernel(op) <= OP_TO_KERNEL, op.deepest_own
    assert op.max_own_depth <= OP_FRAMES, op.deepest_own
    assert len({f.split(":")[0] for f in op.deepest_own}) <= OP_FILES, op.deepest_own
    assert layer.max_own_depth <= LAYER_FRAMES, layer.deepest_own
    loss = conv(x).sum()
    back = call_depth.measure(lambda: loss.backward())
    assert back.max_own_depth <= BACKWARD_FRAMES, back.deepest_own
    assert op.deepest_own[:3] == [
        "engine/ops/conv.py:conv2d",
        "engine/autograd.py:__call__",
        "engine/ops/conv.py:forward",
    ]


def test_the_table_has_the_three_rows(capsys):
    call_depth.main([])
    out = capsys.readouterr().out
    for row in ("forward", "backward", "F.conv2d"):
        assert any(line.startswith(row) for line in out.splitlines()), out
