"""merge_attention: attention over disjoint key sets merges into attention over their union."""

import math

import pytest
import torch
from dilated_oracle import dense

from kernels.merge import merge_attention


def split_attention(q, k, v, cuts):
    """Attention of every query row over each slice of keys, from the oracle (non-causal)."""
    bounds = [0, *cuts, k.shape[1]]
    return [dense(q, k[:, a:b], v[:, a:b], 0, causal=False) for a, b in zip(bounds, bounds[1:])]


def test_merging_key_splits_gives_attention_over_all_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 20, 2, 8), torch.randn(2, 20, 2, 8)
    whole_out, whole_lse = dense(q, k, v, 0, causal=False)
    out, lse = merge_attention(split_attention(q, k, v, [5, 6, 13]))
    torch.testing.assert_close(out.double(), whole_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), whole_lse, atol=1e-5, rtol=1e-5)


def test_a_part_that_saw_nothing_gets_no_weight():
    torch.manual_seed(1)
    out_a, lse_a = torch.randn(1, 4, 2, 8), torch.randn(1, 2, 4)
    empty = (torch.full_like(out_a, 5.0), torch.full_like(lse_a, -math.inf))
    out, lse = merge_attention([(out_a, lse_a), empty])
    torch.testing.assert_close(out, out_a)
    torch.testing.assert_close(lse, lse_a)


def test_rows_that_saw_nothing_anywhere_get_zero_and_minus_inf():
    nothing = (torch.zeros(1, 3, 2, 8), torch.full((1, 2, 3), -math.inf))
    out, lse = merge_attention([nothing, nothing])
    assert torch.equal(out, torch.zeros(1, 3, 2, 8))
    assert torch.isneginf(lse).all()


def test_result_keeps_the_first_parts_dtype():
    part = (torch.randn(1, 3, 2, 8, dtype=torch.float16), torch.zeros(1, 2, 3))
    out, lse = merge_attention([part, part])
    assert out.dtype == torch.float16 and lse.dtype == torch.float32


@pytest.mark.parametrize(
    "parts",
    [
        [],
        "ab",
        [(torch.zeros(1, 3, 2, 8),)],
        [(torch.zeros(1, 3, 2), torch.zeros(1, 2, 3))],
        [(torch.zeros(1, 3, 2, 8), torch.zeros(1, 3, 2))],
        [(torch.zeros(1, 3, 2, 8), torch.zeros(1, 2, 3)), (torch.zeros(1, 4, 2, 8), torch.zeros(1, 2, 4))],
    ],
)
def test_bad_parts_are_refused_by_name(parts):
    with pytest.raises(ValueError, match="parts"):
        merge_attention(parts)
