"""`layers.MultiheadAttention` against `torch.nn.MultiheadAttention` on the same weights:
outputs, attention weights, input and parameter gradients, masks, layouts; gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
from nn_oracle import copy_weights

import engine
import layers as nn

MASK_PAD = np.array([[False, False, True, False], [False, True, True, False]])
MASK_CAUSAL = ~np.tril(np.ones((3, 4), bool))

CASES = {
    "plain": ({}, {}),
    "batch_first": ({"batch_first": True}, {}),
    "no_bias": ({"bias": False}, {}),
    "key_padding_mask": ({}, {"key_padding_mask": MASK_PAD}),
    "bool_attn_mask": ({}, {"attn_mask": MASK_CAUSAL}),
    "float_attn_mask": ({}, {"attn_mask": np.linspace(-1, 1, 12).reshape(3, 4)}),
    "both_masks_per_head_weights": (
        {"batch_first": True},
        {"attn_mask": MASK_CAUSAL, "key_padding_mask": MASK_PAD, "average_attn_weights": False},
    ),
    "no_weights": ({}, {"need_weights": False}),
    "unbatched": ({}, {"unbatched": True}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_multihead_attention_matches_torch(name, device, torch):
    make_kw, call_kw = dict(CASES[name][0]), dict(CASES[name][1])
    E, H, L, S, N = 6, 2, 3, 4, 2
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(E, H, **make_kw)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.rand(p.shape) * 2 - 1)
    ours = nn.MultiheadAttention(E, H, **make_kw)
    copy_weights(ours, theirs)
    ours.to(device)
    rng = np.random.default_rng(0)
    unbatched = call_kw.pop("unbatched", False)
    first = (N, L) if make_kw.get("batch_first") else (L, N)
    kv = (N, S) if make_kw.get("batch_first") else (S, N)
    shapes = [(L, E), (S, E), (S, E)] if unbatched else [first + (E,), kv + (E,), kv + (E,)]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    ours_in = [engine.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in arrays]
    ours_kw = {k: engine.tensor(v.astype(np.float32) if v.dtype.kind == "f" else v, device=device)
               if isinstance(v, np.ndarray) else v for k, v in call_kw.items()}  # fmt: skip
    theirs_kw = {k: torch.tensor(v.astype(np.float32) if v.dtype.kind == "f" else v)
                 if isinstance(v, np.ndarray) else v for k, v in call_kw.items()}  # fmt: skip
    out, w = ours(*ours_in, **ours_kw)
    ref, ref_w = theirs(*theirs_in, **theirs_kw)
    assert out.shape == tuple(ref.shape)
    np.testing.assert_allclose(out.numpy(), ref.detach().numpy(), atol=1e-5, rtol=1e-4)
    if ref_w is None:
        assert w is None
    else:
        assert w.shape == tuple(ref_w.shape)
        np.testing.assert_allclose(w.numpy(), ref_w.detach().numpy(), atol=1e-5, rtol=1e-4)
    cot = rng.standard_normal(ref.shape).astype(np.float32)
    ref.backward(torch.from_numpy(cot))
    out.backward(engine.tensor(cot, device=device))
    for x, tx in zip(ours_in, theirs_in):
        np.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), atol=1e-4, rtol=1e-3)
    theirs_params = dict(theirs.named_parameters())
    for name_, p in ours.named_parameters():
        np.testing.assert_allclose(
            p.grad.numpy(), theirs_params[name_].grad.numpy(), atol=1e-4, rtol=1e-3, err_msg=name_
        )


def test_state_dict_keys_and_init_follow_torch(torch):
    ours, theirs = nn.MultiheadAttention(8, 2), torch.nn.MultiheadAttention(8, 2)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert not ours.in_proj_bias.numpy().any() and not ours.out_proj.bias.numpy().any()
    bound = np.sqrt(6.0 / (8 + 24))  # Xavier-uniform over the packed (3E, E) projection
    assert np.abs(ours.in_proj_weight.numpy()).max() <= bound


def test_gradients_match_central_differences(device):
    engine.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, batch_first=True).double().to(device)
    x = engine.randn(2, 3, 4, dtype="float64", device=device, requires_grad=True)
    mask = engine.tensor(np.triu(np.ones((3, 3), bool), 1), device=device)
    params = list(mha.parameters())
    assert engine.gradcheck(lambda x, *ps: mha(x, x, x, attn_mask=mask)[0], [x, *params])


def test_errors_name_the_problem(device):
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(6, 4)
    mha = nn.MultiheadAttention(4, 2).to(device)
    x = engine.randn(3, 2, 4, device=device)
    with pytest.raises(RuntimeError, match=r"key_padding_mask of shape \(3, 3\)"):
        mha(x, x, x, key_padding_mask=engine.zeros(3, 3, dtype="bool", device=device))
    with pytest.raises(RuntimeError, match="is_causal"):
        mha(x, x, x, is_causal=True)
