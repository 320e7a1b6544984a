"""Fused Triton forward kernel for LongNet dilated attention.

Layout: one launch per pattern ``(w, r)``; a program owns ``BLOCK_M`` consecutive *kept* rows of
one segment, one head and one batch element. Kept row ``i`` of segment ``g`` for head ``h`` is
sequence row ``g*w + (h mod r) + i*r``, so the program reads its query rows and streams its key
rows with strided loads: nothing is gathered into a dense copy. Inside, it is the fused-attention
tutorial's loop: blocks of keys fully below the diagonal without masks, then the diagonal blocks
(and the ragged end of a short last segment) with masks.

Merging patterns: by default (``merge="fused"``) every launch after the first reads the running
``(out, lse)`` of its kept rows and folds its own result in by log-sum-exp before storing, so no
per-pattern buffers exist and each pattern only touches the rows it keeps. ``merge="separate"``
writes each pattern to its own buffers and merges them afterwards with ``kernels.merge``; it
exists so the benchmark can measure the two against each other.

Note: ``kernels.dilated_attention`` (the package attribute) is the dispatching function, which
shadows this module's name; import from here with ``from kernels.dilated_attention import ...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import triton
import triton.language as tl

from kernels.merge import merge_stacked
from kernels.rope import RoPE
from kernels.triton_blocks import attend_key_block, finish_rows, load_halves, rotate_halves
from kernels.triton_launch import (
    LOG2_E,
    check_block,
    check_triton_inputs,
    launch_options,
    precision,
    rope_tables,
    tile_ceiling,
)
from kernels.validation import check_dilated_args

MergeStrategy = Literal["fused", "separate"]


@triton.jit
def _dilated_fwd(
    Q, K, V, COS, SIN, OUT, LSE,
    stride_qb, stride_qn, stride_qh, stride_qd,
    stride_kb, stride_kn, stride_kh, stride_kd,
    stride_vb, stride_vn, stride_vh, stride_vd,
    stride_ob, stride_on, stride_oh, stride_od,
    stride_lb, stride_lh, stride_ln,
    stride_cn, stride_cd,
    seq_len, group, seg_w, rate, n_mblocks, rope_offset, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, ROPE: tl.constexpr, ROPE_COMPRESSED: tl.constexpr,
    MERGE: tl.constexpr, PRECISION: tl.constexpr,
):
    HALF: tl.constexpr = HEAD_DIM // 2
    pid = tl.program_id(0)
    h = tl.program_id(1)
    h64 = h.to(tl.int64)  # offsets in int64: lse's head stride is the sequence length
    b = tl.program_id(2).to(tl.int64)
    seg = pid // n_mblocks
    mb = pid % n_mblocks
    seg_start = seg * seg_w
    offset = h % rate
    first = seg_start + offset
    seg_rows = tl.minimum(seg_w, seq_len - seg_start)
    n_kept = (seg_rows - offset + rate - 1) // rate

    offs_m = mb * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_m = offs_m < n_kept
    rows_m = first.to(tl.int64) + offs_m.to(tl.int64) * rate
    q1, q2 = load_halves(Q + b * stride_qb + h64 * stride_qh, rows_m, stride_qn, stride_qd, mask_m, HALF, True)
    rope_first = rope_offset + first
    rope_step = rate
    if ROPE_COMPRESSED:
        rope_first = rope_offset
        rope_step = 1
    if ROPE:
        q1, q2 = rotate_halves(q1, q2, COS, SIN, rope_first + offs_m * rope_step, mask_m, stride_cn, stride_cd, HALF)

    # Keys [0, hi_full) are visible to every row of the block; [hi_full, hi) need masks.
    if CAUSAL:
        last_visible = offs_m
        hi = tl.minimum((mb + 1) * BLOCK_M, n_kept)
        hi_full = tl.minimum(mb * BLOCK_M, (n_kept // BLOCK_N) * BLOCK_N)
    else:
        last_visible = offs_m * 0 + n_kept
        hi = n_kept
        hi_full = (n_kept // BLOCK_N) * BLOCK_N
    active = (mb * BLOCK_M < n_kept).to(tl.int32)
    hi = hi * active
    hi_full = hi_full * active

    kv_head = (h // group).to(tl.int64)
    Kh = K + b * stride_kb + kv_head * stride_kh
    Vh = V + b * stride_vb + kv_head * stride_vh
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    for start_n in range(0, hi_full, BLOCK_N):
        acc, l_i, m_i = attend_key_block(
            acc, l_i, m_i, q1, q2, Kh, Vh, COS, SIN,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_cn, stride_cd,
            start_n, first, rate, rope_first, rope_step, n_kept, last_visible, qk_scale,
            HALF, HEAD_DIM, BLOCK_N, False, ROPE, PRECISION,
        )
    for start_n in range(hi_full, hi, BLOCK_N):
        acc, l_i, m_i = attend_key_block(
            acc, l_i, m_i, q1, q2, Kh, Vh, COS, SIN,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_cn, stride_cd,
            start_n, first, rate, rope_first, rope_step, n_kept, last_visible, qk_scale,
            HALF, HEAD_DIM, BLOCK_N, True, ROPE, PRECISION,
        )
    out, lse = finish_rows(acc, l_i, m_i)

    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = OUT + b * stride_ob + h64 * stride_oh + rows_m[:, None] * stride_on + offs_d[None, :] * stride_od
    l_ptrs = LSE + b * stride_lb + h64 * stride_lh + rows_m * stride_ln
    if MERGE:
        old_lse = tl.load(l_ptrs, mask=mask_m, other=float("-inf"))
        old_out = tl.load(o_ptrs, mask=mask_m[:, None], other=0.0).to(tl.float32)
        top = tl.maximum(old_lse, lse)
        top = tl.where(top == float("-inf"), 0.0, top)
        w_old = tl.exp(old_lse - top)
        w_new = tl.exp(lse - top)
        total = w_old + w_new
        safe_total = tl.where(total > 0.0, total, 1.0)
        out = (old_out * w_old[:, None] + out * w_new[:, None]) / safe_total[:, None]
        lse = tl.where(total > 0.0, top + tl.log(safe_total), float("-inf"))
    tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=mask_m[:, None])
    tl.store(l_ptrs, lse, mask=mask_m)


def dilated_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
    merge: MergeStrategy = "fused",
    block_m: int | None = None,
    block_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``kernels.reference.dilated_attention``, computed by the fused kernel.

    ``merge`` picks how patterns are combined (see the module docstring); ``block_m`` and
    ``block_n`` override the tile sizes (powers of two >= 16, ``block_m`` a multiple of
    ``block_n``) so tests can drive small inputs through several tiles.
    """
    checked = check_dilated_args(q, k, v, segment_lengths, dilation_rates, causal, scale, rope)
    shapes, patterns, causal, scale, rope = (
        checked.shapes, checked.patterns, checked.causal, checked.scale, checked.rope
    )
    check_triton_inputs(q)
    check_block("block_m", block_m)
    check_block("block_n", block_n)
    if block_m is not None and block_n is not None and block_m % block_n:
        raise ValueError(f"block_m = {block_m} must be a multiple of block_n = {block_n}")
    if merge not in ("fused", "separate"):
        raise ValueError(f"merge must be 'fused' or 'separate', got {merge!r}")

    batch, seq, heads, _ = q.shape
    if merge == "fused":
        # One pattern writes its result straight out; several accumulate in fp32 between launches.
        out = torch.zeros_like(q, dtype=q.dtype if len(patterns) == 1 else torch.float32)
        lse = torch.full((batch, heads, seq), float("-inf"), device=q.device, dtype=torch.float32)
        for i, (w, r) in enumerate(patterns):
            _launch(q, k, v, out, lse, w, r, shapes.group, causal, scale, rope, i > 0, block_m, block_n)
        return out.to(q.dtype), lse
    outs = torch.zeros((len(patterns), *q.shape), device=q.device, dtype=torch.float32)
    lses = torch.full((len(patterns), batch, heads, seq), float("-inf"), device=q.device, dtype=torch.float32)
    for i, (w, r) in enumerate(patterns):
        _launch(q, k, v, outs[i], lses[i], w, r, shapes.group, causal, scale, rope, False, block_m, block_n)
    out, lse = merge_stacked(outs, lses)
    return out.to(q.dtype), lse


