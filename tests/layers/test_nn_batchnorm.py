"""BatchNorm's running statistics over several steps, eval mode, momentum=None, no tracking."""

from __future__ import annotations

import numpy as np
import pytest
from nn_oracle import copy_weights

import engine
import layers as nn

CONFIGS = {
    "bn1d": (lambda m: m.BatchNorm1d(3), (6, 3)),
    "bn1d_seq": (lambda m: m.BatchNorm1d(3, momentum=0.5), (4, 3, 5)),
    "bn2d": (lambda m: m.BatchNorm2d(3), (4, 3, 2, 3)),
    "bn2d_cumulative": (lambda m: m.BatchNorm2d(3, momentum=None), (4, 3, 2, 2)),
    "bn2d_no_affine": (lambda m: m.BatchNorm2d(3, affine=False, eps=1e-3), (4, 3, 2, 2)),
    "bn2d_untracked": (lambda m: m.BatchNorm2d(3, track_running_stats=False), (4, 3, 2, 2)),
    "bn3d": (lambda m: m.BatchNorm3d(2, momentum=0.3), (3, 2, 2, 3, 2)),
    "in3d_tracked": (
        lambda m: m.InstanceNorm3d(2, affine=True, track_running_stats=True),
        (3, 2, 2, 3, 2),
    ),
    "in1d_tracked": (lambda m: m.InstanceNorm1d(3, track_running_stats=True), (2, 3, 5)),
}


def _batch(shape, step):
    rng = np.random.default_rng(step)
    # Shifted and scaled so the running statistics have somewhere to go.
    return (rng.standard_normal(shape) * 3.0 + 2.0).astype(np.float32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_running_stats_match_torch_over_steps_and_eval_uses_them(name, device, torch):
    make, shape = CONFIGS[name]
    theirs, ours = make(torch.nn), make(nn)
    copy_weights(ours, theirs)
    ours.to(device)
    for step in range(4):
        x = _batch(shape, step)
        out, ref = ours(engine.tensor(x, device=device)), theirs(torch.tensor(x))
        np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-5, rtol=1e-4)
    for key, value in theirs.state_dict().items():
        mine = ours.state_dict()[key]
        assert mine.dtype == np.dtype(str(value.dtype).replace("torch.", "")), key
        np.testing.assert_allclose(mine.numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
    ours.eval(), theirs.eval()
    x = _batch(shape, 99)
    out, ref = ours(engine.tensor(x, device=device)), theirs(torch.tensor(x))
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-5, rtol=1e-4)


def test_running_var_uses_the_unbiased_batch_variance():
    bn = nn.BatchNorm1d(1, momentum=1.0)  # running stats become the last batch's
    x = np.array([[1.0], [2.0], [4.0]], dtype=np.float32)
    out = bn(engine.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), [7 / 3], rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), [x.var(ddof=1)], rtol=1e-6)
    # ...while the output is normalised with the biased one.
    np.testing.assert_allclose(out.numpy(), (x - x.mean()) / np.sqrt(x.var() + 1e-5), rtol=1e-5)
    assert int(bn.num_batches_tracked.item()) == 1


def test_eval_mode_is_a_fixed_affine_map_and_leaves_stats_alone():
    bn = nn.BatchNorm2d(2)
    with engine.no_grad():
        bn.running_mean.copy_(engine.tensor([1.0, -1.0]))
        bn.running_var.copy_(engine.tensor([4.0, 0.25]))
        bn.weight.copy_(engine.tensor([2.0, 1.0]))
        bn.bias.copy_(engine.tensor([0.5, 0.0]))
    bn.eval()
    x = np.ones((1, 2, 1, 1), dtype=np.float32)
    out = bn(engine.tensor(x)).numpy().reshape(2)
    expected = [2.0 * (1 - 1) / np.sqrt(4 + 1e-5) + 0.5, (1 + 1) / np.sqrt(0.25 + 1e-5)]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_array_equal(bn.running_mean.numpy(), [1.0, -1.0])
    assert int(bn.num_batches_tracked.item()) == 0
    single = bn(engine.ones(1, 2, 1, 1))  # one value per channel is fine in eval
    assert single.shape == (1, 2, 1, 1)


def test_running_stats_are_outside_the_graph(device):
    bn = nn.BatchNorm1d(2).to(device)
    x = engine.randn(5, 2, device=device, requires_grad=True)
    bn(x).sum().backward()
    assert not bn.running_mean.requires_grad and bn.running_mean.grad_fn is None
    assert x.grad is not None
