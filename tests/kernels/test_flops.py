"""FLOP counts against pairs counted one by one from explicit row lists."""

import pytest

from kernels import dense_attention_flops, dilated_attention_flops


def pairs_by_hand(seq, heads, segment_lengths, dilation_rates, causal):
    pairs = 0
    for w, r in zip(segment_lengths, dilation_rates):
        for h in range(heads):
            for start in range(0, seq, w):
                rows = list(range(start + h % r, min(start + w, seq), r))
                pairs += sum(1 for i in range(len(rows)) for j in range(len(rows)) if not causal or j <= i)
    return pairs


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(
    "seq, heads, segment_lengths, dilation_rates",
    [
        (100, 9, (16, 32, 64), (1, 2, 4)),
        (37, 3, (12,), (6,)),  # r larger than the head count: offsets 3..5 unused
        (5, 4, (64,), (4,)),  # w longer than the sequence
        (64, 2, (64,), (1,)),
    ],
)
def test_dilated_flops_count_four_dim_per_attended_pair(causal, seq, heads, segment_lengths, dilation_rates):
    pairs = pairs_by_hand(seq, heads, segment_lengths, dilation_rates, causal)
    assert dilated_attention_flops(seq, heads, 64, segment_lengths, dilation_rates, causal=causal, batch=3) == 3 * 4 * 64 * pairs


def test_dense_flops_match_a_single_full_window():
    assert dense_attention_flops(300, 5, 128) == dilated_attention_flops(300, 5, 128, (300,), (1,))
    assert dense_attention_flops(7, 1, 1, causal=False) == 4 * 49
    assert dense_attention_flops(7, 1, 1) == 4 * 28
