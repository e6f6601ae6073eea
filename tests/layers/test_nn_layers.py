"""Each layer against its torch.nn twin with the same weights: outputs, input and parameter
gradients; plus float64 central-difference checks that run without torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from nn_oracle import compare_module

import engine
import layers as nn


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _randomise(module, seed=0):
    """Non-trivial weights for the torch twin (norm layers start at ones/zeros)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * 2 - 1)
    return module


LAYERS = {
    "linear": (lambda m: m.Linear(5, 3), [(4, 5)]),
    "linear_3d_nobias": (lambda m: m.Linear(5, 3, bias=False), [(2, 4, 5)]),
    "conv": (lambda m: m.Conv2d(3, 4, 3), [(2, 3, 7, 7)]),
    "conv_stride_pad_dilation": (
        lambda m: m.Conv2d(2, 4, (3, 2), stride=2, padding=(1, 2), dilation=(2, 1)),
        [(2, 2, 9, 8)],
    ),
    "conv_groups": (lambda m: m.Conv2d(4, 6, 3, padding=1, groups=2), [(2, 4, 5, 5)]),
    "conv_same_even_kernel": (lambda m: m.Conv2d(2, 3, 4, padding="same"), [(1, 2, 6, 5)]),
    "conv_same_dilated": (lambda m: m.Conv2d(2, 3, 3, padding="same", dilation=2), [(1, 2, 7, 7)]),
    "conv_valid_nobias": (lambda m: m.Conv2d(2, 3, 3, padding="valid", bias=False), [(2, 2, 5, 6)]),
    "conv_reflect": (
        lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"),
        [(2, 2, 5, 5)],
    ),
    "conv_replicate": (
        lambda m: m.Conv2d(2, 3, 3, padding=2, padding_mode="replicate"),
        [(1, 2, 5, 5)],
    ),
    "conv_circular": (
        lambda m: m.Conv2d(2, 3, 3, padding=1, padding_mode="circular"),
        [(1, 2, 5, 6)],
    ),
    "conv_transpose": (
        lambda m: m.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1),
        [(2, 3, 4, 4)],
    ),
    "conv_transpose_groups": (
        lambda m: m.ConvTranspose2d(4, 6, 3, groups=2, bias=False),
        [(1, 4, 3, 3)],
    ),
    "conv_transpose_dcgan": (lambda m: m.ConvTranspose2d(4, 2, 4, 2, 1), [(2, 4, 3, 3)]),
    "maxpool": (lambda m: m.MaxPool2d(2), [(2, 3, 6, 6)]),
    "maxpool_pad_stride_ceil": (
        lambda m: m.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
        [(1, 2, 6, 7)],
    ),
    "avgpool": (lambda m: m.AvgPool2d(2), [(2, 3, 6, 6)]),
    "avgpool_exclude_pad": (
        lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False),
        [(1, 2, 7, 6)],
    ),
    "adaptive_avgpool": (lambda m: m.AdaptiveAvgPool2d((2, 3)), [(2, 3, 4, 6)]),
    "upsample_nearest": (lambda m: m.Upsample(scale_factor=2), [(1, 2, 3, 4)]),
    "upsample_size": (lambda m: m.Upsample(size=(5, 7)), [(1, 2, 3, 4)]),
    "upsample_bilinear": (lambda m: m.Upsample(scale_factor=2, mode="bilinear"), [(1, 2, 3, 4)]),
    "upsample_bilinear_corners": (
        lambda m: m.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        [(1, 2, 3, 4)],
    ),
    "reflection_pad": (lambda m: m.ReflectionPad2d((1, 2, 2, 0)), [(2, 3, 4, 5)]),
    "replication_pad": (lambda m: m.ReplicationPad2d(2), [(2, 3, 4, 5)]),
    "circular_pad": (lambda m: m.CircularPad2d(1), [(2, 3, 4, 5)]),
    "zero_pad": (lambda m: m.ZeroPad2d((0, 1, 2, 3)), [(2, 3, 4, 5)]),
    "constant_pad": (lambda m: m.ConstantPad2d(1, 0.5), [(2, 3, 4, 5)]),
    "flatten": (lambda m: m.Flatten(), [(2, 3, 2, 2)]),
    "flatten_range": (lambda m: m.Flatten(0, 1), [(2, 3, 4)]),
    "unflatten": (lambda m: m.Unflatten(1, (2, 3)), [(4, 6)]),
    "identity": (lambda m: m.Identity(54, unused="ok"), [(2, 3)]),
    # Ours accept inplace=True (computed out of place); torch's refuses it on a leaf input.
    "relu": (lambda m: m.ReLU(inplace=m is nn), [(3, 4, 5)]),
    "leaky_relu": (lambda m: m.LeakyReLU(0.2, inplace=m is nn), [(3, 4, 5)]),
    "elu": (lambda m: m.ELU(alpha=0.5), [(3, 4, 5)]),
    "gelu": (lambda m: m.GELU(), [(3, 4, 5)]),
    "gelu_tanh": (lambda m: m.GELU(approximate="tanh"), [(3, 4, 5)]),
    "silu": (lambda m: m.SiLU(), [(3, 4, 5)]),
    "sigmoid": (lambda m: m.Sigmoid(), [(3, 4, 5)]),
    "tanh": (lambda m: m.Tanh(), [(3, 4, 5)]),
    "softplus": (lambda m: m.Softplus(beta=2.0, threshold=1.5), [(3, 4, 5)]),
    "hardtanh": (lambda m: m.Hardtanh(-0.5, 0.7), [(3, 4, 5)]),
    "relu6": (lambda m: m.ReLU6(), [(3, 4, 5)]),
    "logsigmoid": (lambda m: m.LogSigmoid(), [(3, 4, 5)]),
    "hardsigmoid": (lambda m: m.Hardsigmoid(), [(3, 4, 5)]),
    "hardswish": (lambda m: m.Hardswish(), [(3, 4, 5)]),
    "mish": (lambda m: m.Mish(), [(3, 4, 5)]),
    "selu": (lambda m: m.SELU(), [(3, 4, 5)]),
    "celu": (lambda m: m.CELU(alpha=0.7), [(3, 4, 5)]),
    "softsign": (lambda m: m.Softsign(), [(3, 4, 5)]),
    "glu": (lambda m: m.GLU(dim=1), [(3, 4, 5)]),
    "prelu": (lambda m: m.PReLU(), [(3, 4, 5)]),
    "rms_norm": (lambda m: m.RMSNorm(5), [(3, 4, 5)]),
    "conv1d": (lambda m: m.Conv1d(3, 4, 3, stride=2, padding=1), [(2, 3, 7)]),
    "conv1d_same_reflect_groups": (
        lambda m: m.Conv1d(4, 2, 4, padding="same", padding_mode="reflect", groups=2),
        [(2, 4, 6)],
    ),
    "conv1d_unbatched_no_bias": (lambda m: m.Conv1d(2, 3, 2, bias=False), [(2, 5)]),
    "conv_transpose1d": (lambda m: m.ConvTranspose1d(3, 2, 3, stride=2, padding=1), [(2, 3, 4)]),
    "max_pool1d": (lambda m: m.MaxPool1d(3, 2, padding=1), [(2, 3, 8)]),
    "avg_pool1d": (lambda m: m.AvgPool1d(2), [(2, 3, 8)]),
    "adaptive_max_pool2d": (lambda m: m.AdaptiveMaxPool2d((3, 2)), [(2, 3, 5, 4)]),
    "conv3d": (lambda m: m.Conv3d(2, 3, (2, 3, 2), stride=(1, 2, 1), padding=1), [(2, 2, 3, 5, 4)]),
    "conv3d_groups_no_bias": (lambda m: m.Conv3d(4, 2, 2, groups=2, bias=False), [(1, 4, 3, 3, 3)]),
    "conv_transpose3d": (
        lambda m: m.ConvTranspose3d(2, 3, 3, stride=2, padding=1, output_padding=1),
        [(1, 2, 2, 3, 2)],
    ),
    "max_pool3d": (lambda m: m.MaxPool3d(2, padding=1), [(2, 2, 3, 4, 4)]),
    "avg_pool3d": (lambda m: m.AvgPool3d(3, 2, 1, count_include_pad=False), [(2, 2, 5, 4, 4)]),
    "batch_norm_3d": (lambda m: m.BatchNorm3d(3), [(2, 3, 2, 3, 2)]),
    "batch_norm_3d_plain": (
        lambda m: m.BatchNorm3d(2, affine=False, momentum=None),
        [(3, 2, 2, 2, 2)],
    ),
    "instance_norm_1d": (lambda m: m.InstanceNorm1d(3), [(2, 3, 5)]),
    "instance_norm_1d_unbatched_affine": (lambda m: m.InstanceNorm1d(3, affine=True), [(3, 5)]),
    "instance_norm_3d": (lambda m: m.InstanceNorm3d(3), [(2, 3, 2, 3, 2)]),
    "instance_norm_3d_affine_tracked": (
        lambda m: m.InstanceNorm3d(2, affine=True, track_running_stats=True),
        [(2, 2, 3, 2, 2)],
    ),
    "instance_norm_3d_unbatched": (lambda m: m.InstanceNorm3d(2), [(2, 3, 2, 2)]),
    "rms_norm_2d_eps": (lambda m: m.RMSNorm((4, 5), eps=1e-3), [(3, 4, 5)]),
    "rms_norm_plain": (lambda m: m.RMSNorm([5], elementwise_affine=False), [(3, 5)]),
    "prelu_per_channel": (lambda m: m.PReLU(4, init=0.1), [(3, 4, 5)]),
    "softmax": (lambda m: m.Softmax(dim=1), [(3, 4, 5)]),
    "log_softmax": (lambda m: m.LogSoftmax(dim=-1), [(3, 4, 5)]),
    "layer_norm": (lambda m: m.LayerNorm((4, 5)), [(3, 4, 5)]),
    "layer_norm_plain": (lambda m: m.LayerNorm(5, elementwise_affine=False), [(3, 4, 5)]),
    "layer_norm_nobias": (lambda m: m.LayerNorm(5, bias=False), [(3, 5)]),
    "group_norm": (lambda m: m.GroupNorm(2, 4), [(3, 4, 3, 2)]),
    "instance_norm": (lambda m: m.InstanceNorm2d(3), [(2, 3, 4, 5)]),
    "instance_norm_affine_tracked": (
        lambda m: m.InstanceNorm2d(3, affine=True, track_running_stats=True),
        [(2, 3, 4, 5)],
    ),
    "batch_norm_1d": (lambda m: m.BatchNorm1d(4), [(8, 4)]),
    "batch_norm_1d_3d": (lambda m: m.BatchNorm1d(4, momentum=0.3), [(3, 4, 5)]),
    "batch_norm_2d": (lambda m: m.BatchNorm2d(3), [(4, 3, 3, 2)]),
    "batch_norm_2d_plain": (lambda m: m.BatchNorm2d(3, affine=False), [(4, 3, 3, 2)]),
    "batch_norm_2d_nobias": (lambda m: m.BatchNorm2d(3, bias=False), [(4, 3, 3, 2)]),
    "group_norm_nobias": (lambda m: m.GroupNorm(2, 4, bias=False), [(3, 4, 5)]),
}


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_torch(name, device, torch):
    make, shapes = LAYERS[name]
    torch.manual_seed(0)
    theirs = _randomise(make(torch.nn))
    ours = make(nn)
    inputs = [_rand(*s, seed=i) for i, s in enumerate(shapes)]
    compare_module(ours, theirs, inputs, device)


