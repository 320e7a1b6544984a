"""The PyTorch reference against dilated attention built by hand from explicit index lists."""

import math

import pytest
import torch
from dilated_cases import Case, cases
from dilated_oracle import dense, dilated
from hypothesis import given, settings

import kernels.reference as reference


def check_against_oracle(case: Case) -> None:
    q, k, v = case.tensors()
    out, lse = reference.dilated_attention(q, k, v, **case.kwargs())
    want_out, want_lse = dilated(
        q, k, v, case.segment_lengths, case.dilation_rates, case.causal, rope=case.oracle_rope()
    )
    assert out.shape == q.shape and out.dtype == q.dtype
    assert lse.shape == (case.batch, case.heads, case.seq) and lse.dtype == torch.float32
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(want_lse))
    seen = ~torch.isneginf(want_lse)
    torch.testing.assert_close(lse.double()[seen], want_lse[seen], atol=1e-5, rtol=1e-5)


EXPLICIT = {
    # seq not a multiple of any w; r = 4 does not divide 6 heads; GQA 3
    "ragged-gqa3": Case(2, 37, 6, 2, 8, (8, 16), (1, 4), True, None, 0, 1),
    # three patterns, non-causal, true RoPE with an offset; GQA 4
    "noncausal-true-rope-gqa4": Case(1, 29, 8, 2, 8, (6, 12, 30), (2, 3, 5), False, "true", 3, 2),
    # compressed RoPE, causal, GQA 1
    "compressed-rope-mha": Case(1, 40, 4, 4, 8, (10, 20), (2, 4), True, "compressed", 0, 3),
    # compressed RoPE with an offset, non-causal, w longer than the sequence
    "compressed-offset-long-w": Case(2, 23, 3, 1, 8, (12, 64), (3, 4), False, "compressed", 7, 4),
    # a single window with r = 1 and a ragged tail
    "window": Case(1, 50, 2, 1, 8, (16,), (1,), True, None, 0, 5),
}


@pytest.mark.parametrize("case", EXPLICIT.values(), ids=EXPLICIT.keys())
def test_reference_matches_hand_built_dilated_attention(case):
    check_against_oracle(case)


@settings(max_examples=25, deadline=None)
@given(cases(max_seq=48))
def test_reference_matches_hand_built_dilated_attention_on_random_cases(case):
    check_against_oracle(case)


def test_rows_no_pattern_keeps_get_zero_and_minus_inf():
    """One head, w = 4, r = 2: head 0 keeps offsets 0 and 2 of each segment, never 1 or 3."""
    q = k = v = torch.randn(1, 10, 1, 8)
    out, lse = reference.dilated_attention(q, k, v, segment_lengths=[4], dilation_rates=[2])
    never_kept = [1, 3, 5, 7, 9]
    kept = [0, 2, 4, 6, 8]
    assert torch.equal(out[0, never_kept], torch.zeros(5, 1, 8))
    assert torch.isneginf(lse[0, 0, never_kept]).all()
    assert torch.isfinite(lse[0, 0, kept]).all()
    assert (out[0, kept].abs().sum(-1) > 0).all()


def test_one_pattern_covering_everything_is_dense_causal_attention():
    torch.manual_seed(6)
    q, k, v = torch.randn(2, 30, 6, 8), torch.randn(2, 30, 2, 8), torch.randn(2, 30, 2, 8)
    out, lse = reference.dilated_attention(q, k, v, segment_lengths=[32], dilation_rates=[1])
    want_out, want_lse = dense(q, k, v, 0)
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)


def test_patterns_merge_by_softmax_denominators():
    """The paper's combination: pattern i's output weighted by exp(lse_i) / sum_j exp(lse_j),
    here computed per row from single-pattern calls."""
    torch.manual_seed(7)
    q, k, v = torch.randn(1, 24, 2, 8), torch.randn(1, 24, 2, 8), torch.randn(1, 24, 2, 8)
    parts = [reference.dilated_attention(q, k, v, segment_lengths=[w], dilation_rates=[r]) for w, r in ((8, 1), (12, 2))]
    out, lse = reference.dilated_attention(q, k, v, segment_lengths=[8, 12], dilation_rates=[1, 2])
    for p in range(24):
        for h in range(2):
            dens = [math.exp(float(part_lse[0, h, p])) for _, part_lse in parts]
            want = sum(d * part_out[0, p, h] for d, (part_out, _) in zip(dens, parts)) / sum(dens)
            torch.testing.assert_close(out[0, p, h], want, atol=1e-5, rtol=1e-5)
            assert math.isclose(float(lse[0, h, p]), math.log(sum(dens)), rel_tol=1e-5, abs_tol=1e-5)


def test_memory_chunking_does_not_change_results(monkeypatch):
    """A tiny budget forces one segment per chunk."""
    case = EXPLICIT["ragged-gqa3"]
    q, k, v = case.tensors()
    whole = reference.dilated_attention(q, k, v, **case.kwargs())
    monkeypatch.setattr(reference, "SCORE_BUDGET_BYTES", 1)
    chunked = reference.dilated_attention(q, k, v, **case.kwargs())
    torch.testing.assert_close(chunked, whole)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_half_out_and_fp32_lse(dtype):
    case = EXPLICIT["noncausal-true-rope-gqa4"]
    q, k, v = case.tensors()
    want_out, want_lse = reference.dilated_attention(q, k, v, **case.kwargs())
    out, lse = reference.dilated_attention(q.to(dtype), k.to(dtype), v.to(dtype), **case.kwargs())
    assert out.dtype == dtype and lse.dtype == torch.float32
    torch.testing.assert_close(out.float(), want_out, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, want_lse, atol=2e-2, rtol=2e-2)
