"""`engine.functional`: activations, softmax family, linear, dropout and losses vs PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import helper_test_op, requires_torch, torch

import engine
import engine.functional as F


def Fof(x):
    """The functional module of `x`'s library, so one lambda serves both."""
    return F if isinstance(x, engine.Tensor) else torch.nn.functional


def const(x, data):
    """A constant (no grad) of `x`'s library, device and float dtype (or int64 for ints)."""
    data = np.asarray(data)
    if isinstance(x, engine.Tensor):
        dtype = x.dtype if data.dtype.kind == "f" else np.int64
        return engine.tensor(data.astype(dtype), device=x.device)
    return torch.tensor(data, dtype=x.dtype if data.dtype.kind == "f" else torch.int64)


RNG = np.random.default_rng(42)
PROBS = RNG.uniform(0.05, 0.95, (3, 4))
LABELS = np.array([0, 3, 1])
LABELS_IGNORED = np.array([0, -100, 2])
WEIGHT = np.array([0.5, 1.0, 2.0, 1.5])


# Activations ----------------------------------------------------------------------------------
ACTIVATIONS = {
    "relu": lambda x: Fof(x).relu(x),
    "leaky_relu": lambda x: Fof(x).leaky_relu(x, 0.1),
    "elu": lambda x: Fof(x).elu(x, alpha=0.7),
    "gelu": lambda x: Fof(x).gelu(x),
    "gelu_tanh": lambda x: Fof(x).gelu(x, approximate="tanh"),
    "silu": lambda x: Fof(x).silu(x),
    "sigmoid": lambda x: Fof(x).sigmoid(x),
    "tanh": lambda x: Fof(x).tanh(x),
    "softplus": lambda x: Fof(x).softplus(x),
    "softplus_beta_threshold": lambda x: Fof(x).softplus(x, beta=2.0, threshold=3.0),
    "hardtanh": lambda x: Fof(x).hardtanh(x, -0.5, 0.5),
    "relu6": lambda x: Fof(x).relu6(x * 4),
    "softmax_last": lambda x: Fof(x).softmax(x, dim=-1),
    "softmax_dim0": lambda x: Fof(x).softmax(x, dim=0),
    "log_softmax": lambda x: Fof(x).log_softmax(x, dim=1),
    "log_softmax_dim0": lambda x: Fof(x).log_softmax(x, dim=0),
    "logsumexp": lambda x: (F if isinstance(x, engine.Tensor) else torch).logsumexp(x, 1),
    "normalize": lambda x: Fof(x).normalize(x, dim=1),
    "cosine_similarity": lambda x: Fof(x).cosine_similarity(x, x.flip(0), dim=1),
    "logsigmoid": lambda x: Fof(x).logsigmoid(x * 10),
    "hardsigmoid": lambda x: Fof(x).hardsigmoid(x * 2),
    "hardswish": lambda x: Fof(x).hardswish(x * 2),
    "mish": lambda x: Fof(x).mish(x),
    "selu": lambda x: Fof(x).selu(x),
    "celu": lambda x: Fof(x).celu(x),
    "celu_alpha": lambda x: Fof(x).celu(x, alpha=0.5),
    "softsign": lambda x: Fof(x).softsign(x),
    "glu": lambda x: Fof(x).glu(x),
    "glu_dim0": lambda x: Fof(x).glu(x[:2], 0),
    "prelu_one_weight": lambda x: Fof(x).prelu(x, const(x, [0.3])),
    "prelu_per_channel": lambda x: Fof(x).prelu(x, const(x, [0.1, -0.2, 0.5, 2.0])),
}


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation(name, device):
    helper_test_op([(3, 4)], ACTIVATIONS[name], device=device, low=-3.0, high=3.0)


@pytest.mark.parametrize("shape", [(5,), (2, 1, 3)], ids=str)
def test_softmax_other_ranks(shape, device):
    helper_test_op([shape], lambda x: Fof(x).softmax(x, dim=-1), device=device)
    helper_test_op([shape], lambda x: Fof(x).log_softmax(x, dim=0), device=device)


