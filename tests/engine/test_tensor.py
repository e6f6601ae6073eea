"""Tensor basics: creation and dtypes, attributes, conversion, devices, DLPack, seeding, repr."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from helpers import requires_torch, torch

import engine


# Creation and dtypes --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, dtype",
    [
        (1.5, np.float32),
        ([1.0, 2.0], np.float32),
        ([[1, 2], [3, 4]], np.int64),
        (7, np.int64),
        ([1, 2.5], np.float32),
        (True, np.bool_),
        ([True, False], np.bool_),
        (np.array([1.0, 2.0]), np.float64),
        (np.array([1, 2], dtype=np.int32), np.int32),
        (np.array([1, 2], dtype=np.uint8), np.uint8),
        (np.float64(2.0), np.float64),
    ],
)
def test_tensor_default_dtypes(data, dtype, device):
    t = engine.tensor(data, device=device)
    assert t.dtype == dtype and t.device == device
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))


def test_tensor_dtype_argument_and_names(device):
    assert engine.tensor([1, 2], dtype=engine.float64, device=device).dtype == np.float64
    assert engine.tensor([1.7], dtype="int32", device=device).dtype == np.int32
    assert engine.tensor([1], dtype=np.float16, device=device).dtype == np.float16
    assert engine.float == engine.float32 and engine.long == engine.int64
    with pytest.raises(TypeError, match="unknown dtype 'float128x'"):
        engine.tensor([1], dtype="float128x")


def test_tensor_copies_but_from_numpy_shares():
    a = np.zeros(3, np.float32)
    t, s = engine.tensor(a), engine.from_numpy(a)
    a[0] = 5.0
    assert t.tolist() == [0.0, 0.0, 0.0] and s.tolist() == [5.0, 0.0, 0.0]
    with pytest.raises(TypeError, match="numpy.ndarray"):
        engine.from_numpy([1.0])


def test_tensor_from_tensors_and_tensor_lists(device):
    a = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    b = engine.tensor(a)
    assert not b.requires_grad and b.tolist() == [1.0, 2.0] and b.device == device
    c = engine.tensor([engine.tensor(1.0), engine.tensor(2.0)], device=device)
    assert c.shape == (2,) and c.tolist() == [1.0, 2.0]


@pytest.mark.parametrize("factory", ["zeros", "ones", "empty", "rand", "randn"])
def test_shape_factories_take_tuple_or_varargs(factory, device):
    fn = getattr(engine, factory)
    for t in (fn(2, 3, device=device), fn((2, 3), device=device), fn([2, 3], device=device)):
        assert t.shape == (2, 3) and t.dtype == np.float32 and t.device == device
    t = fn(4, dtype=engine.float64, device=device, requires_grad=True)
    assert t.dtype == np.float64 and t.requires_grad and t.is_leaf
    assert fn(0, 3, device=device).shape == (0, 3)


def test_value_factories(device):
    assert engine.zeros(2, device=device).tolist() == [0.0, 0.0]
    assert engine.ones(2, 1, dtype=engine.int64, device=device).tolist() == [[1], [1]]
    f = engine.full((2, 2), 1.5, device=device)
    assert f.dtype == np.float32 and f.tolist() == [[1.5, 1.5], [1.5, 1.5]]
    assert engine.full((2,), 3, device=device).dtype == np.int64
    assert engine.full((2,), True, device=device).dtype == np.bool_
    e = engine.eye(2, 3, device=device)
    assert e.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]] and e.dtype == np.float32


def test_arange_and_linspace(device):
    a = engine.arange(5, device=device)
    assert a.dtype == np.int64 and a.tolist() == [0, 1, 2, 3, 4]
    assert engine.arange(1, 7, 2, device=device).tolist() == [1, 3, 5]
    b = engine.arange(0, 1, 0.25, device=device)
    assert b.dtype == np.float32 and b.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert engine.arange(3, dtype=engine.float64, device=device).dtype == np.float64
    lin = engine.linspace(0, 1, 5, device=device)
    assert lin.dtype == np.float32 and lin.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_like_factories_keep_shape_dtype_device(device):
    x = engine.ones(2, 3, dtype=engine.float64, device=device)
    for fn in (
        engine.zeros_like,
        engine.ones_like,
        engine.randn_like,
        engine.rand_like,
        engine.empty_like,
    ):
        y = fn(x)
        assert y.shape == (2, 3) and y.dtype == np.float64 and y.device == device
    assert engine.zeros_like(x).tolist() == [[0.0] * 3] * 2
    assert engine.ones_like(x, dtype=engine.int64).dtype == np.int64
    assert engine.full_like(x, 7.0).tolist() == [[7.0] * 3] * 2


def test_random_factories_ranges(device):
    engine.manual_seed(3)
    r = engine.rand(1000, device=device).numpy()
    assert r.min() >= 0.0 and r.max() < 1.0 and 0.45 < r.mean() < 0.55
    n = engine.randn(2000, device=device).numpy()
    assert abs(n.mean()) < 0.1 and 0.9 < n.std() < 1.1
    i = engine.randint(2, 5, (500,), device=device)
    assert i.dtype == np.int64 and set(i.tolist()) == {2, 3, 4}
    assert engine.randint(3, size=(2, 2), device=device).shape == (2, 2)
    p = engine.randperm(6, device=device)
    assert p.dtype == np.int64 and sorted(p.tolist()) == list(range(6))


def test_manual_seed_reproduces_every_draw(device):
    def draws():
        return [
            engine.rand(4, device=device).tolist(),
            engine.randn(2, 2, device=device).tolist(),
            engine.randint(0, 100, (5,), device=device).tolist(),
            engine.randperm(8, device=device).tolist(),
            engine.empty(3, device=device).normal_().tolist(),
            engine.functional.dropout(engine.ones(10, device=device), 0.5).tolist(),
        ]

    engine.manual_seed(1234)
    first = draws()
    engine.manual_seed(1234)
    assert draws() == first
    engine.manual_seed(4321)
    assert draws() != first


def test_rng_state_roundtrip():
    engine.manual_seed(5)
    state = engine.random.get_rng_state()
    a = engine.randn(3).tolist()
    engine.random.set_rng_state(state)
    assert engine.randn(3).tolist() == a


# Attributes and conversion --------------------------------------------------------------------
def test_attributes(device):
    x = engine.zeros(2, 3, 4, device=device)
    assert x.shape == (2, 3, 4) and x.ndim == 3 and x.dim() == 3
    assert x.size() == (2, 3, 4) and x.size(1) == 3 and x.numel() == 24 and len(x) == 2
    assert x.dtype == np.float32 and x.grad is None and not x.requires_grad and x.is_leaf
    assert isinstance(x.device, engine.Device) and str(x.device) in ("cpu", "cuda:0")
    assert x.is_cuda == (device == "cuda")
    assert engine.zeros(2, 3, device=device).T.shape == (3, 2)


def test_numpy_item_tolist(device):
    x = engine.tensor([[1.0, 2.0]], device=device)
    a = x.numpy()
    assert type(a) is np.ndarray and a.tolist() == [[1.0, 2.0]]
    assert engine.tensor([3.5], device=device).item() == 3.5
    assert isinstance(engine.tensor(2, device=device).item(), int)
    assert float(engine.tensor(2.5, device=device)) == 2.5
    assert int(engine.tensor(7, device=device)) == 7
    with pytest.raises(ValueError, match=r"one-element.*\(1, 2\)"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)


def test_to_dtype_and_casts(device):
    x = engine.tensor([1.7, -2.2], device=device)
    assert x.double().dtype == np.float64 and x.to(engine.float64).dtype == np.float64
    assert x.long().tolist() == [1, -2] and x.int().dtype == np.int32
    assert x.to(dtype=engine.float16).dtype == np.float16 and x.half().dtype == np.float16
    assert x.double().float().dtype == np.float32
    assert x.bool().tolist() == [True, True]
    assert x.to(x) is x


def test_cast_is_differentiable(device):
    x = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    (x.double() * 3).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [3.0, 3.0]


def test_detach_and_data_share_memory(device):
    x = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = x * 2
    d = y.detach()
    assert d.grad_fn is None and not d.requires_grad
    assert d.array is y.array
    with engine.no_grad():
        x.data.mul_(10)  # .data writes through, outside the version counter
    assert x.tolist() == [10.0, 20.0]


def test_clone_is_a_differentiable_copy(device):
    x = engine.tensor([1.0, 2.0], device=device, requires_grad=True)
    c = x.clone()
    assert c.array is not x.array
    (c * c).sum().backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_iteration_and_len(device):
    x = engine.arange(6, device=device).reshape(3, 2)
    assert [r.tolist() for r in x] == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(TypeError):
        len(engine.tensor(1.0, device=device))


def test_setitem(device):
    x = engine.zeros(3, 3, device=device)
    x[0] = 1.0
    x[1:, 1] = engine.tensor([2.0, 3.0], device=device)
    x[x == 0] = -1.0
    assert x.tolist() == [[1.0, 1.0, 1.0], [-1.0, 2.0, -1.0], [-1.0, 3.0, -1.0]]


# repr -----------------------------------------------------------------------------------------
def test_repr_shows_values_device_and_grad_fn(device):
    x = engine.tensor([1.0, 2.5], device=device, requires_grad=True)
    r = repr(x)
    assert r.startswith("tensor([1. , 2.5]") and "requires_grad=True" in r
    assert ("device='cuda:0'" in r) == (device == "cuda")
    assert "grad_fn=<MulBackward>" in repr(x * 2)
    assert repr(engine.tensor([1, 2], device=device)).startswith("tensor([1, 2]")
    assert "dtype=float64" in repr(engine.zeros(1, dtype=engine.float64, device=device))
    assert "dtype" not in repr(engine.zeros(1, device=device))
    assert repr(engine.tensor(3.0, device=device)).startswith("tensor(3.")
    assert len(repr(engine.zeros(10_000, device=device))) < 300  # summarised


# Devices --------------------------------------------------------------------------------------
def test_device_objects():
    assert engine.device("cpu") == "cpu" and str(engine.device("cpu")) == "cpu"
    assert engine.Device("cuda:1") == "cuda:1" and engine.Device("cuda").index == 0
    assert engine.Device("cuda") != "cpu" and engine.device("cpu").xp is np
    with pytest.raises(ValueError, match="tpu"):
        engine.device("tpu")
    with pytest.raises(ValueError, match="cuda:x"):
        engine.Device("cuda:x")


@pytest.fixture
def no_gpu(monkeypatch):
    """Pretend CUDA is unavailable (as on a machine without a GPU or without CuPy)."""

    def missing():
        raise ImportError("No module named 'cupy'")

    engine.cuda.reset()
    monkeypatch.setattr(sys.modules["engine.device"], "cupy", missing)
    yield
    monkeypatch.undo()
    engine.cuda.reset()


def test_cuda_unavailable_gives_a_clear_error(no_gpu):
    assert not engine.cuda.is_available() and engine.cuda.device_count() == 0
    for make in (
        lambda: engine.device("cuda"),
        lambda: engine.zeros(2, device="cuda"),
        lambda: engine.tensor([1.0], device="cuda:0"),
        lambda: engine.ones(2).cuda(),
        lambda: engine.ones(2).to("cuda"),
    ):
        with pytest.raises(RuntimeError, match="CUDA device requested but not available"):
            make()


def test_cuda_available_when_cupy_answers_and_not_when_the_driver_fails(monkeypatch):
    class Runtime:
        count = 0

        def getDeviceCount(self):
            if self.count is None:
                raise RuntimeError("cudaErrorInsufficientDriver")
            return self.count

    class FakeCupy:
        __version__ = "14.2.0"

        class cuda:
            runtime = Runtime()

    engine.cuda.reset()
    monkeypatch.setattr(sys.modules["engine.device"], "cupy", lambda: FakeCupy)
    try:
        FakeCupy.cuda.runtime.count = None  # CuPy imports, but no driver answers
        assert not engine.cuda.is_available()
        with pytest.raises(RuntimeError, match="no usable GPU.*cudaErrorInsufficientDriver"):
            engine.cuda.require(0)
        engine.cuda.reset()
        FakeCupy.cuda.runtime.count = 2
        assert engine.cuda.is_available() and engine.cuda.device_count() == 2
        with pytest.raises(RuntimeError, match="cuda:5.*only 2"):
            engine.cuda.require(5)
        engine.cuda.reset()
        FakeCupy.__version__ = "13.6.0"  # no CUDA wheels, no RawModule disk cache: refused
        with pytest.raises(RuntimeError, match=r"CuPy 13.6.0 is older than 14.0.*cuda12"):
            engine.cuda.require(0)
    finally:
        monkeypatch.undo()
        engine.cuda.reset()


def test_mixing_devices_names_both(device):
    if device == "cpu":
        pytest.skip("mixing needs a second device: runs in the cuda case")
    a, b = engine.ones(2, device="cpu"), engine.ones(2, device=device)
    for op in (lambda: a + b, lambda: b * a, lambda: engine.cat([a, b]), lambda: a @ b):
        with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
            op()
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        _ = a < b
    with pytest.raises(RuntimeError, match=r"cpu.*cuda:0|cuda:0.*cpu"):
        a.add_(b)


def test_moving_between_devices_keeps_values_and_gradients(device):
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(device)
    assert y.device == device and y.tolist() == [1.0, 2.0]
    (y * y).sum().backward()
    assert x.grad.device == "cpu" and x.grad.tolist() == [2.0, 4.0]
    back = engine.ones(2, device=device).cpu()
    assert back.device == "cpu" and isinstance(back.array, np.ndarray)


# DLPack ---------------------------------------------------------------------------------------
def test_dlpack_with_numpy():
    x = engine.arange(6, dtype=engine.float32).reshape(2, 3)
    a = np.from_dlpack(x)
    assert a.shape == (2, 3) and np.shares_memory(a, x.array)
    src = np.arange(4.0)
    t = engine.from_dlpack(src)
    src[0] = 9.0
    assert t.device == "cpu" and t.dtype == np.float64 and t.tolist() == [9.0, 1.0, 2.0, 3.0]


@requires_torch
def test_dlpack_with_torch():
    x = engine.arange(6, dtype=engine.float32).reshape(2, 3)
    tt = torch.from_dlpack(x)
    assert tt.shape == (2, 3) and tt.dtype == torch.float32
    tt[0, 0] = 42.0  # shared memory, no copy
    assert x.tolist()[0][0] == 42.0
    src = torch.arange(4, dtype=torch.float64)
    t = engine.from_dlpack(src)
    src[1] = -1.0
    assert t.dtype == np.float64 and t.tolist() == [0.0, -1.0, 2.0, 3.0]


def test_dlpack_on_cuda_stays_on_the_device(device):
    if device != "cuda":
        pytest.skip("cuda arrays only: the cpu case is test_dlpack_with_numpy/torch")
    cp = sys.modules["cupy"]
    x = engine.arange(4, dtype=engine.float32, device=device)
    c = cp.from_dlpack(x)
    x.fill_(5.0)  # shared memory, no copy
    assert cp.asnumpy(c).tolist() == [5.0, 5.0, 5.0, 5.0]
    t = engine.from_dlpack(cp.arange(3, dtype=cp.float32))
    assert t.device == device and t.tolist() == [0.0, 1.0, 2.0]


def test_methods_are_defined_in_the_class():
    """Tensor's op methods are class attributes a reader and an IDE see: the ops themselves."""
    for name in ("exp", "sum", "reshape", "matmul", "clamp", "view_as", "__add__", "__getitem__"):
        assert name in vars(engine.Tensor), name
    assert engine.Tensor.exp is engine.exp and engine.Tensor.sum is engine.sum


