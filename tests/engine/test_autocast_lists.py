"""Every public op under autocast, against PyTorch (issue 14's autocast audit).

Each row of `op_table.OPS` runs three ways: float32 inputs (a "lower" op casts them down),
float16/bfloat16 inputs (a "float32" op casts them up) and mixed (the first float input low, the
rest float32: promotion, or the list's cast). The output dtypes must be PyTorch's:

- on the CPU, torch.autocast("cpu") itself is the oracle, for bfloat16 and float16 (torch 2.x
  has both); rows torch refuses are skipped;
- on cuda (the stand-in here, no GPU), PyTorch's documented CUDA lists ("Autocast Op Reference")
  are the oracle: torch on the CPU runs the op with its inputs cast as the list says (float16
  for the lower list, float32 for the float32 list, unchanged otherwise) and gives its dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_torch, torch
from op_table import OPS

import engine
import engine.functional as F
from engine import Tensor

_SPACES = {"engine": engine, "F": F, "Tensor": Tensor, "linalg": engine.linalg}

# PyTorch's documented CUDA lists (plus entries of torch 2.x's autocast_mode.cpp the page does
# not name: scaled_dot_product_attention low, the linalg norms float32).
CUDA_LOWER = set(
    "__matmul__ __rmatmul__ addbmm addmm addmv addr baddbmm bmm chain_matmul multi_dot conv1d "
    "conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d linear matmul mm mv prelu "
    "scaled_dot_product_attention".split()
)
CUDA_FLOAT32 = set(
    "__pow__ __rdiv__ __rpow__ __rtruediv__ acos arccos asin arcsin "
    "binary_cross_entropy_with_logits "
    "cosh cosine_embedding_loss cdist cosine_similarity cross_entropy cumprod cumsum dist erfinv "
    "exp expm1 group_norm hinge_embedding_loss kl_div l1_loss layer_norm log log_softmax log10 "
    "log1p log2 margin_ranking_loss mse_loss multilabel_margin_loss multi_margin_loss nll_loss "
    "norm normalize pdist poisson_nll_loss pow prod reciprocal rsqrt sinh smooth_l1_loss "
    "soft_margin_loss softmax softmin softplus sum renorm tan triplet_margin_loss huber_loss "
    "logsumexp vector_norm matrix_norm".split()
)
# einsum is on no list, but torch's multiplies operand pairs with bmm: float16 on cuda too.
# binary_cross_entropy is refused under cuda autocast (as PyTorch): test_autocast.py checks it.
CUDA_REFUSED = {"binary_cross_entropy"}


def _resolve(spaces, name):
    space, attr = name.split(".", 1)
    obj = getattr(spaces[space], attr)
    return obj.fget if isinstance(obj, property) else obj


def _torch_spaces():
    return {
        "engine": torch,
        "F": torch.nn.functional,
        "Tensor": torch.Tensor,
        "linalg": torch.linalg,
    }


def _dtypes(out) -> tuple:
    if isinstance(out, (tuple, list)):
        return tuple(d for o in out for d in _dtypes(o))
    return (str(out.dtype).replace("torch.", ""),) if hasattr(out, "dtype") else ()


def _make(lib, arrays, variant, low, device="cpu", cast=None):
    """Tensors of `lib` from the row's arrays: floats float32, low per `variant`, then `cast`."""
    out, k = [], 0
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind != "f":
            out.append(lib.tensor(a, device=device))
            continue
        t = lib.tensor(a.astype(np.float32), device=device)
        if variant == "low" or (variant == "mixed" and k == 0):
            t = t.to(low)
        out.append(t if cast is None else t.to(cast))
        k += 1
    return out


def _cases():
    """(name, row index, variant) for every name of every row that has a torch namesake."""
    spaces = _torch_spaces() if torch is not None else {}
    cases = []
    for i, row in enumerate(OPS):
        for name in row.names:
            try:
                _resolve(spaces, name)
            except (AttributeError, KeyError):
                continue
            floats = sum(
                np.asarray(a).dtype.kind == "f" for a in row.inputs(np.random.default_rng(i))
            )
            for variant in ("f32", "low", "mixed"):
                if variant != "mixed" or floats >= 2:
                    cases.append((name, i, variant))
    return cases


def _sweep(run_ours, run_theirs):
    """Output dtypes of ours vs the oracle over every case; a row the oracle refuses is skipped."""
    wrong, ran = [], 0
    for name, i, variant in _cases():
        row = OPS[i]
        arrays = row.inputs(np.random.default_rng(i))
        try:
            want = run_theirs(name, row, arrays, variant)
        except Exception:  # noqa: BLE001 - torch refuses the row (dtype or signature): no oracle
            continue
        if want is None:
            continue
        try:
            got = run_ours(name, row, arrays, variant)
        except Exception as e:  # noqa: BLE001 - reported as a mismatch, with the error
            got = (f"{type(e).__name__}: {str(e)[:80]}",)
        ran += 1
        if got != want:
            wrong.append(f"{name} ({variant} inputs): ours {got}, torch {want}")
    return wrong, ran


@requires_torch
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_every_op_under_cpu_autocast_matches_torch_autocast(dtype):
    low_t, low_e = getattr(torch, dtype), getattr(engine, dtype)
    tspaces = _torch_spaces()

    def theirs(name, row, arrays, variant):
        with torch.autocast("cpu", dtype=low_t):
            return _dtypes(row.call(_resolve(tspaces, name), *_make(torch, arrays, variant, low_t)))

    def ours(name, row, arrays, variant):
        with engine.autocast("cpu", dtype=low_e):
            return _dtypes(
                row.call(_resolve(_SPACES, name), *_make(engine, arrays, variant, low_e))
            )

    wrong, ran = _sweep(ours, theirs)
    assert ran > 900, ran  # the table's ops, not a handful
    assert not wrong, "\n".join(wrong)


@requires_torch
def test_every_op_under_cuda_autocast_follows_torch_cuda_lists(device):
    if device != "cuda":
        pytest.skip("CUDA autocast casts cuda tensors")
    tspaces = _torch_spaces()

    def theirs(name, row, arrays, variant):
        op = name.split(".", 1)[1]
        if op in CUDA_REFUSED:
            return None
        lower = op in CUDA_LOWER or (op == "einsum" and len(arrays) > 1)  # bmm of pairs
        cast = torch.float16 if lower else torch.float32 if op in CUDA_FLOAT32 else None
        args = _make(torch, arrays, variant, torch.float16, cast=cast)
        return _dtypes(row.call(_resolve(tspaces, name), *args))

    def ours(name, row, arrays, variant):
        with engine.autocast("cuda", dtype=engine.float16):
            args = _make(engine, arrays, variant, engine.float16, device="cuda")
            return _dtypes(row.call(_resolve(_SPACES, name), *args))

    wrong, ran = _sweep(ours, theirs)
    assert ran > 900, ran
    assert not wrong, "\n".join(wrong)
