"""`python -m benchmarks.call_depth`: the conv path's depth may only go down (issue 16)."""

from __future__ import annotations

import os

import engine
import engine.functional as F
import layers
from benchmarks import call_depth

KERNEL = "kernels/cpu.py:conv2d_forward"
# The project frames from the call to the kernel's entry, as measured now: the layer adds its
# forward (a module without hooks is called with no frame of its own: Module.__call__ hands
# back the bound forward), the op is its wrapper, Function.__call__ and the Function's forward.
# Lower these when a change cuts a frame.
LAYER_TO_KERNEL = 5
OP_TO_KERNEL = 4
# The whole deepest stack of project frames, kernel helpers included, and the files on it (the
# first deepest stack reached). Issue 16's goal for the layer: at most 6 frames in 4 files;
# the op's count is where Chainer's F.convolution_2d starts (about 6 frames in 4 files).
LAYER_FRAMES, LAYER_FILES = 6, 4
OP_FRAMES, OP_FILES = 5, 3
# One backward of the layer's output sum: the tape's walk, the conv's backward, its input
# gradient's Function and kernel (a stride-1 conv of the flipped weight) and the im2col fill.
BACKWARD_FRAMES = 9


def _files(c: call_depth._Counter) -> int:
    return len({f.split(":")[0] for f in c.deepest_own})


def test_the_conv_forward_reaches_its_kernel_in_few_frames():
    conv = layers.Conv2d(3, 4, 3, padding=1)
    x = engine.randn(2, 3, 8, 8, requires_grad=True)
    conv(x)  # warm-up: imports and workspace
    layer = call_depth.measure(lambda: conv(x))
    op = call_depth.measure(lambda: F.conv2d(x, conv.weight, conv.bias, 1, 1))
    assert layer.entered[KERNEL] <= LAYER_TO_KERNEL, layer.entered
    assert op.entered[KERNEL] <= OP_TO_KERNEL, op.entered
    assert op.max_own_depth <= OP_FRAMES, op.deepest_own
    assert _files(op) <= OP_FILES, op.deepest_own
    assert layer.max_own_depth <= LAYER_FRAMES, layer.deepest_own
    assert _files(layer) <= LAYER_FILES, layer.deepest_own
    assert layer.deepest_own[0] == "layers/conv.py:forward", layer.deepest_own
    loss = conv(x).sum()
    back = call_depth.measure(lambda: loss.backward())
    assert back.max_own_depth <= BACKWARD_FRAMES, back.deepest_own
    assert op.deepest_own[:3] == [
        "engine/ops/conv.py:conv2d",
        "engine/autograd.py:__call__",
        "engine/ops/conv.py:forward",
    ]


def test_a_hooked_layer_still_runs_its_hooks_around_forward():
    # The price of a hook is the one frame of layers/module.py the plain call saves.
    conv = layers.Conv2d(3, 4, 3, padding=1)
    x = engine.randn(2, 3, 8, 8)
    conv.register_forward_hook(lambda m, args, out: None)
    hooked = call_depth.measure(lambda: conv(x))
    assert hooked.deepest_own[:2] == ["layers/module.py:_call_with_hooks", "layers/conv.py:forward"]


def test_the_table_has_the_three_rows(capsys):
    call_depth.main([])
    out = capsys.readouterr().out
    for row in ("forward", "backward", "F.conv2d"):
        assert any(line.startswith(row) for line in out.splitlines()), out


def test_installed_packages_are_not_project_frames_even_inside_the_checkout(monkeypatch):
    # `make` puts the virtualenv in the checkout (.venv/): CI counted NumPy's wrappers there
    # as project frames, one frame past the bound above.
    monkeypatch.setattr(call_depth, "_INSTALLED", (os.path.join(call_depth.ROOT, ".venv", ""),))
    assert not call_depth._is_project(os.path.join(call_depth.ROOT, ".venv", "lib", "numpy.py"))
    assert call_depth._is_project(os.path.join(call_depth.ROOT, "engine", "autograd.py"))