def test_tape_and_ops_do_not_import_the_tensor_module():
    """The imports point one way: grad_mode <- tensorbase <- autograd <- ops <- tensor."""
    import ast
    from pathlib import Path

    root = Path(engine.__file__).parent
    below = ["grad_mode.py", "tensorbase.py", "autograd.py"]
    below += [f"ops/{m}.py" for m in ("__init__", "math", "shape", "reduction", "linalg", "norm")]
    for rel in below:
        tree = ast.parse((root / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[-1] != "tensor", rel
                if node.module is None:
                    assert "tensor" not in [a.name for a in node.names], rel


def test_outputs_keep_the_tensor_class(device):
    x = engine.tensor([[1.0, -2.0]], device=device, requires_grad=True)
    y = engine.where(x > 0, x, 0.0).amax(1)
    assert type(y) is engine.Tensor and type(x[0]) is engine.Tensor
    y.sum().backward()
    assert type(x.grad) is engine.Tensor


def test_numpy_of_a_tensor_that_requires_grad_cannot_be_written_into():
    """Writing into it would change what the tape recorded: silently wrong gradients."""
    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    z = y.sum()
    with pytest.raises(ValueError, match="read-only"):
        y.numpy()[:] = 0
    z.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp([1.0, 2.0]), rtol=1e-6)
    d = y.detach().numpy()
    d[:] = 0  # the detached array is the writable one, as in PyTorch
    assert x.numpy().tolist() == [1.0, 2.0]


@pytest.mark.parametrize("bad", ["abc", ["a", "b"], b"xy", {"a": 1}, None, object()])
def test_tensor_rejects_non_numeric_data(bad):
    with pytest.raises(TypeError, match="numbers"):
        engine.tensor(bad)
