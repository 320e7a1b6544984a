"""Hypothesis strategies for dilated attention inputs, shared by the reference and kernel tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from dilated_oracle import llama_tables
from hypothesis import assume
from hypothesis import strategies as st

from kernels.rope import RoPE


@dataclass(frozen=True)
class Case:
    batch: int
    seq: int
    heads: int
    kv_heads: int
    dim: int
    segment_lengths: tuple[int, ...]
    dilation_rates: tuple[int, ...]
    causal: bool
    rope_mode: str | None
    rope_offset: int
    seed: int

    def tensors(self, dtype=torch.float32, device="cpu"):
        gen = torch.Generator().manual_seed(self.seed)
        q = torch.randn(self.batch, self.seq, self.heads, self.dim, generator=gen).to(dtype)
        k = torch.randn(self.batch, self.seq, self.kv_heads, self.dim, generator=gen).to(dtype)
        v = torch.randn(self.batch, self.seq, self.kv_heads, self.dim, generator=gen).to(dtype)
        return q.to(device), k.to(device), v.to(device)

    def tables(self):
        """fp64 Llama tables long enough for true positions (and so for compressed ones)."""
        return llama_tables(self.rope_offset + self.seq, self.dim)

    def rope(self, device="cpu") -> RoPE | None:
        if self.rope_mode is None:
            return None
        cos, sin = self.tables()
        return RoPE(cos.float().to(device), sin.float().to(device), mode=self.rope_mode, offset=self.rope_offset)

    def oracle_rope(self):
        if self.rope_mode is None:
            return None
        cos, sin = self.tables()
        return cos, sin, self.rope_mode, self.rope_offset

    def kwargs(self, device="cpu") -> dict:
        return dict(
            segment_lengths=list(self.segment_lengths),
            dilation_rates=list(self.dilation_rates),
            causal=self.causal,
            rope=self.rope(device),
        )


@st.composite
def cases(
    draw, *, max_seq: int, dims=(8,), max_batch: int = 2, max_segments: int = 6, max_programs: int | None = None
) -> Case:
    """Lengths that are rarely multiples of w, rates that need not divide the head count, GQA ratios
    1, 3 and 4, causal or not, each RoPE mode.

    Each pattern cuts the sequence into at most ``max_segments`` segments (sometimes one longer than
    the sequence). ``max_programs`` bounds the Triton grid (segments x 64-row tiles x heads x batch,
    summed over patterns), which is what the interpreter's time grows with.
    """
    kv_heads = draw(st.integers(1, 2))
    heads = kv_heads * draw(st.sampled_from([1, 3, 4]))
    seq = draw(st.integers(1, max_seq))
    batch = draw(st.integers(1, max_batch))
    n_patterns = draw(st.integers(1, 3))
    rates = draw(st.lists(st.integers(1, 5), min_size=n_patterns, max_size=n_patterns))
    lengths = []
    for r in rates:
        per_segment = -(-seq // draw(st.integers(1, max_segments)))
        lengths.append(r * -(-per_segment // r) * draw(st.sampled_from([1, 1, 2])))
    if max_programs is not None:
        programs = sum(-(-seq // w) * -(-(w // r) // 64) for w, r in zip(lengths, rates)) * heads * batch
        assume(programs <= max_programs)
    return Case(
        batch=batch,
        seq=seq,
        heads=heads,
        kv_heads=kv_heads,
        dim=draw(st.sampled_from(dims)),
        segment_lengths=tuple(lengths),
        dilation_rates=tuple(rates),
        causal=draw(st.booleans()),
        rope_mode=draw(st.sampled_from([None, "true", "compressed"])),
        rope_offset=draw(st.sampled_from([0, 0, 5])),
        seed=draw(st.integers(0, 2**16)),
    )
