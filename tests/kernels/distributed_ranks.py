"""What each rank runs in the distributed dilated attention tests (spawned processes import it by name)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from dilated_oracle import llama_tables

from kernels.rope import RoPE

ROWS_PER_RANK = 16


@dataclass(frozen=True)
class Case:
    segment_lengths: tuple[int, ...]
    dilation_rates: tuple[int, ...]
    causal: bool
    rope_mode: str | None
    heads: int = 4
    kv_heads: int = 2
    dim: int = 8
    batch: int = 2
    rope_offset: int = 3

    def tensors(self, world: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole sequence's q, k, v, the same in every process (seeded by the case, not by hash())."""
        gen = torch.Generator().manual_seed(zlib.crc32(repr(self).encode()))
        seq = world * ROWS_PER_RANK
        q = torch.randn(self.batch, seq, self.heads, self.dim, generator=gen)
        k = torch.randn(self.batch, seq, self.kv_heads, self.dim, generator=gen)
        v = torch.randn(self.batch, seq, self.kv_heads, self.dim, generator=gen)
        return q, k, v

    def rope(self, world: int) -> RoPE | None:
        if self.rope_mode is None:
            return None
        cos, sin = llama_tables(self.rope_offset + world * ROWS_PER_RANK, self.dim)
        return RoPE(cos.float(), sin.float(), mode=self.rope_mode, offset=self.rope_offset)


def run_rank(rank: int, world: int, rendezvous: str, cases: list[Case], out_dir: str) -> None:
    """Joins the gloo group, computes this rank's rows of every case and saves them with the bytes received."""
    from kernels.distributed import SpanGroups, distributed_dilated_attention

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    try:
        groups = SpanGroups()
        results = []
        rows = slice(rank * ROWS_PER_RANK, (rank + 1) * ROWS_PER_RANK)
        for case in cases:
            q, k, v = (t[:, rows] for t in case.tensors(world))
            out, lse, exchange = distributed_dilated_attention(
                q, k, v, segment_lengths=list(case.segment_lengths), dilation_rates=list(case.dilation_rates),
                causal=case.causal, rope=case.rope(world), groups=groups)
            results.append({"out": out, "lse": lse, "received": dict(exchange.received)})
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
