"""Triton device functions shared by the dilated and the decode kernels.

Both kernels are flash-attention loops (Triton's fused-attention tutorial): a block of query rows
stays in registers while blocks of key rows stream past, with an online softmax. What differs is
which rows they read, so the helpers take rows as "first row + index * step" and leave the choice
of rows to the kernels. No gather is ever materialised: every load is a strided pointer load.

Head vectors are handled as two halves throughout, because RoPE's rotate_half convention mixes
the first half of the head dim with the second: ``q.k = q1.k1 + q2.k2`` after rotating each half.

Scores are kept in base 2 (``qk_scale`` includes ``log2(e)``) so the softmax uses ``exp2``.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_halves(base, rows, row_stride, dim_stride, mask, HALF: tl.constexpr, MASKED: tl.constexpr):
    """Load rows ``rows`` (int64 row numbers) as their two head-dim halves, zeros where masked.

    Without ``MASKED`` the loads are unpredicated, as in the tutorial's off-diagonal blocks.
    """
    offs_d = tl.arange(0, HALF)
    ptrs = base + rows[:, None] * row_stride + offs_d[None, :] * dim_stride
    if MASKED:
        x1 = tl.load(ptrs, mask=mask[:, None], other=0.0)
        x2 = tl.load(ptrs + HALF * dim_stride, mask=mask[:, None], other=0.0)
    else:
        x1 = tl.load(ptrs)
        x2 = tl.load(ptrs + HALF * dim_stride)
    return x1, x2


@triton.jit
def rotate_halves(x1, x2, COS, SIN, positions, mask, stride_cn, stride_cd, HALF: tl.constexpr):
    """RoPE in the rotate_half convention: ``(x1*c1 - x2*s1, x2*c2 + x1*s2)`` at ``positions``.

    Returns the halves in the input's dtype, so the following ``tl.dot`` runs on the tensor cores
    at the input precision exactly as it would for pre-rotated inputs.
    """
    offs_d = tl.arange(0, HALF)
    rows = positions.to(tl.int64)[:, None] * stride_cn
    c1 = tl.load(COS + rows + offs_d[None, :] * stride_cd, mask=mask[:, None], other=0.0)
    c2 = tl.load(COS + rows + (offs_d + HALF)[None, :] * stride_cd, mask=mask[:, None], other=0.0)
    s1 = tl.load(SIN + rows + offs_d[None, :] * stride_cd, mask=mask[:, None], other=0.0)
    s2 = tl.load(SIN + rows + (offs_d + HALF)[None, :] * stride_cd, mask=mask[:, None], other=0.0)
    a = x1.to(tl.float32)
    b = x2.to(tl.float32)
    r1 = a * c1.to(tl.float32) - b * s1.to(tl.float32)
    r2 = b * c2.to(tl.float32) + a * s2.to(tl.float32)
    return r1.to(x1.dtype), r2.to(x2.dtype)


@triton.jit
def attend_key_block(
    acc, l_i, m_i, q1, q2,
    K, V, COS, SIN,
    stride_kn, stride_kd, stride_vn, stride_vd, stride_cn, stride_cd,
    start_n, key_first, key_step, rope_first, rope_step,
    n_keys, last_visible, qk_scale,
    HALF: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr,
    MASKED: tl.constexpr, ROPE: tl.constexpr, PRECISION: tl.constexpr,
):
    """One online-softmax step over key indices ``start_n .. start_n + BLOCK_N``.

    Key index ``j`` is row ``key_first + j * key_step`` of K and V (K, V already point at the
    batch and KV head) and rotates to position ``rope_first + j * rope_step``. With ``MASKED``,
    key ``j`` counts only if ``j < n_keys`` and ``j <= last_visible[i]`` for query row ``i``;
    without it the caller guarantees every key in the block is visible to every row.
    """
    offs_n = start_n + tl.arange(0, BLOCK_N)
    in_range = offs_n < n_keys
    rows = offs_n.to(tl.int64) * key_step + key_first
    k1, k2 = load_halves(K, rows, stride_kn, stride_kd, in_range, HALF, MASKED)
    if ROPE:
        k1, k2 = rotate_halves(k1, k2, COS, SIN, rope_first + offs_n * rope_step, in_range,
                               stride_cn, stride_cd, HALF)
    qk = tl.dot(q1, tl.trans(k1), input_precision=PRECISION)
    qk = tl.dot(q2, tl.trans(k2), qk, input_precision=PRECISION)
    qk = qk * qk_scale
    if MASKED:
        visible = in_range[None, :] & (offs_n[None, :] <= last_visible[:, None])
        qk = tl.where(visible, qk, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(qk, 1))
    # A row that has seen no visible key yet keeps m = -inf; subtracting 0 then keeps exp2 at 0.
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
    p = tl.math.exp2(qk - m_safe[:, None])
    alpha = tl.math.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    offs_d = tl.arange(0, HEAD_DIM)
    v_ptrs = V + rows[:, None] * stride_vn + offs_d[None, :] * stride_vd
    if MASKED:
        v = tl.load(v_ptrs, mask=in_range[:, None], other=0.0)
    else:
        v = tl.load(v_ptrs)
    acc = acc * alpha[:, None]
    acc = tl.dot(p.to(v.dtype), v, acc, input_precision=PRECISION)
    return acc, l_i, m_new


@triton.jit
def finish_rows(acc, l_i, m_i):
    """Normalise the accumulator; ``lse`` in natural-log units. Rows that saw nothing: 0, -inf."""
    seen = l_i > 0.0
    out = acc / tl.where(seen, l_i, 1.0)[:, None]
    lse = tl.where(seen, (m_i + tl.math.log2(tl.where(seen, l_i, 1.0))) * 0.6931471805599453, float("-inf"))
    return out, lse
