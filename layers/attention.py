"""`MultiheadAttention`, PyTorch's layer (its parameter names, so state dicts port), on
`F.scaled_dot_product_attention`'s arithmetic."""

from __future__ import annotations

import numpy

import engine
import engine.functional as F
from engine import Tensor

from . import init
from .linear import Linear, _factory
from .module import Module, Parameter

__all__ = ["MultiheadAttention"]


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of size embed_dim / num_heads: packed q/k/v projections
    `in_proj_weight` (3E, E) and `in_proj_bias`, output projection `out_proj`.

    Inputs are (L, N, E) (or (N, L, E) with `batch_first=True`, or unbatched (L, E)). A bool
    `attn_mask` ((L, S) or (N * heads, L, S)) and `key_padding_mask` ((N, S)) mark with True the
    pairs to leave out (the opposite of scaled_dot_product_attention's bool mask, as in
    PyTorch); float masks are added to the scores. Returns (output, weights or None), the
    weights averaged over heads unless `average_attn_weights=False`.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads "
                f"{num_heads}"
            )
        if (
            add_bias_kv
            or add_zero_attn
            or kdim not in (None, embed_dim)
            or vdim
            not in (
                None,
                embed_dim,
            )
        ):
            raise NotImplementedError(
                "MultiheadAttention: add_bias_kv, add_zero_attn and kdim/vdim != embed_dim are "
                "not supported"
            )
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = dropout, batch_first
        kw = _factory(device, dtype)
        self.in_proj_weight = Parameter(engine.empty(3 * embed_dim, embed_dim, **kw))
        in_bias = Parameter(engine.empty(3 * embed_dim, **kw)) if bias else None
        self.register_parameter("in_proj_bias", in_bias)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's: Xavier-uniform packed projections, zero biases."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ):
        if is_causal and attn_mask is None:
            raise RuntimeError(
                "MultiheadAttention: is_causal is a hint about attn_mask; give the causal "
                "attn_mask too (as PyTorch requires)"
            )
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = (t.unsqueeze(1) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        if not self.batch_first or unbatched:  # (L, N, E) -> (N, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, L, E = query.shape
        S = key.shape[1]
        if E != self.embed_dim or key.shape[-1] != E or value.shape[-1] != E:
            raise RuntimeError(
                f"MultiheadAttention: expected embedding size {self.embed_dim}, got query "
                f"{query.shape}, key {key.shape}, value {value.shape}"
            )
        w, b = self.in_proj_weight, self.in_proj_bias
        q, k, v = (
            F.linear(x, w[i * E : (i + 1) * E], None if b is None else b[i * E : (i + 1) * E])
            for i, x in enumerate((query, key, value))
        )
        h, d = self.num_heads, self.head_dim
        q, k, v = (t.reshape(n, -1, h, d).transpose(1, 2) for t in (q, k, v))  # (N, H, *, D)
        scores = engine.matmul(q, k.transpose(-2, -1)) * (1.0 / float(numpy.sqrt(d)))
        mask = self._merged_mask(attn_mask, key_padding_mask, n, L, S, scores)
        if mask is not None:
            scores = scores + mask
        weights = F.softmax(scores, dim=-1)
        if self.dropout > 0.0:
            weights = F.dropout(weights, self.dropout, self.training)
        out = engine.matmul(weights, v).transpose(1, 2).reshape(n, L, E)
        out = self.out_proj(out)
        if not self.batch_first or unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out = out.squeeze(1)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, (weights.squeeze(0) if unbatched else weights)

    def _merged_mask(self, attn_mask, key_padding_mask, n, L, S, like):
        """One additive float mask broadcasting to (N, H, L, S) (-inf where left out)."""

        def additive(m):
            if m.dtype == numpy.bool_:
                zeros = engine.zeros(m.shape, dtype=like.dtype, device=like.device)
                return zeros.masked_fill(m, float("-inf"))
            return m.to(like.dtype)

        mask = None
        if attn_mask is not None:
            if attn_mask.ndim == 3:  # (N * H, L, S)
                attn_mask = attn_mask.reshape(n, self.num_heads, L, S)
            elif attn_mask.shape != (L, S):
                raise RuntimeError(
                    f"MultiheadAttention: attn_mask of shape {attn_mask.shape}, expected "
                    f"({L}, {S}) or ({n * self.num_heads}, {L}, {S})"
                )
            mask = additive(attn_mask)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (n, S):
                raise RuntimeError(
                    f"MultiheadAttention: key_padding_mask of shape {key_padding_mask.shape}, "
                    f"expected ({n}, {S})"
                )
            pad = additive(key_padding_mask).reshape(n, 1, 1, S)
            mask = pad if mask is None else mask + pad
        return mask

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
