"""Argument checks shared by every attention entry point.

Each check raises ``ValueError`` naming the offending argument, so a caller learns which of its
inputs is wrong without reading kernel code. They run before any backend is chosen, so the
reference and the Triton kernel reject exactly the same inputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from kernels.rope import RoPE

SUPPORTED_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
BACKENDS: tuple[str, ...] = ("auto", "triton", "reference")


@dataclass(frozen=True)
class Shapes:
    """Sizes read off validated q, k, v."""

    batch: int
    q_len: int
    k_len: int
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def group(self) -> int:
        """Query heads per KV head (grouped-query attention)."""
        return self.heads // self.kv_heads


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, same_length: bool) -> Shapes:
    """Check q ``(batch, seq, heads, dim)`` against k, v ``(batch, seq_k, kv_heads, dim)``.

    ``same_length`` demands ``seq_k == seq`` (self-attention over one sequence).
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must have 4 dims (batch, seq, heads, dim), got shape {tuple(t.shape)}")
        if t.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
        if any(size == 0 for size in t.shape):
            raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    for name, t in (("k", k), ("v", v)):
        if t.dtype != q.dtype:
            raise ValueError(f"{name} has dtype {t.dtype} but q has {q.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} is on {t.device} but q is on {q.device}")
    if v.shape != k.shape:
        raise ValueError(f"v has shape {tuple(v.shape)} but k has shape {tuple(k.shape)}")
    batch, q_len, heads, head_dim = q.shape
    k_batch, k_len, kv_heads, k_dim = k.shape
    if k_batch != batch:
        raise ValueError(f"k has batch {k_batch} but q has batch {batch}")
    if same_length and k_len != q_len:
        raise ValueError(f"k has sequence length {k_len} but q has {q_len}")
    if k_dim != head_dim:
        raise ValueError(f"k has head dim {k_dim} but q has {head_dim}")
    if heads % kv_heads:
        raise ValueError(f"k has {kv_heads} heads, which does not divide q's {heads} heads")
    return Shapes(batch, q_len, k_len, heads, kv_heads, head_dim)