def test_softmax_stable_for_large_inputs(device):
    x = engine.tensor([[1000.0, 1000.0, -1000.0], [-1e4, 0.0, 1e4]], device=device)
    assert F.softmax(x, 1).tolist() == [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    ls = F.log_softmax(x, 1).numpy()
    np.testing.assert_allclose(ls[0, :2], [-np.log(2)] * 2, rtol=1e-6)
    assert np.isfinite(ls[1, 1:]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) of the -inf row
def test_logsumexp_stable(device):
    x = engine.tensor(
        [[1000.0, 1000.0], [-1000.0, -1000.0], [0.0, -np.inf]], device=device, requires_grad=True
    )
    out = F.logsumexp(x, 1)
    np.testing.assert_allclose(out.numpy(), [1000 + np.log(2), -1000 + np.log(2), 0.0], rtol=1e-6)
    out.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    all_neg_inf = engine.tensor([-np.inf, -np.inf], device=device)
    assert F.logsumexp(all_neg_inf, 0).item() == -np.inf


# linear and dropout ---------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape", [(4, 3), (2, 4, 3), (3,)], ids=str)
def test_linear(x_shape, device):
    helper_test_op([x_shape, (5, 3), (5,)], lambda x, w, b: Fof(x).linear(x, w, b), device=device)
    helper_test_op([x_shape, (5, 3)], lambda x, w: Fof(x).linear(x, w), device=device)


def test_linear_shape_errors_name_shapes(device):
    with pytest.raises(RuntimeError, match=r"\(4, 3\).*\(5, 2\)"):
        F.linear(engine.ones(4, 3, device=device), engine.ones(5, 2, device=device))
    with pytest.raises(RuntimeError, match=r"bias of shape \(4,\)"):
        F.linear(
            engine.ones(4, 3, device=device),
            engine.ones(5, 3, device=device),
            engine.ones(4, device=device),
        )


def test_dropout_statistics_and_gradient(device):
    engine.manual_seed(0)
    x = engine.ones(20_000, device=device, requires_grad=True)
    y = F.dropout(x, p=0.3)
    kept = y.numpy() != 0
    assert 0.68 < kept.mean() < 0.72
    np.testing.assert_allclose(y.numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())  # same mask, same scale


def test_dropout_identity_and_edge_cases(device):
    x = engine.randn(3, 4, device=device)
    assert F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    assert not F.dropout(x, 1.0).numpy().any()
    with pytest.raises(ValueError, match="between 0 and 1.*1.5"):
        F.dropout(x, 1.5)


# Losses ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "name",
    [
        "mse_loss",
        "l1_loss",
        "smooth_l1_loss",
        "binary_cross_entropy_with_logits",
        "binary_cross_entropy",
    ],
)
def test_pointwise_losses(name, reduction, device):
    def loss(x):
        target = const(x, PROBS)
        inp = Fof(x).sigmoid(x) if name == "binary_cross_entropy" else x
        return getattr(Fof(x), name)(inp, target, reduction=reduction)

    helper_test_op([(3, 4)], loss, device=device)


@pytest.mark.filterwarnings("ignore:reduction. 'mean':UserWarning")  # torch's advice
@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean"])
def test_kl_div(reduction, device):
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).kl_div(Fof(x).log_softmax(x, 1), const(x, PROBS), reduction=reduction),
        device=device,
    )
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).kl_div(
            Fof(x).log_softmax(x, 1), const(x, np.log(PROBS)), reduction=reduction, log_target=True
        ),
        device=device,
    )


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_loss(full, device):
    helper_test_op(
        [(3, 4), (3, 4)],
        lambda x, v: Fof(x).gaussian_nll_loss(x, const(x, PROBS), v * v + 0.1, full=full),
        device=device,
    )
    helper_test_op(
        [(3, 4), (3, 1)],
        lambda x, v: Fof(x).gaussian_nll_loss(x, const(x, PROBS), v * v + 0.1),
        device=device,
    )


def test_dropout2d_zeroes_whole_channels(device):
    engine.manual_seed(1)
    x = engine.ones(4, 50, 3, 3, device=device, requires_grad=True)
    y = F.dropout2d(x, 0.5)
    per_channel = y.numpy().reshape(4, 50, 9)
    assert set(np.unique(per_channel.std(axis=2))) == {0.0}  # all or nothing per channel
    kept = per_channel[:, :, 0] != 0
    assert 0.35 < kept.mean() < 0.65
    np.testing.assert_allclose(per_channel[kept], 2.0)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.numpy())
    with pytest.raises(ValueError, match=r"3-D or 4-D.*\(2, 3\)"):
        F.dropout2d(engine.ones(2, 3, device=device))


def test_bce_weights(device):
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).binary_cross_entropy_with_logits(
            x, const(x, PROBS), weight=const(x, WEIGHT), pos_weight=const(x, WEIGHT[::-1].copy())
        ),
        device=device,
    )
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).binary_cross_entropy(
            Fof(x).sigmoid(x), const(x, PROBS), weight=const(x, WEIGHT)
        ),
        device=device,
    )


