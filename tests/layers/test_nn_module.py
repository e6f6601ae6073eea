"""Module/Parameter mechanics: registration, traversal, state_dict, to(), freezing, containers."""

from __future__ import annotations

import copy
import inspect
import pickle
from collections import OrderedDict

import numpy as np
import pytest

import engine
import layers as nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.norm = nn.BatchNorm1d(4)
        self.scale = nn.Parameter(engine.ones(4))
        self.register_buffer("steps", engine.zeros((), dtype="int64"))
        self.register_buffer("cache", engine.zeros(2), persistent=False)

    def forward(self, x):
        return self.norm(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Linear(4, 2, bias=False)

    def forward(self, x):
        return self.head(self.block(x).relu())


# Registration and traversal ---------------------------------------------------------------
def test_parameter_is_a_leaf_tensor_requiring_grad():
    p = nn.Parameter(engine.zeros(2, 3))
    assert isinstance(p, engine.Tensor) and p.is_leaf and p.requires_grad
    assert p.shape == (2, 3) and p.dtype == np.float32
    assert not nn.Parameter(engine.zeros(2), requires_grad=False).requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    out = p * 2.0  # ops on a Parameter give plain Tensors
    assert type(out) is engine.Tensor and out.grad_fn is not None


def test_parameter_shares_the_data_it_wraps():
    t = engine.zeros(3)
    p = nn.Parameter(t)
    with engine.no_grad():
        p.add_(1.0)
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0, 1.0])


def test_named_parameters_follow_assignment_order_with_dotted_names():
    net = Net()
    names = [n for n, _ in net.named_parameters()]
    assert names == [
        "block.scale",
        "block.fc.weight",
        "block.fc.bias",
        "block.norm.weight",
        "block.norm.bias",
        "head.weight",
    ]
    assert len(list(net.parameters())) == 6
    assert [n for n, _ in net.block.named_parameters(recurse=False)] == ["scale"]
    assert [n for n, _ in net.named_buffers()] == [
        "block.steps",
        "block.cache",
        "block.norm.running_mean",
        "block.norm.running_var",
        "block.norm.num_batches_tracked",
    ]
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc", "block.norm", "head"]
    assert net.get_parameter("block.fc.bias") is net.block.fc.bias
    assert net.get_submodule("block.norm") is net.block.norm


def test_shared_parameters_and_modules_are_listed_once():
    shared = nn.Linear(2, 2)
    seq = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias"]
    assert len(list(seq.modules())) == 3  # Sequential, Linear, ReLU
    tied = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    tied[1].weight = tied[0].weight
    assert [n for n, _ in tied.named_parameters()] == ["0.weight", "0.bias", "1.bias"]
    assert len(list(tied.named_parameters(remove_duplicate=False))) == 4


def test_reassignment_moves_between_registries_and_none_placeholders():
    m = nn.Module()
    m.register_buffer("x", engine.zeros(1))
    m.x = nn.Linear(1, 1)  # a buffer name reused for a module
    assert "x" not in m._buffers and "x" in m._modules
    m.y = nn.Linear(1, 1)
    m.y = nn.Parameter(engine.zeros(1))  # and a module name for a parameter
    assert "y" not in m._modules and m.y.shape == (1,)
    del m.y
    m.register_parameter("b", None)
    assert m.b is None and [n for n, _ in m.named_parameters()] == ["x.weight", "x.bias"]
    del m.x
    assert not hasattr(m, "x")
    with pytest.raises(TypeError, match="Parameter or None"):
        m.b = engine.zeros(1)  # a plain tensor cannot replace a parameter
    m.register_buffer("buf", engine.zeros(1))
    with pytest.raises(TypeError, match="buffer 'buf'"):
        m.buf = 3.0


def test_assignment_before_init_and_bad_names_raise():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(engine.zeros(1))

    with pytest.raises(AttributeError, match="before Module.__init__"):
        Broken()
    m = nn.Module()
    with pytest.raises(KeyError, match="contain"):
        m.register_buffer("a.b", engine.zeros(1))
    with pytest.raises(AttributeError, match="has no attribute 'missing'"):
        m.missing  # noqa: B018


