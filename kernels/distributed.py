"""LongNet's distributed dilated attention (arXiv 2307.02486, §3.1): one sequence split across ranks.

Rank i of the process group holds rows ``[i*n, (i+1)*n)`` of q, k and v, every rank the same ``n``.

* A pattern ``(w, r)`` whose segments fit in a chunk (``w`` divides ``n``) never looks past the
  chunk: it is computed locally by ``kernels.dilated_attention``, with RoPE at the chunk's true
  positions.
* A pattern whose segments span several chunks (``w`` a multiple of ``n``) needs the keys and values
  of the other ranks covering its segment. Each rank takes only its dilated rows (every r-th row, at
  the offsets its heads keep: 1/r of its keys, already sparse) and all-gathers them with the ranks of
  its segment, in a process group of just those ranks. Its queries then attend to the gathered rows
  of its own and the earlier ranks of the segment when causal (its own keys included: the diagonal
  is where a row sees itself), and to all of them otherwise.

All parts are merged per row by log-sum-exp, as on one device, so the result equals
``kernels.dilated_attention`` over the whole sequence, chunked by rank. Keys travel before RoPE in
the input dtype and are rotated by the receiver, which knows where every gathered row sits.

Every rank must call with the same patterns, causal flag and shapes: the all-gathers are collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from kernels.dispatch import Backend, attend, dilated_attention
from kernels.merge import merge_attention
from kernels.rope import RoPE, apply_rope
from kernels.validation import check_dilated_args, check_rope, check_rope_reach


@dataclass
class Exchange:
    """Payload bytes this rank all-gathered, per pattern ``(w, r)``: what it sent (its dilated keys and
    values, once per other rank of its segment) and what it received (the other ranks' rows)."""

    sent: dict[tuple[int, int], int] = field(default_factory=dict)
    received: dict[tuple[int, int], int] = field(default_factory=dict)

    @property
    def total_received(self) -> int:
        return sum(self.received.values())

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())


class SpanGroups:
    """Process groups of consecutive ranks that share a segment, one set per span (ranks per segment).

    Making a group is collective over the whole world, so every rank makes every group of a span,
    in the same order; keeping them here makes that cost once per span, not once per call.
    """

    def __init__(self) -> None:
        if not dist.is_initialized():
            raise ValueError("distributed dilated attention needs an initialised torch.distributed process group")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self._mine: dict[int, object] = {}

    def group(self, span: int):
        """This rank's group of ``span`` consecutive ranks (the last group of the world may be shorter)."""
        if span not in self._mine:
            for first in range(0, self.world, span):
                ranks = list(range(first, min(first + span, self.world)))
                made = dist.new_group(ranks)
                if self.rank in ranks:
                    self._mine[span] = made
        return self._mine[span]


def distributed_dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    causal: bool = True,
    scale: float | None = None,
    rope: RoPE | None = None,
    groups: SpanGroups | None = None,
    backend: Backend = "auto",
) -> tuple[torch.Tensor, torch.Tensor, Exchange]:
    """This rank's rows of dilated attention over the sequence all ranks hold together.

    q ``(batch, n, heads, dim)`` and k, v ``(batch, n, kv_heads, dim)`` are this rank's chunk; returns
    ``(out, lse, exchange)`` for the same rows, with ``out`` and ``lse`` laid out as
    ``kernels.dilated_attention`` returns them. ``rope.offset`` is the position of the whole sequence's
    first row. ``groups`` reuses process groups across calls (made on first use otherwise).
    """
    checked = check_dilated_args(q, k, v, segment_lengths, dilation_rates, causal, scale, None)
    groups = groups or SpanGroups()
    n = q.shape[1]
    local = [(w, r) for w, r in checked.patterns if w <= n]
    spanning = [(w, r) for w, r in checked.patterns if w > n]
    for w, _r in local:
        if n % w:
            raise ValueError(f"segment length {w} must divide the {n} rows each rank holds (or be a multiple of them)")
    for w, r in spanning:
        if w % n or n % r:
            raise ValueError(f"segment length {w} spans ranks, so it must be a multiple of the {n} rows each rank "
                             f"holds, and {n} a multiple of its dilation rate {r}")
    check_rope(rope, q)
    _check_rope_reach(rope, n, groups.world, spanning)

    exchange = Exchange()
    parts = []
    if local:
        shifted = None if rope is None else RoPE(rope.cos, rope.sin, mode=rope.mode,
                                                 offset=rope.offset + (groups.rank * n if rope.mode == "true" else 0))
        out, lse = dilated_attention(q, k, v, segment_lengths=[w for w, _ in local],
                                     dilation_rates=[r for _, r in local], causal=checked.causal,
                                     scale=checked.scale, rope=shifted, backend=backend)
        parts.append((out.float(), lse))
    for w, r in spanning:
        parts.append(_spanning_pattern(q, k, v, w, r, checked.causal, checked.scale, rope, groups, exchange, backend))
    out, lse = merge_attention(parts) if len(parts) > 1 else parts[0]
    return out.to(q.dtype), lse, exchange