def test_bce_with_logits_finite_at_1000(device):
    x = engine.tensor([1000.0, -1000.0, 1000.0, -1000.0], device=device, requires_grad=True)
    t = engine.tensor([1.0, 0.0, 0.0, 1.0], device=device)
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, 0.0, 1000.0, 1000.0])
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 1.0, -1.0])
    pw = F.binary_cross_entropy_with_logits(x, t, pos_weight=engine.tensor(2.0, device=device))
    # mean of [0, 0, 1000, 2 * 1000]: pos_weight scales the positive term, still finite
    assert pw.item() == pytest.approx(750.0, rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_and_nll(reduction, device):
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).cross_entropy(x, const(x, LABELS), reduction=reduction),
        device=device,
    )
    helper_test_op(
        [(3, 4)],
        lambda x: Fof(x).nll_loss(Fof(x).log_softmax(x, 1), const(x, LABELS), reduction=reduction),
        device=device,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight": WEIGHT},
        {"ignore_index": -100},
        {"weight": WEIGHT, "ignore_index": -100, "reduction": "sum"},
        {"label_smoothing": 0.2},
        {"label_smoothing": 0.1, "weight": WEIGHT, "ignore_index": -100},
    ],
    ids=["weight", "ignore", "weight_ignore_sum", "smoothing", "smoothing_weight_ignore"],
)
def test_cross_entropy_options(kwargs, device):
    labels = LABELS_IGNORED if "ignore_index" in kwargs else LABELS

    def loss(x):
        kw = {k: const(x, v) if k == "weight" else v for k, v in kwargs.items()}
        return Fof(x).cross_entropy(x, const(x, labels), **kw)

    helper_test_op([(3, 4)], loss, device=device)


def test_cross_entropy_spatial_probabilities_and_unbatched(device):
    spatial = np.array([[[0, 2], [1, 1]], [[2, 0], [0, 1]]])
    helper_test_op(
        [(2, 3, 2, 2)], lambda x: Fof(x).cross_entropy(x, const(x, spatial)), device=device
    )
    probs = PROBS / PROBS.sum(1, keepdims=True)
    helper_test_op([(3, 4)], lambda x: Fof(x).cross_entropy(x, const(x, probs)), device=device)
    for reduction in ("mean", "none"):
        helper_test_op(
            [(4,)],
            lambda x, r=reduction: Fof(x).cross_entropy(x, const(x, np.array(2)), reduction=r),
            device=device,
        )
        helper_test_op(
            [(4,)],
            lambda x, r=reduction: Fof(x).nll_loss(x, const(x, np.array(1)), reduction=r),
            device=device,
        )
    helper_test_op(
        [(4,)],
        lambda x: Fof(x).cross_entropy(x, const(x, np.array(2)), label_smoothing=0.1),
        device=device,
    )


def test_loss_argument_errors(device):
    x, t = engine.ones(3, 4, device=device), engine.ones(3, 5, device=device)
    with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
        F.mse_loss(x, t)
    with pytest.raises(ValueError, match="reduction.*'average'"):
        F.l1_loss(x, x, reduction="average")
    with pytest.raises(ValueError, match=r"target of shape \(3,\)"):
        F.cross_entropy(x, engine.tensor([0, 1], device=device))
    with pytest.raises(IndexError, match=r"\[0, 4\).*7"):  # on cuda at the next read (no sync)
        F.cross_entropy(x, engine.tensor([0, 1, 7], device=device)).item()
    with pytest.raises(IndexError, match=r"\[0, 4\).*-2"):
        F.cross_entropy(x, engine.tensor([0, -2, 1], device=device)).item()
    assert F.cross_entropy(x, engine.tensor([0, -100, 1], device=device)).item() > 0


def test_a_target_check_on_cuda_waits_for_the_next_read(device):
    """A bad class index on cuda is found by a device reduction and reported by the next read
    of device data, naming the op; on the cpu at the call."""
    x, bad = engine.ones(3, 4, device=device), engine.tensor([0, 1, 9], device=device)
    if device == "cpu":
        with pytest.raises(IndexError, match="nll_loss"):
            F.cross_entropy(x, bad)
        return
    loss = F.cross_entropy(x, bad)  # no error yet: that would be a host sync
    good = F.cross_entropy(x, engine.tensor([0, 1, 2], device=device))
    with pytest.raises(IndexError, match=r"nll_loss: target values must be in \[0, 4\).*9"):
        good.item()
    assert loss.shape == () and good.item() == pytest.approx(np.log(4))  # reported once


@requires_torch
def test_one_hot_and_embedding(device):
    labels = engine.tensor([2, 0, 1], device=device)
    assert (
        F.one_hot(labels, 4).tolist()
        == torch.nn.functional.one_hot(torch.tensor([2, 0, 1]), 4).tolist()
    )
    helper_test_op(
        [(5, 3)], lambda w: Fof(w).embedding(const(w, [[1, 1], [4, 0]]), w), device=device
    )


def test_prelu_weight_gradient(device):
    """The slope's gradient (one value and one per channel), against torch and differences."""
    w1, wc = np.array([0.25]), np.array([0.1, -0.2, 0.5])
    for w in (w1, wc):
        helper_test_op([(2, 3, 4)], lambda x, w: Fof(x).prelu(x, w),
                       inputs=[np.random.default_rng(1).uniform(-2, 2, (2, 3, 4)), w],
                       device=device)  # fmt: skip


def test_glu_and_prelu_errors_name_shapes(device):
    with pytest.raises(RuntimeError, match=r"even size"):
        F.glu(engine.ones(2, 3, device=device))
    with pytest.raises(RuntimeError, match=r"\(2,\).*\(4, 3\)"):
        F.prelu(engine.ones(4, 3, device=device), engine.ones(2, device=device))