def check_patterns(segment_lengths: Sequence[int], dilation_rates: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Return the patterns as ``((w, r), ...)`` after checking the paper's constraints.

    ``w`` must be a multiple of ``r`` so that every full segment keeps exactly ``w / r`` rows per
    head; the kernel's block layout relies on it.
    """
    for name, values in (("segment_lengths", segment_lengths), ("dilation_rates", dilation_rates)):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise ValueError(f"{name} must be a sequence of ints, got {type(values).__name__}")
        if len(values) == 0:
            raise ValueError(f"{name} must not be empty")
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}[{i}] must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name}[{i}] must be positive, got {value}")
    if len(dilation_rates) != len(segment_lengths):
        raise ValueError(
            f"dilation_rates has {len(dilation_rates)} entries but segment_lengths has {len(segment_lengths)}"
        )
    for i, (w, r) in enumerate(zip(segment_lengths, dilation_rates)):
        if w % r:
            raise ValueError(f"segment_lengths[{i}] = {w} is not a multiple of dilation_rates[{i}] = {r}")
    return tuple(zip(segment_lengths, dilation_rates))


def resolve_scale(scale: float | None, head_dim: int) -> float:
    """The softmax temperature: ``1/sqrt(dim)`` unless given."""
    if scale is None:
        return 1.0 / math.sqrt(head_dim)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    return float(scale)


def check_flag(name: str, value: object) -> bool:
    """Booleans only: a stray int or string for ``causal`` is more likely a mistake than a choice."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return value


def check_rope(rope: RoPE | None, q: torch.Tensor) -> RoPE | None:
    """Check that ``rope`` is a ``RoPE`` whose tables match q's head dim and device."""
    if rope is None:
        return None
    if not isinstance(rope, RoPE):
        raise ValueError(f"rope must be a kernels.RoPE or None, got {type(rope).__name__}")
    if rope.cos.shape[1] != q.shape[-1]:
        raise ValueError(f"rope tables have dim {rope.cos.shape[1]} but q has head dim {q.shape[-1]}")
    if rope.cos.device != q.device:
        raise ValueError(f"rope tables are on {rope.cos.device} but q is on {q.device}")
    return rope


def check_rope_reach(rope: RoPE, last_position: int) -> None:
    """The tables must have a row for every position a call rotates to."""
    if last_position >= rope.max_positions:
        raise ValueError(
            f"rope tables cover {rope.max_positions} positions but position {last_position} is needed"
        )


def check_dilated_rope(rope: RoPE | None, q: torch.Tensor, patterns: tuple[tuple[int, int], ...]) -> RoPE | None:
    """``rope`` for ``dilated_attention``: true positions reach the sequence's end, compressed ones
    reach the most rows any segment keeps."""
    rope = check_rope(rope, q)
    if rope is None:
        return None
    seq_len = q.shape[1]
    if rope.mode == "true":
        check_rope_reach(rope, rope.offset + seq_len - 1)
    else:
        check_rope_reach(rope, rope.offset + max(-(-min(w, seq_len) // r) for w, r in patterns) - 1)
    return rope


def check_causal_offset(causal_offset: int) -> int:
    """A non-negative int: the key index the first query row sits at."""
    if isinstance(causal_offset, bool) or not isinstance(causal_offset, int) or causal_offset < 0:
        raise ValueError(f"causal_offset must be a non-negative int, got {causal_offset!r}")
    return causal_offset


def check_attend_rope(rope: RoPE | None, q: torch.Tensor, shapes: Shapes, causal_offset: int) -> RoPE | None:
    """``rope`` for ``attend``: true positions only, since there are no dilated segments to compress."""
    rope = check_rope(rope, q)
    if rope is None:
        return None
    if rope.mode != "true":
        raise ValueError(f"rope mode must be 'true' for attend, got {rope.mode!r}")
    check_rope_reach(rope, rope.offset + max(causal_offset + shapes.q_len, shapes.k_len) - 1)
    return rope


def check_backend(backend: str) -> str:
    """One of ``BACKENDS``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


@dataclass(frozen=True)
class DilatedArgs:
    """Everything ``dilated_attention`` takes besides the tensors, checked."""

    shapes: Shapes
    patterns: tuple[tuple[int, int], ...]
    causal: bool
    scale: float
    rope: RoPE | None


def check_dilated_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool,
    scale: float | None,
    rope: RoPE | None,
) -> DilatedArgs:
    """All of ``dilated_attention``'s checks, in one order for every backend and device."""
    shapes = check_qkv(q, k, v, same_length=True)
    patterns = check_patterns(segment_lengths, dilation_rates)
    return DilatedArgs(
        shapes=shapes,
        patterns=patterns,
        causal=check_flag("causal", causal),
        scale=resolve_scale(scale, shapes.head_dim),
        rope=check_dilated_rope(rope, q, patterns),
    )


@dataclass(frozen=True)
class AttendArgs:
    """Everything ``attend`` takes besides the tensors, checked."""

    shapes: Shapes
    causal_offset: int
    causal: bool
    scale: float
    rope: RoPE | None


def check_attend_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal_offset: int,
    causal: bool,
    scale: float | None,
    rope: RoPE | None,
) -> AttendArgs:
    """All of ``attend``'s checks, in one order for every backend and device."""
    shapes = check_qkv(q, k, v, same_length=False)
    causal_offset = check_causal_offset(causal_offset)
    return AttendArgs(
        shapes=shapes,
        causal_offset=causal_offset,
        causal=check_flag("causal", causal),
        scale=resolve_scale(scale, shapes.head_dim),
        rope=check_attend_rope(rope, q, shapes, causal_offset),
    )
