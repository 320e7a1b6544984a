"""The public entry points: pick the Triton kernel or the PyTorch reference for each call.

``backend="auto"`` runs the Triton kernel on CUDA tensors whose head dim it supports and the
reference everywhere else (CPU tensors in particular: the interpreter is a test tool, not a speed
path). ``backend="triton"`` insists on the kernel, which on the CPU needs ``TRITON_INTERPRET=1``
set before this package is imported; ``backend="reference"`` insists on the reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from kernels import reference
from kernels.rope import RoPE
from kernels.validation import check_attend_args, check_backend, check_dilated_args

try:
    from kernels.decode import attend_triton
    from kernels.dilated_attention import dilated_attention_triton
    from kernels.triton_launch import SUPPORTED_HEAD_DIMS, check_triton_inputs
except ImportError:  # triton is a Linux-only dependency; the reference still serves elsewhere
    attend_triton = dilated_attention_triton = None

Backend = Literal["auto", "triton", "reference"]


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
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """LongNet dilated attention; returns ``(out, lse)``.

    q is ``(batch, seq, heads, dim)``, k and v ``(batch, seq, kv_heads, dim)`` with ``heads`` a
    multiple of ``kv_heads``; ``out`` is like q and ``lse`` is ``(batch, heads, seq)`` fp32, the
    natural-log softmax denominator of each row (scores scaled by ``scale``).
    Pattern i cuts the sequence into segments of ``segment_lengths[i]`` rows (the last may be
    shorter); head h keeps the rows at offsets ``h mod r, h mod r + r, ...`` of each segment
    (``r = dilation_rates[i]``, which must divide the segment length) and attends among them,
    causally when ``causal``. Patterns are merged per row by log-sum-exp, which is the softmax over
    the union of what the row saw. A row no pattern keeps gets ``out = 0`` and ``lse = -inf``.

    ``rope`` (a ``kernels.RoPE``) rotates the pre-RoPE q and k inside the kernel, at true or
    compressed positions. ``scale`` defaults to ``1/sqrt(dim)``.
    """
    check_dilated_args(q, k, v, segment_lengths, dilation_rates, causal, scale, rope)
    kwargs = dict(segment_lengths=segment_lengths, dilation_rates=dilation_rates, causal=causal, scale=scale, rope=rope)
    if _use_triton(q, backend):
        return dilated_attention_triton(q, k, v, **kwargs)
    return reference.dilated_attention(q, k, v, **kwargs)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal_offset: int,
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense attention of a few query rows against long K/V; returns ``(out, lse)``.

    q is ``(batch, rows, heads, dim)``, k and v ``(batch, keys, kv_heads, dim)``. Query row i sits
    at key index ``causal_offset + i`` (for a decode step over a cache that already holds the new
    rows, ``causal_offset = keys - rows``); with ``causal`` it sees keys ``0 .. causal_offset + i``.
    ``rope`` must use mode ``"true"``: key j is at position ``rope.offset + j``. Merge the result
    with other attention through ``kernels.merge_attention``.
    """
    check_attend_args(q, k, v, causal_offset, causal, scale, rope)
    kwargs = dict(causal_offset=causal_offset, causal=causal, scale=scale, rope=rope)
    if _use_triton(q, backend):
        return attend_triton(q, k, v, **kwargs)
    return reference.attend(q, k, v, **kwargs)


def _use_triton(q: torch.Tensor, backend: str) -> bool:
    """Whether this call goes to the Triton kernel; ``"triton"`` raises if it cannot."""
    check_backend(backend)
    if backend == "reference":
        return False
    if dilated_attention_triton is None:
        if backend == "triton":
            raise ValueError("backend 'triton' needs the triton package, which is not installed")
        return False
    if backend == "triton":
        check_triton_inputs(q)
        return True
    return q.is_cuda and q.shape[-1] in SUPPORTED_HEAD_DIMS