def test_train_eval_propagate_and_apply_visits_children_first():
    net = Net()
    assert net.training and net.block.norm.training
    net.eval()
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "BatchNorm1d", "Block", "Linear", "Net"]


def test_requires_grad_false_freezes_and_zero_grad(device):
    net = Net().to(device)
    x = engine.randn(5, 3, device=device)
    net.block.requires_grad_(False)
    net(x).sum().backward()
    assert all(p.grad is None for p in net.block.parameters())
    assert net.head.weight.grad is not None
    net.requires_grad_(True)
    net(x).sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.numpy().any() for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_hooks_can_observe_and_be_removed():
    lin = nn.Linear(2, 2)
    seen = []
    handle = lin.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    pre = lin.register_forward_pre_hook(lambda m, args: (args[0] * 0.0,))
    out = lin(engine.ones(3, 2))
    np.testing.assert_allclose(out.numpy(), np.broadcast_to(lin.bias.numpy(), (3, 2)))
    handle.remove()
    pre.remove()
    lin(engine.ones(1, 2))
    assert seen == [(3, 2)]


def test_module_call_is_forward_without_hooks_and_a_function_on_the_class():
    # Module.__call__ hands back the bound forward when no hook is registered (no frame of
    # its own); looked up on the class, through super() or by inspect it is a plain function.
    lin = nn.Linear(2, 2)
    x = engine.ones(3, 2)
    assert lin.__call__ == lin.forward
    np.testing.assert_allclose(nn.Module.__call__(lin, x).numpy(), lin(x).numpy())
    assert str(inspect.signature(lin)) == "(*args, **kwargs)"

    class Doubled(nn.Linear):
        def __call__(self, x):
            return super().__call__(x) * 2.0

    d = Doubled(2, 2)
    np.testing.assert_allclose(d(x).numpy(), 2.0 * d.forward(x).numpy())
    seen = []
    d.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    d(x)
    assert seen == [(3, 2)]
    assert lin.__call__ == lin.forward  # a hook on one module leaves the others plain


# state_dict -------------------------------------------------------------------------------
def test_state_dict_keys_values_and_round_trip(device):
    engine.manual_seed(0)
    src, dst = Net().to(device), Net().to(device)
    sd = src.state_dict()
    assert list(sd) == [
        "block.scale",
        "block.steps",
        "block.fc.weight",
        "block.fc.bias",
        "block.norm.weight",
        "block.norm.bias",
        "block.norm.running_mean",
        "block.norm.running_var",
        "block.norm.num_batches_tracked",
        "head.weight",
    ]  # non-persistent 'cache' is left out
    assert all(not t.requires_grad for t in sd.values())
    assert sd["block.fc.weight"].array is src.block.fc.weight.array  # detached, shared
    weight = dst.block.fc.weight
    result = dst.load_state_dict(sd)
    assert result == ([], []) and result.missing_keys == [] and result.unexpected_keys == []
    assert dst.block.fc.weight is weight and weight.requires_grad  # identity kept
    assert weight.array is not src.block.fc.weight.array  # values copied, not aliased
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    x = engine.randn(4, 3, device=device)
    src.eval(), dst.eval()
    np.testing.assert_array_equal(src(x).numpy(), dst(x).numpy())


def test_load_state_dict_strict_names_missing_unexpected_and_shapes():
    net = Net()
    sd = net.state_dict()
    del sd["head.weight"]
    sd["head.extra"] = engine.zeros(1)
    with pytest.raises(RuntimeError) as err:
        net.load_state_dict(sd)
    msg = str(err.value)
    assert 'Missing key(s) in state_dict: "head.weight"' in msg
    assert 'Unexpected key(s) in state_dict: "head.extra"' in msg
    missing, unexpected = net.load_state_dict(sd, strict=False)
    assert missing == ["head.weight"] and unexpected == ["head.extra"]

    bad = Net().state_dict()
    bad["block.fc.weight"] = engine.zeros(5, 3)
    before = net.block.fc.bias.numpy().copy()
    shapes = r"size mismatch for block.fc.weight.*\(5, 3\).*\(4, 3\)"
    with pytest.raises(RuntimeError, match=shapes):
        net.load_state_dict(bad, strict=False)
    np.testing.assert_array_equal(net.block.fc.bias.numpy(), before)  # nothing half-loaded


