"""Dilated attention in plain PyTorch: the specification every other backend is tested against.

It is written to be read, and it is also the CPU engine path when the Triton kernel cannot run, so
it bounds its memory by working through segments in chunks rather than materialising every
segment's score matrix at once. All arithmetic is fp32; ``out`` comes back in q's dtype and ``lse``
in fp32.

Semantics (LongNet, arXiv 2307.02486), for each pattern ``(w, r)``:

* cut the sequence into segments of ``w`` rows (the last one may be shorter);
* in each segment, head ``h`` keeps the rows at offsets ``s, s + r, s + 2r, ...`` with
  ``s = h mod r`` (its KV head ``h // (heads / kv_heads)`` supplies the keys and values at the same
  rows);
* softmax attention among the kept rows only, causal or not; rows the pattern does not keep get
  nothing from it (``lse = -inf``).

Patterns are merged per row by log-sum-exp (``kernels.merge``). A row no pattern keeps, which can
happen when no pattern has ``r = 1``, gets ``out = 0`` and ``lse = -inf``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kernels.merge import merge_attention
from kernels.rope import RoPE, apply_rope
from kernels.validation import check_attend_args, check_dilated_args

# Upper bound on the bytes of one chunk's fp32 score matrix; keeps 1M-token calls within memory.
SCORE_BUDGET_BYTES = 256 * 2**20


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture of dilated attention patterns; returns ``(out, lse)``, see the module docstring."""
    checked = check_dilated_args(q, k, v, segment_lengths, dilation_rates, causal, scale, rope)
    shapes, patterns, causal, scale, rope = (
        checked.shapes, checked.patterns, checked.causal, checked.scale, checked.rope
    )

    qf, kf, vf = q.float(), _expand_kv(k, shapes.group), _expand_kv(v, shapes.group)
    if rope is not None and rope.mode == "true":
        positions = rope.offset + torch.arange(shapes.q_len, device=q.device)
        qf = apply_rope(qf, rope.cos, rope.sin, positions)
        kf = apply_rope(kf, rope.cos, rope.sin, positions)
    compressed = rope if rope is not None and rope.mode == "compressed" else None
    # Merging pattern by pattern keeps two full-size outputs alive instead of one per pattern.
    out, lse = _one_pattern(qf, kf, vf, *patterns[0], causal, scale, compressed)
    for w, r in patterns[1:]:
        out, lse = merge_attention([(out, lse), _one_pattern(qf, kf, vf, w, r, causal, scale, compressed)])
    return out.to(q.dtype), lse


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal_offset: int,
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of a few query rows against (long) keys; returns ``(out, lse)``.

    Query row ``i`` sits at key index ``causal_offset + i``: with ``causal`` it sees keys
    ``0 .. causal_offset + i``. With ``rope`` (mode ``"true"`` only) key ``j`` is at position
    ``rope.offset + j`` and query ``i`` at ``rope.offset + causal_offset + i``.
    """
    checked = check_attend_args(q, k, v, causal_offset, causal, scale, rope)
    shapes, causal, scale, rope = checked.shapes, checked.causal, checked.scale, checked.rope

    qf, kf, vf = q.float(), _expand_kv(k, shapes.group), _expand_kv(v, shapes.group)
    q_index = causal_offset + torch.arange(shapes.q_len, device=q.device)
    k_index = torch.arange(shapes.k_len, device=q.device)
    if rope is not None:
        qf = apply_rope(qf, rope.cos, rope.sin, rope.offset + q_index)
        kf = apply_rope(kf, rope.cos, rope.sin, rope.offset + k_index)
    scores = torch.einsum("bihd,bjhd->bhij", qf * scale, kf)
    if causal:
        scores = scores.masked_fill_(k_index[None, :] > q_index[:, None], float("-inf"))
    out, lse = _softmax_attend(scores, vf.transpose(1, 2))
    return out.permute(0, 2, 1, 3).to(q.dtype), lse


def _one_pattern(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: int,
    r: int,
    causal: bool,
    scale: float,
    compressed: RoPE | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pattern ``(w, r)`` over fp32 q, k, v with as many KV heads as query heads.

    The whole segments and the ragged tail go separately: the tail is one shorter segment, so a
    pattern far longer than the sequence costs what the sequence needs, not what ``w`` would.
    """
    seq = q.shape[1]
    full = seq - seq % w
    parts = []
    if full:
        parts.append(_segments(q[:, :full], k[:, :full], v[:, :full], w, r, causal, scale, compressed))
    if full < seq:
        tail_w = r * -(-(seq - full) // r)  # the tail, rounded up to whole groups of r rows
        parts.append(_segments(q[:, full:], k[:, full:], v[:, full:], tail_w, r, causal, scale, compressed))
    return torch.cat([out for out, _ in parts], dim=1), torch.cat([lse for _, lse in parts], dim=2)


def _segments(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w: int,
    r: int,
    causal: bool,
    scale: float,
    compressed: RoPE | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``q.shape[1]`` that are either whole segments of ``w`` or one segment shorter than ``w``.

    Viewing each segment as ``(w / r, r)`` rows turns "the rows at offset s, s + r, ..." into the
    plain slice ``[:, :, :, s]``: no index lists. Rows padded on past the end are masked as keys
    and dropped as queries.
    """
    batch, length, heads, dim = q.shape
    n_seg = -(-length // w)
    kept = w // r
    as_segments = [
        _pad_to(t, n_seg * w).view(batch, n_seg, kept, r, heads, dim) for t in (q * scale, k, v)
    ]
    out = torch.zeros(batch, n_seg * w, heads, dim, device=q.device)
    lse = torch.full((batch, n_seg * w, heads), float("-inf"), device=q.device)
    out_view = out.view(batch, n_seg, kept, r, heads, dim)
    lse_view = lse.view(batch, n_seg, kept, r, heads)
    chunk = max(1, SCORE_BUDGET_BYTES // (4 * batch * kept * kept * -(-heads // r)))
    index = torch.arange(kept, device=q.device)
    for s in range(min(r, heads)):
        visible = (s + index * r < length)[None, :].expand(kept, kept)  # (query i, key j)
        if causal:
            visible = visible & (index[None, :] <= index[:, None])
        for start in range(0, n_seg, chunk):
            seg = slice(start, start + chunk)
            qs, ks, vs = (t[:, seg, :, s, s::r] for t in as_segments)  # (batch, segs, kept, heads_s, dim)
            if compressed is not None:
                local = compressed.offset + index
                qs = apply_rope(qs, compressed.cos, compressed.sin, local)
                ks = apply_rope(ks, compressed.cos, compressed.sin, local)
            scores = torch.einsum("bsihd,bsjhd->bshij", qs, ks).masked_fill_(~visible, float("-inf"))
            seg_out, seg_lse = _softmax_attend(scores, vs.transpose(2, 3))
            out_view[:, seg, :, s, s::r] = seg_out.transpose(2, 3)
            lse_view[:, seg, :, s, s::r] = seg_lse.transpose(2, 3)
    return out[:, :length], lse[:, :length].transpose(1, 2)


def _softmax_attend(scores: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(scores) @ v`` and the row log-sum-exp, overwriting ``scores`` (the big tensor: each
    pass over it costs more than the matmuls). A row of all ``-inf`` gets 0 and ``-inf``."""
    top = scores.amax(dim=-1, keepdim=True)
    top = top.masked_fill(top == float("-inf"), 0.0)
    probs = scores.sub_(top).exp_()
    total = probs.sum(dim=-1, keepdim=True)
    lse = (top + total.log()).squeeze(-1)
    probs.div_(total.clamp_min(torch.finfo(total.dtype).tiny))
    return probs @ v, lse


def _expand_kv(t: torch.Tensor, group: int) -> torch.Tensor:
    """KV head ``h // group`` serves query head ``h``: repeat each KV head ``group`` times, in fp32."""
    return t.float().repeat_interleave(group, dim=2)


def _pad_to(t: torch.Tensor, length: int) -> torch.Tensor:
    """Zero rows appended along the sequence dim up to ``length``."""
    return torch.nn.functional.pad(t, (0, 0, 0, 0, 0, length - t.shape[1]))
