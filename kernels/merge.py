"""Merging attention results by log-sum-exp.

If ``out_i`` is softmax attention over key set ``K_i`` with log-sum-exp ``lse_i``, then the softmax
over the union of disjoint ``K_i`` is ``sum_i exp(lse_i - lse) * out_i`` with
``lse = logsumexp_i lse_i``. LongNet combines its patterns this way (weights proportional to each
pattern's softmax denominator), flash-decoding combines key splits this way, and the engine combines
attention over the current context with attention over retrieved memory this way. One function
serves all three.

A row that saw no keys in a part has ``lse = -inf`` there and gets weight 0; a row that saw no keys
anywhere gets ``out = 0`` and ``lse = -inf``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def merge_attention(parts: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``[(out, lse), ...]`` over disjoint key sets into one ``(out, lse)``.

    Each ``out`` is ``(batch, seq, heads, dim)`` and each ``lse`` is ``(batch, heads, seq)`` fp32,
    as every kernel in this package returns them. The result has the first ``out``'s dtype.
    """
    if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence) or len(parts) == 0:
        raise ValueError("parts must be a non-empty sequence of (out, lse) pairs")
    for i, part in enumerate(parts):
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise ValueError(f"parts[{i}] must be an (out, lse) pair")
        out, lse = part
        if not isinstance(out, torch.Tensor) or out.dim() != 4:
            raise ValueError(f"parts[{i}] out must be a 4-D tensor (batch, seq, heads, dim)")
        batch, seq, heads, _ = out.shape
        if not isinstance(lse, torch.Tensor) or tuple(lse.shape) != (batch, heads, seq):
            raise ValueError(f"parts[{i}] lse must have shape {(batch, heads, seq)} to match its out")
        if out.shape != parts[0][0].shape:
            raise ValueError(f"parts[{i}] out has shape {tuple(out.shape)} but parts[0] has {tuple(parts[0][0].shape)}")
        if out.device != parts[0][0].device or lse.device != out.device:
            raise ValueError(f"parts[{i}] is on a different device than parts[0]")
    outs = torch.stack([out.float() for out, _ in parts])
    lses = torch.stack([lse.float() for _, lse in parts])
    out, lse = merge_stacked(outs, lses)
    return out.to(parts[0][0].dtype), lse


def merge_stacked(outs: torch.Tensor, lses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge along dim 0: ``outs (n, batch, seq, heads, dim)``, ``lses (n, batch, heads, seq)``; fp32 out."""
    lse = torch.logsumexp(lses, dim=0)
    # A row with lse = -inf everywhere would give exp(-inf - -inf) = nan: it saw nothing, weight 0.
    weights = torch.exp(lses - lse).nan_to_num(nan=0.0)
    out = (weights.transpose(-1, -2).unsqueeze(-1) * outs.float()).sum(dim=0)
    return out, lse