def test_load_state_dict_accepts_numpy_arrays_and_casts_dtype():
    lin = nn.Linear(2, 2)
    lin.load_state_dict({"weight": np.eye(2), "bias": np.array([1.0, 2.0])})
    assert lin.weight.dtype == np.float32
    np.testing.assert_array_equal(lin.weight.numpy(), np.eye(2))


def test_state_dict_survives_engine_save_and_load(tmp_path):
    net = Net()
    net(engine.randn(4, 3))  # moves the running statistics
    engine.save(net.state_dict(), tmp_path / "net.npz")
    other = Net()
    other.load_state_dict(engine.load(tmp_path / "net.npz"))
    for (k, a), b in zip(net.state_dict().items(), other.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
        assert a.dtype == b.dtype


def test_deepcopy_and_pickle_give_independent_modules():
    net = Net()
    clone = copy.deepcopy(net)
    assert isinstance(clone.head.weight, nn.Parameter) and clone.head.weight.requires_grad
    assert clone.head.weight is not net.head.weight
    with engine.no_grad():
        clone.head.weight.fill_(0.0)
    assert net.head.weight.numpy().any()
    restored = pickle.loads(pickle.dumps(net))
    np.testing.assert_array_equal(restored.block.fc.weight.numpy(), net.block.fc.weight.numpy())


# to() -------------------------------------------------------------------------------------
def test_to_dtype_keeps_parameter_identity_and_integer_buffers():
    net = Net()
    params = list(net.parameters())
    net(engine.randn(4, 3)).sum().backward()
    assert net.double() is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in params)
    assert net.block.norm.running_mean.dtype == np.float64
    assert net.block.norm.num_batches_tracked.dtype == np.int64
    assert net(engine.randn(2, 3, dtype="float64")).dtype == np.float64
    net.float()
    assert all(p.dtype == np.float32 for p in params)
    with pytest.raises(TypeError, match="floating point"):
        net.to("int64")


def test_to_device_moves_params_buffers_and_grads_in_place(device):
    net = Net()
    params = list(net.parameters())
    net(engine.randn(4, 3)).sum().backward()
    values = [p.numpy().copy() for p in params]
    net.to(device)
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    for p, v in zip(params, values, strict=True):
        assert p.device == device and p.grad.device == device and p.requires_grad
        np.testing.assert_array_equal(p.numpy(), v)
    assert all(b.device == device for b in net.buffers())
    out = net(engine.randn(2, 3, device=device))
    assert out.device == device
    net.cpu()
    assert all(p.device == "cpu" for p in net.parameters())


def test_repr_is_a_readable_tree():
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Sequential(nn.Flatten(), nn.Linear(8, 2, bias=False)),
        nn.Dropout(0.25),
    )
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
        "  (1): ReLU(inplace=True)\n"
        "  (2): Sequential(\n"
        "    (0): Flatten(start_dim=1, end_dim=-1)\n"
        "    (1): Linear(in_features=8, out_features=2, bias=False)\n"
        "  )\n"
        "  (3): Dropout(p=0.25, inplace=False)\n"
        ")"
    )
    assert repr(Block()).startswith("Block(\n  (fc): Linear(")


# Containers -------------------------------------------------------------------------------
def test_sequential_indexing_slicing_append_and_delete():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b)
    seq.append(c)
    assert len(seq) == 3 and seq[0] is a and seq[-1] is c and list(seq) == [a, b, c]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and list(head) == [a, b]
    assert head(engine.ones(4, 2)).shape == (4, 3)
    assert seq(engine.ones(4, 2)).shape == (4, 1)
    del seq[1]
    assert list(seq) == [a, c] and [n for n, _ in seq.named_children()] == ["0", "1"]
    seq[1] = b
    assert seq[1] is b
    with pytest.raises(IndexError, match="out of range"):
        seq[5]  # noqa: B018
    named = nn.Sequential(OrderedDict(enc=a, act=b))
    assert [n for n, _ in named.named_parameters()] == ["enc.weight", "enc.bias"]


