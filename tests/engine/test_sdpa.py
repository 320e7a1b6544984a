"""The model's causal attention against softmax attention written out, with and without SDPA's own GQA."""

from __future__ import annotations

import math

import pytest
import torch

import engine.model.llama
from engine.model.llama import sdpa_causal


def dense_causal(q, k, v):
    """Queries aligned to the end of the keys; each KV head serves its group of query heads."""
    groups = q.shape[2] // k.shape[2]
    tq, tk = q.shape[1], k.shape[1]
    out = torch.empty_like(q)
    for head in range(q.shape[2]):
        kv = head // groups
        scores = q[0, :, head] @ k[0, :, kv].T / math.sqrt(q.shape[-1])
        allowed = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)
        out[0, :, head] = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v[0, :, kv]
    return out


@pytest.mark.parametrize("own_gqa", [True, False])
@pytest.mark.parametrize("tq, tk", [(7, 7), (1, 9), (3, 11)])
def test_sdpa_causal_equals_softmax_attention_written_out(monkeypatch, own_gqa, tq, tk):
    monkeypatch.setattr(engine.model.llama, "SDPA_GQA", own_gqa)
    generator = torch.Generator().manual_seed(tq * 100 + tk)
    q = torch.randn(1, tq, 6, 16, generator=generator, dtype=torch.float64)
    k, v = (torch.randn(1, tk, 2, 16, generator=generator, dtype=torch.float64) for _ in range(2))
    assert torch.allclose(sdpa_causal(q, k, v), dense_causal(q, k, v), atol=1e-10)