def test_conv_transpose_output_size_picks_output_padding(device, torch):
    theirs = torch.nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    ours = nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1)
    x = _rand(1, 2, 4, 5)
    compare_module(ours, theirs, [x], device)
    ref = theirs(torch.tensor(x), output_size=(8, 10))
    out = ours(engine.tensor(x, device=device), output_size=[1, 3, 8, 10])
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="valid sizes range from 7 to 8"):
        ours(engine.tensor(x, device=device), output_size=(9, 9))


def test_embedding_matches_torch_and_padding_row_gets_no_gradient(device, torch):
    idx = np.array([[0, 2, 4], [4, 1, 0]], dtype=np.int64)
    theirs = torch.nn.Embedding(5, 3, padding_idx=0)
    ours = nn.Embedding(5, 3, padding_idx=0)
    assert not ours.weight.numpy()[0].any()  # the padding row starts at zero
    with torch.no_grad():
        theirs.weight[0] = 0.5  # a changed padding row is still looked up
    compare_module(ours, theirs, [idx], device)
    assert not ours.weight.grad.numpy()[0].any()
    with pytest.raises(TypeError, match="integer indices"):
        ours(engine.zeros(2, device=device))
    frozen = nn.Embedding.from_pretrained(engine.eye(3))
    assert not frozen.weight.requires_grad
    np.testing.assert_array_equal(frozen(engine.tensor([2])).numpy(), [[0.0, 0.0, 1.0]])


