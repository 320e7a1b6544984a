"""Attention strategies the engine plugs into the model: dilated attention over a corpus segment, and
wrappers that record what the engine needs from a forward pass (retrieval keys, attention weights)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

import kernels
from engine.model.llama import apply_rope, sdpa_causal


@dataclass
class DilatedAttention:
    """LongNet dilated attention inside one segment (kernels.dilated_attention), RoPE applied by the kernel.

    Positions count from the segment's start: attention depends only on distances, and a segment never
    sees another. `rope_mode="compressed"` gives the j-th row a dilated pattern keeps position j.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    segment_lengths: list[int]
    dilation_rates: list[int]
    rope_mode: str = "true"

    def is_one_window(self, length: int) -> bool:
        return self.dilation_rates == [1] and self.segment_lengths[0] >= length

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        if not q.is_cuda and self.is_one_window(q.shape[1]):
            # One undilated window covering the whole call is plain causal attention: on the CPU, where the
            # Triton kernel does not run, SDPA computes it an order of magnitude faster than the reference.
            cos, sin = self.cos[:q.shape[1]], self.sin[:q.shape[1]]
            return sdpa_causal(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        rope = kernels.RoPE(self.cos, self.sin, mode=self.rope_mode)
        out, _ = kernels.dilated_attention(q, k, v, segment_lengths=self.segment_lengths,
                                           dilation_rates=self.dilation_rates, rope=rope)
        return out


@dataclass
class KeyRecorder:
    """Passes through to `inner`, keeping the pre-RoPE keys (batch, tokens, KV heads, dim) of the layers asked for."""

    inner: object
    layers: set[int]
    keys: dict[int, torch.Tensor] = field(default_factory=dict)

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        if layer in self.layers:
            self.keys[layer] = k.detach()
        return self.inner(q, k, v, layer=layer, start=start)


@dataclass
class QueryRecorder:
    """Full causal attention that also keeps the pre-RoPE queries of the layers asked for."""

    cos: torch.Tensor
    sin: torch.Tensor
    layers: set[int]
    queries: dict[int, torch.Tensor] = field(default_factory=dict)

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        if layer in self.layers:
            self.queries[layer] = q[0].detach()
        cos, sin = self.cos[start:start + q.shape[1]], self.sin[start:start + q.shape[1]]
        return sdpa_causal(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)


@dataclass
class AttentionMass:
    """Full causal attention that adds up, per key position, the softmax weight the rows from
    `from_row` on put on it, over every layer and head: where an answer's tokens looked."""

    cos: torch.Tensor
    sin: torch.Tensor
    from_row: int
    mass: torch.Tensor | None = None

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        cos, sin = self.cos[start:start + q.shape[1]], self.sin[start:start + q.shape[1]]
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        rows = q[:, self.from_row:].float()
        keys = k.float().repeat_interleave(q.shape[2] // k.shape[2], dim=2)
        scores = torch.einsum("bqhd,bkhd->bhqk", rows, keys) / q.shape[-1] ** 0.5
        allowed = torch.ones(rows.shape[1], k.shape[1], dtype=torch.bool, device=q.device).tril(self.from_row)
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        layer_mass = weights.sum(dim=(0, 1, 2))
        self.mass = layer_mass if self.mass is None else self.mass + layer_mass
        return sdpa_causal(q, k, v)
