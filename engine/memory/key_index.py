"""The searchable index over every stored retrieval key: exact while a store is small, IVF once it is large.

An exact search reads every key for every question token, so its cost grows with the store (measured
in `bench/bench_key_search.py`). Above `EXACT_MAX_ROWS` rows the keys go into an inverted file instead:
k-means lists over the keys, and each query reads only the `probe_count` lists whose centroids match
it best. Question queries are far from the keys they match (their best match has cosine ≈ 0.5, while a
key's nearest key has ≈ 0.9), so a query's neighbours spread over many lists and the probes must cover
a larger share of the lists than usual for IVF (figures in docs/benchmarks.md).

The lists hold 8-bit codes with a fixed range that reproduces the stored int8 keys exactly, so a key the
approximate index finds gets the same score as in the exact index, at 72 bytes a key (code and id)
against float32's 256: only which keys are seen can differ. HNSW was measured too and not taken: it
builds many times slower than the IVF lists fill and its float vectors and links take several times
their memory (docs/benchmarks.md).

Lists are trained on the keys present when a store crosses the threshold, and trained again whenever it
has grown `RETRAIN_GROWTH` times since, so segments added later (`refresh`) go into lists that still fit
them, and the keys added over a store's life, retraining included, stay under 4/3 of its size. Trained
lists are kept in `<store>/index/` (`engine.memory.index_file`): training takes far longer than a search.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from engine.memory import index_file
from engine.memory.config import EngineConfig
from engine.memory.states import read_state, read_state_hubs, unit_keys
from ingest import catalog
from ingest.store import Store

log = logging.getLogger(__name__)

# Exact up to 2M rows: 0.6 s a question at 2M on 2 shared cores, a small part of the 5 s first-token budget,
# with nothing to train; above, the IVF lists (trained once, kept) search 4M rows 10 times faster.
EXACT_MAX_ROWS = 2_000_000
RETRAIN_GROWTH = 4
TRAIN_ROWS_PER_LIST = 40  # faiss's k-means asks for at least 39 points a centroid
MIN_LISTS, MAX_LISTS = 1024, 16384
PROBED_SHARE, MIN_PROBES = 8, 256  # a query reads 1/8 of the lists, and at least 256 (see probe_count)
# int8 key k is stored as k / 127; codes 0..254 decode to (code + 0.5) / 255 * span + low = (code - 127) / 127.
CODE_LOW, CODE_SPAN = -127.5 / 127, 255 / 127


def list_count(rows: int) -> int:
    """IVF lists for `rows` keys: the power of two nearest √rows, within [MIN_LISTS, MAX_LISTS], and never
    more than `rows` allow `TRAIN_ROWS_PER_LIST` each (only small stores under a lowered threshold: tests)."""
    lists = min(MAX_LISTS, max(MIN_LISTS, 2 ** round(math.log2(math.sqrt(max(rows, 1))))))
    return max(1, min(lists, rows // TRAIN_ROWS_PER_LIST))


def probe_count(lists: int) -> int:
    """Lists a query reads: 1/8 of them, but at least 256 (a quarter of the lists where that is fewer).

    Measured (bench/bench_key_search.py, 1M/4M/10M rows): 1/8 of 1024 lists found 98% of the exact
    candidates and the same 4 best blocks for 7 of 10 questions, 256 of them 99.6% and 10 of 10; 1/8 of
    2048 and of 4096 lists (4M, 10M rows) 98.7% and 99.6%, 10 of 10. Fewer lists are coarser, so a
    query's neighbours sit in a larger share of them."""
    return max(1, lists // PROBED_SHARE, min(MIN_PROBES, lists // 4))


def sample_step(rows: int) -> int:
    """Every how many rows a key is drawn to train the lists of `rows` keys."""
    return max(1, rows // (TRAIN_ROWS_PER_LIST * list_count(rows)))


def approximate_index(dim: int, lists: int) -> faiss.IndexIVFScalarQuantizer:
    """An untrained IVF index whose 8-bit codes store int8/127 keys without loss (no residuals: the
    codes hold the keys themselves, so the fixed range fits every list)."""
    index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, lists, faiss.ScalarQuantizer.QT_8bit_uniform,
                                          faiss.METRIC_INNER_PRODUCT, False)
    index.nprobe = probe_count(lists)
    return index


def train_approximate(index: faiss.IndexIVFScalarQuantizer, sample: np.ndarray) -> None:
    """Trains the lists' centroids on `sample` (unit keys), then fixes the codes' range to the int8 keys'."""
    index.train(np.ascontiguousarray(sample))
    faiss.copy_array_to_vector(np.array([CODE_LOW, CODE_SPAN], dtype=np.float32), index.sq.trained)


@dataclass
class KeyIndex:
    """One faiss inner-product index per retrieval head over every stored token key.

    Segments are only ever added to a store, so an open index catches up by adding the state files of
    segments recorded since (`refresh`): a long-running reader (the web app) sees what an ingest beside it
    commits without reading every state again. A segment is recorded only after its state file is whole.
    An index given the store's `config` keeps its trained lists in `<store>/index/` (`engine.memory.index_file`)
    and starts from them at the next open; one without (benches) never writes there.
    """

    indexes: list[faiss.Index]
    positions: np.ndarray  # row -> token position in the sequence
    segments: dict[int, int] = field(default_factory=dict)  # token_start -> token_end, in row order
    exact_max_rows: int = EXACT_MAX_ROWS
    trained_rows: int = 0  # rows the IVF lists were trained on; 0 while the index is exact
    config: EngineConfig | None = None
    saved_rows: int = 0  # rows at the last write of the index file (or failed try: retried an eighth later)
    hubs: np.ndarray | None = None  # (blocks, heads) hub scores by block number; zeros where a state has none
    _row_blocks: tuple | None = field(default=None, repr=False)  # (positions, block_tokens, blocks, row places)

    def row_blocks(self, block_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """The blocks the index holds keys of, in order, and each row's place among them: kept while `positions`
        is the same array (every change replaces it), so that every question does not sort the positions again."""
        cached = self._row_blocks
        if cached is None or cached[0] is not self.positions or cached[1] != block_tokens:
            blocks, places = np.unique(self.positions // block_tokens, return_inverse=True)
            self._row_blocks = cached = (self.positions, block_tokens, blocks, places)
        return cached[2], cached[3]

    def exact_keys(self, head: int) -> np.ndarray | None:
        """The unit keys of `head` in row order, read in place from the exact index; None once it is approximate
        (its lists hold codes, not an array of keys)."""
        index = self.indexes[head]
        if self.approximate or not isinstance(index, faiss.IndexFlat):
            return None
        return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)

    def block_hubs(self, blocks: list[int], head: int) -> np.ndarray:
        """The hub scores of `blocks` for `head` (0 for blocks the index holds none for)."""
        if self.hubs is None:
            return np.zeros(len(blocks))
        numbers = np.asarray(blocks, dtype=np.int64)
        inside = numbers < len(self.hubs)
        return np.where(inside, self.hubs[np.minimum(numbers, len(self.hubs) - 1), head], 0.0)

    def set_hubs(self, first_block: int, hubs: np.ndarray) -> None:
        """Records the hub scores (blocks, heads) of the blocks from `first_block` on."""
        end = first_block + len(hubs)
        if self.hubs is None or len(self.hubs) < end:
            grown = np.zeros((max(end, 2 * len(self.hubs) if self.hubs is not None else 0), hubs.shape[1]),
                             dtype=np.float32)
            if self.hubs is not None:
                grown[:len(self.hubs)] = self.hubs
            self.hubs = grown
        self.hubs[first_block:end] = hubs

    @classmethod
    def build(cls, store: Store, config: EngineConfig, exact_max_rows: int | None = None) -> KeyIndex:
        """The store's index: exact up to `exact_max_rows` (default `EXACT_MAX_ROWS`) rows, else IVF."""
        index = cls.exact(len(config.heads), len(config.key_means[0]),
                          EXACT_MAX_ROWS if exact_max_rows is None else exact_max_rows)
        index.config = config
        index.refresh(store)
        return index

    @classmethod
    def exact(cls, heads: int, dim: int, exact_max_rows: int = EXACT_MAX_ROWS) -> KeyIndex:
        return cls([faiss.IndexFlatIP(dim) for _ in range(heads)], np.zeros(0, dtype=np.int64),
                   exact_max_rows=exact_max_rows)

    @classmethod
    def trained(cls, sample: np.ndarray, rows: int, exact_max_rows: int = EXACT_MAX_ROWS) -> KeyIndex:
        """An empty approximate index whose lists, `list_count(rows)` per head, are trained on `sample`
        (int8 keys: tokens, heads, dim, drawn evenly from the keys it is to hold)."""
        lists = list_count(rows)
        indexes = [approximate_index(sample.shape[2], lists) for _ in range(sample.shape[1])]
        for head, index in enumerate(indexes):
            train_approximate(index, unit_keys(sample[:, head]))
        return cls(indexes, np.zeros(0, dtype=np.int64), exact_max_rows=exact_max_rows, trained_rows=rows)

    @property
    def tokens(self) -> int:
        return len(self.positions)

    @property
    def approximate(self) -> bool:
        return self.trained_rows > 0

    def refresh(self, store: Store) -> int:
        """Adds the segments recorded since the last call; returns how many. Past the threshold, and again
        each time the store has grown `RETRAIN_GROWTH` times since the lists were trained, the index is
        first replaced by newly trained lists (from the index file when another process saved them)."""
        recorded = catalog.segment_ranges(store.db)
        added = sum(start not in self.segments for start in recorded)
        rows = sum(end - start for start, end in recorded.items())
        if self._due(rows):
            self._replace(store, recorded, rows)
        self.add_segments(store.root, [(start, end) for start, end in recorded.items() if start not in self.segments])
        if self.approximate and self.config is not None and self.tokens - self.saved_rows >= self.saved_rows // 8:
            self._save(store)  # an eighth more than the file holds: the next open should not add them again
        return added

    def add_segments(self, root: Path, segments: list[tuple[int, int]]) -> None:
        """Adds the state files of `segments` (token_start, token_end), in that order."""
        positions = [self.positions]
        block_tokens = self.config.block_tokens if self.config is not None else None
        for start, _ in segments:
            begin, end, keys, hubs = read_state_hubs(root, start)
            self._add_to_heads(keys)
            if hubs is not None and block_tokens:
                self.set_hubs(begin // block_tokens, hubs)
            positions.append(np.arange(begin, end, dtype=np.int64))
            self.segments[start] = end
        self.positions = np.concatenate(positions)

    def add_keys(self, positions: np.ndarray, keys: np.ndarray) -> None:
        """Adds int8 keys (tokens, heads, dim) at their token positions, outside any segment (benches)."""
        self._add_to_heads(keys)
        self.positions = np.concatenate([self.positions, positions.astype(np.int64)])

    def _add_to_heads(self, keys: np.ndarray) -> None:
        unit = unit_keys(keys)
        for head, index in enumerate(self.indexes):
            index.add(np.ascontiguousarray(unit[:, head]))

    def _due(self, rows: int, trained_rows: int | None = None) -> bool:
        """Whether `rows` keys need (new) lists, over lists trained on `trained_rows` (this index's)."""
        trained = self.trained_rows if trained_rows is None else trained_rows
        return rows > self.exact_max_rows and rows >= RETRAIN_GROWTH * trained

    def _replace(self, store: Store, recorded: dict[int, int], rows: int) -> None:
        """Takes the saved lists if they are not themselves due for training, else trains them here and saves."""
        saved = index_file.load(store, self.config) if self.config is not None else None
        if saved is not None and not self._due(rows, saved.trained_rows):
            for index in saved.indexes:
                index.nprobe = probe_count(index.nlist)
            self.indexes, self.segments, self.trained_rows = saved.indexes, saved.segments, saved.trained_rows
            self.hubs = saved.hubs
            self.positions = segment_positions(saved.segments)
            self.saved_rows = self.tokens
            return
        step, sample, seen = sample_step(rows), [], 0
        for start in recorded:  # a first pass draws the sample: the float keys are never all in memory at once
            keys = read_state(store.root, start)[2]
            sample.append(keys[(-seen) % step::step])  # rows seen + i with (seen + i) % step == 0
            seen += len(keys)
        log.info("training the key index's lists on %d of %d keys", len(np.concatenate(sample)), rows)
        trained = KeyIndex.trained(np.concatenate(sample), rows, self.exact_max_rows)
        trained.config = self.config
        trained.add_segments(store.root, list(recorded.items()))
        self.indexes, self.positions, self.segments, self.trained_rows, self.hubs = (
            trained.indexes, trained.positions, trained.segments, rows, trained.hubs)
        if self.config is not None:
            self._save(store)

    def _save(self, store: Store) -> None:
        index_file.save(store, self.config,
                        index_file.SavedIndex(self.indexes, self.segments, self.trained_rows, self.hubs))
        self.saved_rows = self.tokens


def stored_rows(db) -> int:
    """Keys the store holds for each head: one for every token of every recorded segment."""
    return catalog.processed_tokens(db)


def segment_positions(segments: dict[int, int]) -> np.ndarray:
    """Row -> token position of an index holding `segments` (token_start -> token_end) in that order."""
    return np.concatenate([np.zeros(0, dtype=np.int64)] +
                          [np.arange(start, end, dtype=np.int64) for start, end in segments.items()])