def test_unbatched_conv_and_pool_inputs(device, torch):
    x = _rand(2, 5, 5)
    compare_module(nn.ConvTranspose2d(2, 3, 2), torch.nn.ConvTranspose2d(2, 3, 2), [x], device)


def _losses(m, T):
    w = T([0.5, 1.0, 2.0, 1.0, 0.3])
    return {
        "ce": (m.CrossEntropyLoss(), "index"),
        "ce_weight_smooth_ignore": (
            m.CrossEntropyLoss(weight=w, ignore_index=1, label_smoothing=0.1),
            "index",
        ),
        "ce_sum": (m.CrossEntropyLoss(reduction="sum"), "index"),
        "ce_probs": (m.CrossEntropyLoss(), "probs"),
        "nll": (m.NLLLoss(weight=w), "index"),
        "nll_none": (m.NLLLoss(reduction="none"), "index"),
        "bce": (m.BCELoss(weight=T([1.0, 2.0, 0.5, 1.0, 1.0])), "unit"),
        "bce_logits": (m.BCEWithLogitsLoss(), "unit"),
        "bce_logits_pos_weight": (
            m.BCEWithLogitsLoss(pos_weight=T([1.0, 3.0, 0.5, 1.0, 2.0])),
            "unit",
        ),
        "mse": (m.MSELoss(), "real"),
        "mse_sum": (m.MSELoss(reduction="sum"), "real"),
        "l1_none": (m.L1Loss(reduction="none"), "real"),
        "smooth_l1": (m.SmoothL1Loss(beta=0.5), "real"),
        "kl_batchmean": (m.KLDivLoss(reduction="batchmean"), "probs"),
    }


