"""float16/bfloat16 parameters through every optimizer, on both devices: the update is computed in
float32 with float32 state (``kernels.launch.OPMATH``, PyTorch's opmath_type) and the parameter
rounded once per step, so a low-precision run follows the float32 run from the same rounded
start within the dtype's rounding per step."""

from __future__ import annotations

import numpy as np
import pytest

import engine
import optimizers

MAKERS = {
    "sgd": lambda ps: optimizers.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda ps: optimizers.Adam(ps, lr=0.01, weight_decay=0.01, amsgrad=True),
    "adamw": lambda ps: optimizers.AdamW(ps, lr=0.01),
    "rmsprop": lambda ps: optimizers.RMSprop(ps, lr=0.01, momentum=0.5, centered=True),
    "adagrad": lambda ps: optimizers.Adagrad(ps, lr=0.1),
    "adadelta": lambda ps: optimizers.Adadelta(ps, lr=1.0),
}
UNIT = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
STEPS = 3


def _run(device, dtype, name, start, grads):
    ps = [engine.tensor(a, dtype=dtype, device=device, requires_grad=True) for a in start]
    opt = MAKERS[name](ps)
    for step in range(STEPS):
        for p, g in zip(ps, grads[step], strict=True):
            p.grad = engine.tensor(g, dtype=dtype, device=device)
        opt.step()
    return ps, opt


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", MAKERS)
def test_low_precision_parameters_follow_the_float32_run(device, name, dtype):
    if device == "cuda" and dtype == "bfloat16":
        pytest.skip(
            "the CuPy stand-in refuses bfloat16 arrays (its kernels are tested on the host)"
        )
    low = engine.dtypes.as_dtype(dtype)
    rng = np.random.default_rng(0)
    shapes = [(3, 4), (5,), (2, 3, 3)]
    # Values and gradients representable in the low dtype, so both runs start from the same.
    start = [rng.standard_normal(s).astype(low).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(low).astype(np.float32) for s in shapes]
             for _ in range(STEPS)]  # fmt: skip
    ps, opt = _run(device, dtype, name, start, grads)
    ref, ref_opt = _run("cpu", "float32", name, start, grads)
    u = UNIT[dtype]
    for p, r, s in zip(ps, ref, start, strict=True):
        assert str(p.dtype) == dtype
        # One rounding per step, each within u of the parameter's size, carried by later steps
        # (2x for the rounding of a gradient-dependent state in the steps after).
        scale = max(np.abs(s).max(), np.abs(r.numpy()).max())
        np.testing.assert_allclose(
            p.to("cpu").to("float32").numpy(), r.numpy(), rtol=0, atol=2 * STEPS * u * scale
        )
    for p in ps:
        for key, value in opt.state[p].items():
            if isinstance(value, engine.Tensor):
                assert value.dtype == np.float32, key  # the state is float32
    state = opt.state_dict()  # and survives a round trip as float32
    opt.load_state_dict(state)
    for p in ps:
        assert all(v.dtype == np.float32 for v in opt.state[p].values()
                   if isinstance(v, engine.Tensor))  # fmt: skip
