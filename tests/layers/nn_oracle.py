"""Run one of our modules and its torch.nn twin on the same weights and inputs; compare outputs,
input gradients, parameter gradients and buffers (tinygrad's `helper_test_op`, for modules)."""

from __future__ import annotations

import numpy as np

import engine


def copy_weights(ours, theirs) -> None:
    """torch's state_dict loaded strictly into ours: the names must match PyTorch's too."""
    ours.load_state_dict({k: v.detach().cpu().numpy() for k, v in theirs.state_dict().items()})


def compare_module(
    ours, theirs, inputs, device, atol=1e-5, rtol=1e-4, grad_atol=None, seed=0, requires_grad=None
):
    """`inputs`: numpy arrays; those flagged in `requires_grad` (default: the float ones) get
    gradients. Returns (our output, torch output)."""
    import torch

    copy_weights(ours, theirs)
    ours.to(device)
    if requires_grad is None:
        requires_grad = [a.dtype.kind == "f" for a in inputs]
    flagged = list(zip(inputs, requires_grad, strict=True))
    our_in = [engine.tensor(a, device=device, requires_grad=g) for a, g in flagged]
    their_in = [torch.tensor(a, requires_grad=g) for a, g in flagged]
    out, ref = ours(*our_in), theirs(*their_in)
    assert out.device == device
    assert out.shape == tuple(ref.shape), f"shape {out.shape}, torch {tuple(ref.shape)}"
    np.testing.assert_allclose(
        out.numpy(), ref.detach().numpy(), atol=atol, rtol=rtol, err_msg="forward"
    )
    if ref.requires_grad:
        cot = np.random.default_rng(seed).standard_normal(ref.shape).astype(np.float32)
        ref.backward(torch.from_numpy(cot))
        out.backward(engine.tensor(cot, device=device))
        gatol = grad_atol if grad_atol is not None else atol * 10
        for i, (x, tx) in enumerate(zip(our_in, their_in, strict=True)):
            if tx.grad is not None:
                np.testing.assert_allclose(
                    x.grad.numpy(),
                    tx.grad.numpy(),
                    atol=gatol,
                    rtol=rtol * 10,
                    err_msg=f"grad of input {i}",
                )
        theirs_named = dict(theirs.named_parameters())
        for name, p in ours.named_parameters():
            tp = theirs_named[name]
            if tp.grad is None:
                assert p.grad is None or not p.grad.numpy().any(), name
                continue
            assert p.grad is not None, f"{name}: no gradient, torch has one"
            np.testing.assert_allclose(
                p.grad.numpy(),
                tp.grad.numpy(),
                atol=gatol,
                rtol=rtol * 10,
                err_msg=f"grad of {name}",
            )
    for name, b in theirs.named_buffers():
        np.testing.assert_allclose(
            ours.get_buffer(name).numpy(), b.numpy(), atol=atol, rtol=rtol, err_msg=f"buffer {name}"
        )
    return out, ref