@pytest.mark.parametrize("name", sorted(_losses(nn, engine.tensor)))
def test_loss_module_matches_torch(name, device, torch):
    ours, kind = _losses(nn, engine.tensor)[name]
    theirs, _ = _losses(torch.nn, torch.tensor)[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype(np.float32)
    if kind == "index":
        target = rng.integers(0, 5, 6)
    elif kind == "probs":
        e = np.exp(rng.standard_normal((6, 5)))
        target = (e / e.sum(1, keepdims=True)).astype(np.float32)
    elif kind == "unit":
        target = rng.uniform(0, 1, (6, 5)).astype(np.float32)
    else:
        target = rng.standard_normal((6, 5)).astype(np.float32)
    if name == "bce":
        x = 1 / (1 + np.exp(-x))
    if name.startswith("nll") or name == "kl_batchmean":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
    compare_module(ours, theirs, [x, target], device, requires_grad=[True, False])


def test_cross_entropy_over_spatial_dims(device, torch):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    t = rng.integers(0, 4, (2, 3, 3))
    compare_module(
        nn.CrossEntropyLoss(),
        torch.nn.CrossEntropyLoss(),
        [x, t],
        device,
        requires_grad=[True, False],
    )


def test_gaussian_nll_loss_matches_torch(device, torch):
    rng = np.random.default_rng(3)
    mu, y = rng.standard_normal((2, 6, 4)).astype(np.float32)
    var = rng.uniform(0.1, 2.0, (6, 4)).astype(np.float32)
    compare_module(
        nn.GaussianNLLLoss(full=True),
        torch.nn.GaussianNLLLoss(full=True),
        [mu, y, var],
        device,
        requires_grad=[True, False, True],
    )


def test_loss_arguments_are_validated():
    with pytest.raises(ValueError, match="reduction"):
        nn.MSELoss(reduction="avg")
    assert nn.MSELoss(size_average=False).reduction == "sum"
    assert nn.L1Loss(reduce=False).reduction == "none"
    loss = nn.CrossEntropyLoss(weight=engine.ones(3))
    assert "weight" in loss.state_dict()  # class weights are buffers and follow to(device)


def test_layer_constructor_errors_name_the_problem():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="3 channels"):
        nn.BatchNorm2d(4)(engine.zeros(2, 3, 2, 2))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(engine.zeros(1, 3))
    with pytest.raises(RuntimeError, match=r"\(2, 4\).*\(3, 5\)"):
        nn.Linear(5, 3)(engine.zeros(2, 4))