def _check_rope_reach(rope: RoPE | None, n: int, world: int, spanning: list[tuple[int, int]]) -> None:
    """The tables must cover the whole sequence's true positions, or the most rows a segment keeps."""
    if rope is None:
        return
    if rope.mode == "true":
        check_rope_reach(rope, rope.offset + world * n - 1)
    elif spanning:
        check_rope_reach(rope, rope.offset + max(min(w, world * n) // r for w, r in spanning) - 1)


def _spanning_pattern(q, k, v, w, r, causal, scale, rope, groups, exchange, backend):
    """One pattern whose segments span ``w / n`` ranks: all-gather dilated K/V within the segment's ranks."""
    batch, n, heads, dim = q.shape
    group_size = heads // k.shape[2]
    span = w // n
    first_rank = groups.rank - groups.rank % span
    members = min(span, groups.world - first_rank)
    mine = groups.rank - first_rank  # this rank's place among its segment's ranks
    kept = n // r  # rows each rank keeps per head offset; n is a multiple of r
    # Every (KV head, offset) some query head reads: a KV head's rows at one offset travel once.
    pairs = sorted({(h // group_size, h % r) for h in range(heads)})
    k_rows = k.view(batch, kept, r, k.shape[2], dim)
    v_rows = v.view(batch, kept, r, v.shape[2], dim)
    payload = torch.stack([torch.stack([rows[:, :, s, kv] for kv, s in pairs], dim=2) for rows in (k_rows, v_rows)])
    if members > 1:
        pieces = [torch.empty_like(payload) for _ in range(members)]
        dist.all_gather(pieces, payload.contiguous(), group=groups.group(span))
        gathered = torch.cat(pieces, dim=2)  # (k|v, batch, members * kept, pairs, dim) in segment order
        size = payload.numel() * payload.element_size()
        exchange.sent[(w, r)] = size * (members - 1)
        exchange.received[(w, r)] = size * (members - 1)
    else:
        gathered = payload
    visible = (mine + 1) * kept if causal else members * kept
    keys, values = gathered[0][:, :visible].float(), gathered[1][:, :visible].float()

    out = torch.zeros(batch, n, heads, dim, device=q.device)
    lse = torch.full((batch, heads, n), float("-inf"), device=q.device)
    index = torch.arange(visible, device=q.device)
    for p, (kv, s) in enumerate(pairs):
        readers = [h for h in range(heads) if (h // group_size, h % r) == (kv, s)]
        rows = q[:, s::r][:, :, readers].float()
        key = keys[:, :, p:p + 1]
        if rope is not None:
            if rope.mode == "true":
                q_pos = rope.offset + groups.rank * n + s + torch.arange(kept, device=q.device) * r
                k_pos = rope.offset + first_rank * n + s + index * r
            else:
                q_pos = rope.offset + mine * kept + torch.arange(kept, device=q.device)
                k_pos = rope.offset + index
            rows = apply_rope(rows, rope.cos, rope.sin, q_pos)
            key = apply_rope(key, rope.cos, rope.sin, k_pos)
        part_out, part_lse = attend(rows, key, values[:, :, p:p + 1], causal_offset=mine * kept, causal=causal,
                                    scale=scale, backend=backend)
        for i, h in enumerate(readers):
            out[:, s::r, h] = part_out[:, :, i].float()
            lse[:, h, s::r] = part_lse[:, i]
    return out, lse
