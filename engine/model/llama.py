"""A Llama-family decoder in plain PyTorch: RMSNorm, RoPE, grouped-query attention, SwiGLU.

Covers Llama, SmolLM, Mistral and Qwen2-style models (q/k/v bias). The attention call is pluggable —
the engine swaps in dilated attention and attention over retrieved memory — so the layer hands it
q, k and v in the kernels' layout, (batch, seq, heads, dim), before RoPE, with their first position:
each attention decides which positions RoPE gives (true, or compressed inside a dilated pattern).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.weights import ModelConfig


class Attention(Protocol):
    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, layer: int, start: int) -> torch.Tensor:
        """q (B, T, H, D), k and v (B, T, KVH, D) for positions start..start+T, q and k before RoPE;
        returns (B, T, H, D). The attention decides which positions RoPE gives and what else is attended."""


SDPA_GQA = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 5)


def sdpa_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention (SDPA, after RoPE) with the queries aligned to the end of the keys.

    Grouped-query heads share their KV head inside SDPA (`enable_gqa`) rather than through copies of the
    keys and values: copying a 1k-token cache every decode step cost six times the attention itself on
    the CPU (16.5 ms against 2.8 ms a layer), and the results are identical. PyTorch before 2.5 has no
    `enable_gqa`: there the copies are made."""
    gqa = q.shape[2] != k.shape[2]
    q, k, v = (x.transpose(1, 2) for x in (q, k, v))
    if gqa and not SDPA_GQA:
        groups = q.shape[1] // k.shape[1]
        k, v, gqa = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1), False
    options = {"enable_gqa": True} if gqa else {}
    tq, tk = q.shape[2], k.shape[2]
    if tq == 1:
        out = F.scaled_dot_product_attention(q, k, v, **options)
    elif tq == tk:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, **options)
    else:
        allowed = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril(diagonal=tk - tq)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, **options)
    return out.transpose(1, 2)


@dataclass
class FullCausalAttention:
    """The model's own attention: true positions, every earlier token of the call visible."""

    cos: torch.Tensor
    sin: torch.Tensor

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        cos, sin = self.cos[start:start + q.shape[1]], self.sin[start:start + q.shape[1]]
        return sdpa_causal(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)


def rope_tables(config: ModelConfig, positions: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape (positions, head_dim) in the rotate-half convention (halves, not pairs)."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=device) / dim))
    angles = torch.outer(torch.arange(positions, dtype=torch.float64, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, D) rotated by the tables' rows for its T positions, cos/sin (T, D)."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos[:, None, :] + rotated * sin[:, None, :]).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


@dataclass
class KVCache:
    """Keys (after RoPE) and values per layer, preallocated for `capacity` positions."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, capacity: int, device, dtype) -> KVCache:
        shape = (batch, capacity, config.num_kv_heads, config.head_dim)
        return cls([torch.empty(shape, device=device, dtype=dtype) for _ in range(config.num_layers)],
                   [torch.empty(shape, device=device, dtype=dtype) for _ in range(config.num_layers)])

    @property
    def capacity(self) -> int:
        return self.k[0].shape[1]


@dataclass
class CachedCausalAttention:
    """Causal attention that keeps every call's keys and values, for token-by-token generation."""

    cache: KVCache
    cos: torch.Tensor
    sin: torch.Tensor

    def __call__(self, q, k, v, *, layer: int, start: int) -> torch.Tensor:
        end = start + q.shape[1]
        if end > self.cache.capacity:
            raise ValueError(f"start: {end} positions exceed the cache's capacity of {self.cache.capacity}")
        cos, sin = self.cos[start:end], self.sin[start:end]
        self.cache.k[layer][:, start:end] = apply_rope(k, cos, sin)
        self.cache.v[layer][:, start:end] = v
        return sdpa_causal(apply_rope(q, cos, sin), self.cache.k[layer][:, :end], self.cache.v[layer][:, :end])


class Block(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        self.index = index
        self.heads, self.kv_heads, self.head_dim = config.num_heads, config.num_kv_heads, config.head_dim
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_eps)
        self.q = nn.Linear(config.hidden_size, config.num_heads * config.head_dim, bias=config.attention_bias)
        self.k = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=config.attention_bias)
        self.v = nn.Linear(config.hidden_size, config.num_kv_heads * config.head_dim, bias=config.attention_bias)
        self.o = nn.Linear(config.num_heads * config.head_dim, config.hidden_size, bias=False)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_eps)
        self.gate = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, attention: Attention, start: int) -> torch.Tensor:
        batch, length, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(batch, length, self.heads, self.head_dim)
        k = self.k(h).view(batch, length, self.kv_heads, self.head_dim)
        v = self.v(h).view(batch, length, self.kv_heads, self.head_dim)
        attended = attention(q, k, v, layer=self.index, start=start)
        x = x + self.o(attended.reshape(batch, length, -1))
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config, i) for i in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_eps)
        self.lm_head = None if config.tie_embeddings else nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None

    def rope(self, positions: int) -> tuple[torch.Tensor, torch.Tensor]:
        """fp32 cos/sin tables covering at least `positions`, grown on demand, on the model's device.

        fp32 whatever the model's dtype: in bf16 the angles of far positions would lose their digits."""
        if self._rope is None or self._rope[0].shape[0] < positions:
            size = max(positions, self.config.trained_context)
            self._rope = rope_tables(self.config, size, device=self.embed.weight.device)
        return self._rope

    def cached_attention(self, batch: int, capacity: int) -> CachedCausalAttention:
        weight = self.embed.weight
        cache = KVCache.empty(self.config, batch, capacity, weight.device, weight.dtype)
        return CachedCausalAttention(cache, *self.rope(capacity))

    def run_layers(self, tokens: torch.Tensor, attention: Attention, layers: int, start: int = 0) -> torch.Tensor:
        """The residual stream after the first `layers` blocks: the engine stops where its recorders have
        what they need, rather than paying for the layers above the deepest retrieval head."""
        x = self.embed(tokens)
        for block in self.layers[:layers]:
            x = block(x, attention, start)
        return x

    def hidden_states(self, tokens: torch.Tensor, attention: Attention | None = None, start: int = 0) -> torch.Tensor:
        """Final-norm hidden states for `tokens` (B, T) at positions start..start+T."""
        if attention is None:
            attention = FullCausalAttention(*self.rope(start + tokens.shape[1]))
        return self.norm(self.run_layers(tokens, attention, len(self.layers), start))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(hidden, weight).float()

    def forward(self, tokens: torch.Tensor, attention: Attention | None = None, start: int = 0) -> torch.Tensor:
        return self.logits(self.hidden_states(tokens, attention, start))


def build_model(config: ModelConfig, weights: dict[str, torch.Tensor], device: torch.device,
                dtype: torch.dtype) -> Llama:
    """The model with `weights` (our naming) loaded, on `device` in `dtype`, in eval mode."""
    with torch.device("meta"):
        model = Llama(config)
    model.load_state_dict(weights, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)