def test_layers_honour_device_and_dtype_arguments(device):
    lin = nn.Linear(3, 2, device=device, dtype="float64")
    conv = nn.Conv2d(1, 2, 3, device=device, dtype="float64")
    bn = nn.BatchNorm2d(2, device=device, dtype="float64")
    for t in [*lin.parameters(), *conv.parameters(), bn.running_mean]:
        assert t.device == device and t.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64


# Central differences in float64 (run without torch) -----------------------------------------
GRADCHECK = {
    "conv_reflect_same": (
        lambda: nn.Conv2d(2, 2, 3, padding="same", padding_mode="reflect"),
        (1, 2, 4, 4),
    ),
    "batch_norm_train": (lambda: nn.BatchNorm2d(2), (3, 2, 2, 2)),
    "layer_norm": (lambda: nn.LayerNorm(4), (3, 4)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), (2, 4, 3)),
    "instance_norm": (lambda: nn.InstanceNorm2d(2, affine=True), (2, 2, 3, 3)),
    "embedding_like_linear": (lambda: nn.Linear(3, 2), (4, 3)),
    "prelu": (lambda: nn.PReLU(3), (2, 3, 4)),
    "rms_norm": (lambda: nn.RMSNorm(4), (3, 4)),
}


@pytest.mark.parametrize("name", sorted(GRADCHECK))
def test_layer_gradients_match_central_differences(name, device):
    make, shape = GRADCHECK[name]
    engine.manual_seed(0)
    module = make().double().to(device)
    with engine.no_grad():
        for p in module.parameters():
            p.uniform_(-1.0, 1.0)
    x = engine.tensor(_rand(*shape).astype(np.float64), device=device, requires_grad=True)
    params = list(module.parameters())
    assert engine.gradcheck(lambda x, *ps: module(x), [x, *params], eps=1e-6, atol=1e-5, rtol=1e-3)


def test_double_backward_through_norm_layers_matches_torch(device, torch):
    """A gradient penalty through LayerNorm and BatchNorm: second derivatives w.r.t. weights."""

    def build(m):
        return m.Sequential(
            m.Linear(4, 6), m.BatchNorm1d(6), m.Tanh(), m.LayerNorm(6), m.Linear(6, 1)
        )

    torch.manual_seed(0)
    theirs = _randomise(build(torch.nn))
    ours = build(nn)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.to(device)
    x = _rand(5, 4)
    tx = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad(theirs(tx).sum(), tx, create_graph=True)
    (tg.pow(2).sum()).backward()
    ex = engine.tensor(x, device=device, requires_grad=True)
    (eg,) = engine.grad(ours(ex).sum(), (ex,), create_graph=True)
    ((eg * eg).sum()).backward()
    np.testing.assert_allclose(eg.numpy(), tg.detach().numpy(), atol=1e-5, rtol=1e-4)
    for (name, p), tp in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        if tp.grad is None:  # the last bias does not reach the input gradient
            assert p.grad is None or not p.grad.numpy().any(), name
            continue
        np.testing.assert_allclose(
            p.grad.numpy(), tp.grad.numpy(), atol=1e-4, rtol=1e-3, err_msg=name
        )


