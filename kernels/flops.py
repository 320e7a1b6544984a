"""FLOP counts for attention, counting only the work a pattern actually does.

Every (query, key) pair a row attends to costs ``4 * dim`` FLOPs: ``2 * dim`` for the score
``q . k`` (a multiply and an add per element) and ``2 * dim`` for adding ``p * v`` into the output.
Softmax exponentials, masking and the merge are ignored, as in the flash-attention papers, so
"effective TFLOP/s" of a dilated kernel and of dense attention are comparable: each is the useful
matrix work divided by time.

The pair counts are exact: a causal set of ``n`` rows has ``n (n + 1) / 2`` pairs (the diagonal
included), a non-causal one ``n^2``; the ragged last segment and heads whose offset falls past its
end are counted as they are, not rounded to whole segments.
"""

from __future__ import annotations

from collections.abc import Sequence


def dilated_attention_flops(
    seq_len: int,
    heads: int,
    head_dim: int,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    *,
    causal: bool = True,
    batch: int = 1,
) -> int:
    """FLOPs of ``kernels.dilated_attention`` on one call of these sizes (forward only)."""
    pairs = 0
    for w, r in zip(segment_lengths, dilation_rates):
        full_segments, tail = divmod(seq_len, w)
        for h in range(heads):
            offset = h % r
            pairs += full_segments * _pairs(_kept(w, offset, r), causal)
            pairs += _pairs(_kept(tail, offset, r), causal)
    return 4 * head_dim * batch * pairs


def dense_attention_flops(seq_len: int, heads: int, head_dim: int, *, causal: bool = True, batch: int = 1) -> int:
    """FLOPs of full softmax attention over ``seq_len`` rows, counted the same way."""
    return 4 * head_dim * batch * heads * _pairs(seq_len, causal)


def _kept(rows: int, offset: int, rate: int) -> int:
    """How many of ``rows`` consecutive rows sit at ``offset, offset + rate, ...``."""
    return max(0, -(-(rows - offset) // rate))


def _pairs(n: int, causal: bool) -> int:
    return n * (n + 1) // 2 if causal else n * n
