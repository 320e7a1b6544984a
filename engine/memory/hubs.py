"""Hub correction of the retrieval heads' block scores: what a block scores against text in general.

Some blocks score high under MaxSim for every question whatever it asks (hubs: their keys sit near the queries
of most tokens). On real prose (bench/qa) the raw head scores put the gold block in the top 4 for under 10% of
questions while a hub took the top places for almost all; subtracting each block's mean score against a
background of ordinary text lifted the best head from 8% to 43% hit@4 (docs/benchmarks.md). The background is
a fixed sample of the store's own text, taken when the store is first processed and kept in its engine
config, so every segment's hub scores are measured against the same queries.

Numpy only: a segment's hub scores are computed where its state file is written, from the int8 keys stored.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from engine.memory.states import unit_keys

BACKGROUND_PASSAGES = 64
BACKGROUND_TOKENS = 24


def background_windows(ranges: list[tuple[int, int]], count: int = BACKGROUND_PASSAGES,
                       tokens: int = BACKGROUND_TOKENS) -> list[tuple[int, int]]:
    """`count` token windows of `tokens` spread evenly over `ranges` (fewer when the text is short)."""
    windows = [(start, min(start + tokens, end)) for begin, end in ranges for start in range(begin, end, tokens)]
    if len(windows) <= count:
        return windows
    step = len(windows) / count
    return [windows[int(i * step)] for i in range(count)]


def background_sample(ranges: list[tuple[int, int]], text_of: Callable[[int, int], str]) -> list[str]:
    """The background passages of a store: evenly spread windows of its text (`text_of(start, end)`), the blank
    ones left out."""
    return [text for text in (text_of(start, end).strip() for start, end in background_windows(ranges)) if text]


def block_hubs(keys: np.ndarray, queries: list[np.ndarray], block_tokens: int) -> np.ndarray:
    """(blocks, heads) float32: each block's MaxSim against every background query row, averaged over the rows.

    `keys` are a segment's stored int8 keys (tokens, heads, dim; unit length × 127), `queries[h]` the background's
    unit queries (rows, dim) for head h. A block is `block_tokens` keys from the segment's start (the last may be
    shorter); the segment must start on a block boundary, as every segment does.
    """
    tokens, heads, _ = keys.shape
    blocks = -(-tokens // block_tokens)
    hubs = np.zeros((blocks, heads), dtype=np.float32)
    unit = unit_keys(keys)
    for head in range(heads):
        sims = unit[:, head] @ queries[head].T  # tokens, rows
        padded = np.full((blocks * block_tokens, sims.shape[1]), -np.inf, dtype=np.float32)
        padded[:tokens] = sims
        hubs[:, head] = padded.reshape(blocks, block_tokens, -1).max(axis=1).mean(axis=1)
    return hubs