def tile_sizes(q: torch.Tensor, kept: int, block_m: int | None, block_n: int | None) -> tuple[int, int]:
    """Tiles no taller than a segment's kept rows need, within ``tile_ceiling``."""
    ceiling_m, ceiling_n = tile_ceiling(q.device, q.dtype)
    bm = block_m or max(16, block_n or 16, min(ceiling_m, triton.next_power_of_2(kept)))
    bn = block_n or min(ceiling_n, bm)
    return bm, bn


def _launch(q, k, v, out, lse, w, r, group, causal, scale, rope, merge_into, block_m, block_n) -> None:
    """One pattern's launch over a grid of (segment x row tile, head, batch)."""
    batch, seq, heads, dim = q.shape
    kept = w // r
    bm, bn = tile_sizes(q, kept, block_m, block_n)
    n_mblocks = triton.cdiv(kept, bm)
    n_segments = triton.cdiv(seq, w)
    cos, sin, stride_cn, stride_cd = rope_tables(rope, q)
    grid = (n_segments * n_mblocks, heads, batch)
    _dilated_fwd[grid](
        q, k, v, cos, sin, out, lse,
        *q.stride(), *k.stride(), *v.stride(), *out.stride(), *lse.stride(),
        stride_cn, stride_cd,
        seq, group, w, r, n_mblocks, rope.offset if rope is not None else 0, scale * LOG2_E,
        HEAD_DIM=dim, BLOCK_M=bm, BLOCK_N=bn,
        CAUSAL=causal, ROPE=rope is not None, ROPE_COMPRESSED=rope is not None and rope.mode == "compressed",
        MERGE=merge_into, PRECISION=precision(q.dtype),
        **launch_options(q.device, dim),
    )