def test_default_linear_and_conv_init_follow_pytorch_bounds():
    engine.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) reduces to U(+-1/sqrt(fan_in))
    w, b = lin.weight.numpy(), lin.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / math.sqrt(3)) < 0.01 * bound
    assert np.abs(b).max() <= bound and b.std() > 0.5 * bound / math.sqrt(3)
    conv = nn.Conv2d(8, 16, 3)
    cbound = 1 / math.sqrt(8 * 9)
    assert np.abs(conv.weight.numpy()).max() <= cbound
    convt = nn.ConvTranspose2d(8, 16, 3)  # PyTorch's fan_in for transposed weights: dim 1
    assert np.abs(convt.weight.numpy()).max() <= 1 / math.sqrt(16 * 9)
    assert np.abs(convt.weight.numpy()).max() > 0.95 / math.sqrt(16 * 9)
    engine.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight.numpy(), w)  # seeded, reproducible


def _pytorch_mnist_net(nn, F, torch):
    """PyTorch's examples/mnist `Net`, verbatim: only the three module names are swapped."""

    class Net(nn.Module):
        def __init__(self):
            super(Net, self).__init__()  # noqa: UP008 (as the example writes it)
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = self.conv1(x)
            x = F.relu(x)
            x = self.conv2(x)
            x = F.relu(x)
            x = F.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = self.fc1(x)
            x = F.relu(x)
            x = self.dropout2(x)
            x = self.fc2(x)
            output = F.log_softmax(x, dim=1)
            return output

    return Net()


def test_pytorch_mnist_model_code_ports_by_changing_imports(device, torch):
    import engine.functional as F

    torch.manual_seed(0)
    theirs = _pytorch_mnist_net(torch.nn, torch.nn.functional, torch).eval()
    ours = _pytorch_mnist_net(nn, F, engine).eval()
    images = np.random.default_rng(0).uniform(size=(1, 1, 28, 28)).astype(np.float32)
    targets = np.array([3])
    out, ref = compare_module(ours, theirs, [images], device, atol=1e-4)
    loss = F.nll_loss(
        ours(engine.tensor(images, device=device)), engine.tensor(targets, device=device)
    )
    ref_loss = torch.nn.functional.nll_loss(theirs(torch.tensor(images)), torch.tensor(targets))
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)


def test_max_unpool2d_layer_matches_torch(device, torch):
    x = _rand(2, 3, 4, 6)
    pool, unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)
    tpool, tunpool = torch.nn.MaxPool2d(2, return_indices=True), torch.nn.MaxUnpool2d(2)
    out = unpool(*pool(engine.tensor(x, device=device)), output_size=(4, 6))
    ref = tunpool(*tpool(torch.tensor(x)), output_size=(4, 6))
    np.testing.assert_array_equal(out.numpy(), ref.numpy())


def test_conv1d_weights_are_3d_and_load_from_torch(torch):
    ours, theirs = nn.Conv1d(3, 4, 5), torch.nn.Conv1d(3, 4, 5)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    bound = 1 / np.sqrt(3 * 5)  # PyTorch's default init bound over fan_in = C_in * k
    assert np.abs(ours.weight.numpy()).max() <= bound
    t = nn.ConvTranspose1d(3, 4, 5)
    assert t.weight.shape == tuple(torch.nn.ConvTranspose1d(3, 4, 5).weight.shape)