def test_module_list_and_dict_register_their_members():
    blocks = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    blocks.append(nn.Linear(2, 1))
    blocks += [nn.ReLU()]
    assert len(blocks) == 5 and isinstance(blocks[-1], nn.ReLU)
    assert len(list(blocks.parameters())) == 8
    assert [n for n, _ in blocks.named_parameters()][:2] == ["0.weight", "0.bias"]
    assert isinstance(blocks[1:3], nn.ModuleList) and len(blocks[1:3]) == 2
    with pytest.raises(TypeError, match="iterable"):
        blocks.extend(nn.Linear(1, 1))

    heads = nn.ModuleDict({"cls": nn.Linear(4, 3), "box": nn.Linear(4, 2)})
    heads["extra"] = nn.Identity()
    assert list(heads) == ["cls", "box", "extra"] and "box" in heads
    assert [n for n, _ in heads.named_parameters()] == [
        "cls.weight",
        "cls.bias",
        "box.weight",
        "box.bias",
    ]
    heads.pop("box")
    assert list(heads.keys()) == ["cls", "extra"]


@pytest.mark.parametrize("first", ["layers", "regularizers"])
def test_layers_and_regularizers_import_in_either_order(first):
    import subprocess
    import sys
    from pathlib import Path

    code = f"import {first}, layers, regularizers; assert layers.Dropout is regularizers.Dropout"
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)


def test_repr_and_state_dict_keys_match_torch(torch):
    def build(m):
        return m.Sequential(
            m.Conv2d(1, 4, 3, padding="same", bias=False),
            m.BatchNorm2d(4),
            m.LeakyReLU(0.2),
            m.MaxPool2d(2),
            m.Dropout2d(0.1),
            m.ConvTranspose2d(4, 2, 4, 2, 1),
            m.GroupNorm(1, 2),
            m.Upsample(scale_factor=2),
            m.AvgPool2d(2),
            m.Flatten(),
            m.Linear(32, 8),
            m.LayerNorm(8),
            m.GELU(),
            m.Dropout(0.5),
            m.Unflatten(1, (2, 4)),
            m.Softmax(dim=-1),
            m.ModuleList([m.Embedding(5, 3, padding_idx=0), m.Identity()]),
            m.ModuleDict({"loss": m.CrossEntropyLoss(label_smoothing=0.1)}),
            m.InstanceNorm2d(3),
            m.ReflectionPad2d(1),
            m.ZeroPad2d((1, 0, 2, 3)),
            m.ConstantPad2d(1, 0.5),
            m.ELU(),
            m.Softplus(),
            m.Hardtanh(),
            m.Tanh(),
            m.Sigmoid(),
        )

    ours, theirs = build(nn), build(torch.nn)
    assert repr(ours) == repr(theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    tied, tied_torch = nn.Sequential(), torch.nn.Sequential()
    for seq, m in ((tied, nn), (tied_torch, torch.nn)):
        shared = m.Linear(2, 2)
        seq.append(shared).append(m.ReLU()).append(shared)
    assert list(tied.state_dict()) == list(tied_torch.state_dict())  # tied weights under each name
    assert len(list(tied.parameters())) == 2


def test_module_and_optimizer_zero_grad_agree_with_torch():
    """Both default to set_to_none=True; set_to_none=False zeros the same array in place."""
    import optimizers

    model = nn.Linear(3, 2)
    opt = optimizers.SGD(model.parameters(), lr=0.1)
    for zero_grad in (model.zero_grad, opt.zero_grad):
        model(engine.ones(4, 3)).sum().backward()
        kept = model.weight.grad.array
        zero_grad(set_to_none=False)
        assert model.weight.grad.array is kept and not kept.any()
        zero_grad()
        assert model.weight.grad is None and model.bias.grad is None
