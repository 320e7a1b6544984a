"""Rotary position embeddings as the attention kernels apply them.

The kernels take q and k *before* RoPE and rotate them themselves, because dilated attention
decides per pattern which position a row has: its true position in the sequence, or its index
among the rows a dilated segment keeps ("compressed"), so that a pattern spanning further than the
model's trained context only shows it distances it was trained on.

Convention: Llama's "rotate_half". The head dim is split into two halves x1, x2 and
``rope(x, p) = x * cos[p] + rotate_half(x) * sin[p]`` with ``rotate_half(x) = cat(-x2, x1)``.
The tables are the ones a Llama-family model builds for itself (shape ``(max_positions, dim)``),
so the engine passes its model's tables unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

RoPEMode = Literal["true", "compressed"]
ROPE_MODES: tuple[str, ...] = ("true", "compressed")


@dataclass(frozen=True, eq=False)
class RoPE:
    """Rotary tables plus how the kernel assigns positions to rows.

    cos, sin: ``(max_positions, dim)`` tables in the rotate_half convention.
    mode: ``"true"`` gives row ``p`` of the sequence position ``offset + p``; ``"compressed"``
        gives the j-th row a dilated segment keeps position ``offset + j``.
    offset: the absolute position of the sequence's first row, so a segment that starts at
        absolute position ``P`` in the corpus can use true positions ``P, P+1, ...``. Attention
        scores only depend on position differences, so the offset changes results only through
        rounding and through which table rows must exist.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    mode: RoPEMode = "true"
    offset: int = 0

    def __post_init__(self) -> None:
        for name, table in (("cos", self.cos), ("sin", self.sin)):
            if not isinstance(table, torch.Tensor) or table.dim() != 2:
                raise ValueError(f"{name} must be a 2-D tensor (max_positions, dim), got {_describe(table)}")
            if not table.is_floating_point():
                raise ValueError(f"{name} must be a floating-point tensor, got {table.dtype}")
        if self.cos.shape != self.sin.shape:
            raise ValueError(f"sin has shape {tuple(self.sin.shape)} but cos has shape {tuple(self.cos.shape)}")
        if self.cos.device != self.sin.device:
            raise ValueError(f"sin is on {self.sin.device} but cos is on {self.cos.device}")
        if self.cos.shape[1] % 2:
            raise ValueError(f"cos must have an even dim (rotate_half splits it in two), got {self.cos.shape[1]}")
        if self.mode not in ROPE_MODES:
            raise ValueError(f"mode must be one of {ROPE_MODES}, got {self.mode!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or self.offset < 0:
            raise ValueError(f"offset must be a non-negative int, got {self.offset!r}")

    @property
    def max_positions(self) -> int:
        """How many positions the tables cover."""
        return self.cos.shape[0]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``cat(-x2, x1)`` over the last dim: the Llama convention's 90-degree rotation."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` of shape ``(..., seq, heads, dim)`` at ``positions`` of shape ``(seq,)``, in fp32."""
    c = cos[positions].float()[:, None, :]
    s = sin[positions].float()[:, None, :]
    x = x.float()
    return x * c + rotate_half(x) * s


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__
