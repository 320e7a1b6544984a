"""Triton kernel for a handful of query rows against long K/V (the answer path's decode step).

Flash-decoding layout: with few query rows there is little parallelism along the queries, so the
keys are cut into ``num_splits`` chunks that separate programs attend to; each writes a partial
``(out, lse)`` and the partials are merged by log-sum-exp. A program also packs every query head
of one KV group (times every query row) into the rows of its tile, so a KV row is read once per
group rather than once per query head.

Returns ``lse`` with ``out`` so the result can be merged with other attention (retrieved memory,
dilated patterns) through ``kernels.merge_attention``.
"""

from __future__ import annotations

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
from kernels.validation import check_attend_args

# Fewer keys than this per split would spend more on merging partials than the split saves.
MIN_KEYS_PER_SPLIT = 256


@triton.jit
def _attend_fwd(
    Q, K, V, COS, SIN, OUT, LSE,
    stride_qb, stride_qn, stride_qh, stride_qd,
    stride_kb, stride_kn, stride_kh, stride_kd,
    stride_vb, stride_vn, stride_vh, stride_vd,
    stride_os, stride_ob, stride_on, stride_oh, stride_od,
    stride_ls, stride_lb, stride_lh, stride_ln,
    stride_cn, stride_cd,
    n_rows, n_keys, group, causal_offset, chunk, n_row_blocks, rope_offset, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, ROPE: tl.constexpr, PRECISION: tl.constexpr,
):
    HALF: tl.constexpr = HEAD_DIM // 2
    split = tl.program_id(0)
    kv_head = (tl.program_id(1) // n_row_blocks).to(tl.int64)
    row_block = tl.program_id(1) % n_row_blocks
    b = tl.program_id(2).to(tl.int64)

    # Tile row t is query row t // group of query head kv_head * group + t % group (int64).
    offs_t = row_block * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_t = offs_t < n_rows * group
    row = offs_t // group
    head = kv_head * group + offs_t % group
    q_offsets = row.to(tl.int64) * stride_qn + head * stride_qh
    q1, q2 = load_halves(Q + b * stride_qb, q_offsets, 1, stride_qd, mask_t, HALF, True)
    if ROPE:
        q1, q2 = rotate_halves(q1, q2, COS, SIN, rope_offset + causal_offset + row, mask_t, stride_cn, stride_cd, HALF)

    lo = split * chunk
    hi = tl.minimum(lo + chunk, n_keys)
    if CAUSAL:
        last_visible = causal_offset + row
        first_row = (row_block * BLOCK_M) // group
        last_row = (tl.minimum(row_block * BLOCK_M + BLOCK_M, n_rows * group) - 1) // group
        hi = tl.minimum(hi, causal_offset + last_row + 1)
        all_see = tl.minimum(hi, causal_offset + first_row + 1)
    else:
        last_visible = row * 0 + n_keys
        all_see = hi
    # Keys [lo, hi_full) are visible to every row of the tile; [hi_full, hi) need masks.
    hi_full = lo + (tl.maximum(all_see - lo, 0) // BLOCK_N) * BLOCK_N

    Kh = K + b * stride_kb + kv_head * stride_kh
    Vh = V + b * stride_vb + kv_head * stride_vh
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    for start_n in range(lo, hi_full, BLOCK_N):
        acc, l_i, m_i = attend_key_block(
            acc, l_i, m_i, q1, q2, Kh, Vh, COS, SIN,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_cn, stride_cd,
            start_n, 0, 1, rope_offset, 1, hi, last_visible, qk_scale,
            HALF, HEAD_DIM, BLOCK_N, False, ROPE, PRECISION,
        )
    for start_n in range(hi_full, hi, BLOCK_N):
        acc, l_i, m_i = attend_key_block(
            acc, l_i, m_i, q1, q2, Kh, Vh, COS, SIN,
            stride_kn, stride_kd, stride_vn, stride_vd, stride_cn, stride_cd,
            start_n, 0, 1, rope_offset, 1, hi, last_visible, qk_scale,
            HALF, HEAD_DIM, BLOCK_N, True, ROPE, PRECISION,
        )
    out, lse = finish_rows(acc, l_i, m_i)

    offs_d = tl.arange(0, HEAD_DIM)
    o_ptrs = (OUT + split.to(tl.int64) * stride_os + b * stride_ob + row.to(tl.int64)[:, None] * stride_on
              + head[:, None] * stride_oh + offs_d[None, :] * stride_od)
    l_ptrs = LSE + split.to(tl.int64) * stride_ls + b * stride_lb + head * stride_lh + row * stride_ln
    tl.store(o_ptrs, out, mask=mask_t[:, None])
    tl.store(l_ptrs, lse, mask=mask_t)


def attend_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal_offset: int,
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
    num_splits: int | None = None,
    block_n: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``kernels.reference.attend``, computed by the split-K Triton kernel.

    ``num_splits`` overrides how many key chunks run in parallel (default: enough programs to fill
    the GPU, 1 under the interpreter); ``block_n`` overrides the key tile.
    """
    checked = check_attend_args(q, k, v, causal_offset, causal, scale, rope)
    shapes, causal, scale, rope = checked.shapes, checked.causal, checked.scale, checked.rope
    check_triton_inputs(q)
    check_block("block_n", block_n)
    if num_splits is not None and (isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 1):
        raise ValueError(f"num_splits must be a positive int, got {num_splits!r}")

    batch, n_rows, heads, dim = q.shape
    tile_rows = n_rows * shapes.group
    bm = max(16, min(64, triton.next_power_of_2(tile_rows)))
    bn = block_n or tile_ceiling(q.device, q.dtype)[1]
    n_row_blocks = triton.cdiv(tile_rows, bm)
    splits = num_splits or default_splits(q, shapes.k_len, shapes.kv_heads * n_row_blocks * batch)
    chunk = triton.cdiv(triton.cdiv(shapes.k_len, splits), bn) * bn
    splits = triton.cdiv(shapes.k_len, chunk)

    outs = torch.empty((splits, batch, n_rows, heads, dim), device=q.device, dtype=torch.float32)
    lses = torch.empty((splits, batch, heads, n_rows), device=q.device, dtype=torch.float32)
    cos, sin, stride_cn, stride_cd = rope_tables(rope, q)
    grid = (splits, shapes.kv_heads * n_row_blocks, batch)
    _attend_fwd[grid](
        q, k, v, cos, sin, outs, lses,
        *q.stride(), *k.stride(), *v.stride(), *outs.stride(), *lses.stride(),
        stride_cn, stride_cd,
        n_rows, shapes.k_len, shapes.group, causal_offset, chunk, n_row_blocks,
        rope.offset if rope is not None else 0, scale * LOG2_E,
        HEAD_DIM=dim, BLOCK_M=bm, BLOCK_N=bn, CAUSAL=causal, ROPE=rope is not None, PRECISION=precision(q.dtype),
        **launch_options(q.device, dim),
    )
    if splits == 1:
        return outs[0].to(q.dtype), lses[0]
    out, lse = merge_stacked(outs, lses)
    return out.to(q.dtype), lse


def default_splits(q: torch.Tensor, n_keys: int, programs_per_split: int) -> int:
    """Enough key splits for about two programs per GPU multiprocessor, none under the interpreter."""
    if q.device.type != "cuda":
        return 1
    target = 2 * torch.cuda.get_device_properties(q.device).multi_processor_count
    return max(1, min(triton.cdiv(n_keys, MIN_KEYS_PER_SPLIT), triton.cdiv(target, programs_per_split)))
