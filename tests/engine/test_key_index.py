"""The key index over stores of synthetic keys (no model): the approximate (IVF) index, forced by a low
threshold, finds what a numpy brute force finds, keeps every row at its token across refreshes and
retraining, and starts from its saved lists only when they match the catalog and the settings."""

from __future__ import annotations

import numpy as np
import pytest

from engine.answer.retrieval import CANDIDATES_PER_TOKEN, block_maxsim, candidate_matches, model_block_scores
from engine.memory import index_file
from engine.memory.config import EngineConfig
from engine.memory.key_index import KeyIndex, unit_keys
from engine.memory.states import write_states
from ingest import catalog
from ingest.store import INDEX, Store

DIM, SEGMENT, BLOCK = 64, 2048, 64
CONFIG = EngineConfig(model_digest="test", heads=[(0, 0)], kv_heads=[0], key_means=[[0.0] * DIM])


def random_keys(rng: np.random.Generator, tokens: int) -> np.ndarray:
    """Unit keys stored as the engine stores them: int8, (tokens, heads, dim)."""
    unit = rng.standard_normal((tokens, 1, DIM))
    unit /= np.linalg.norm(unit, axis=-1, keepdims=True)
    return np.round(unit * 127).astype(np.int8)


def record(store: Store, start: int, keys: np.ndarray) -> None:
    """A processed segment as the engine leaves one: state file first, then the catalog row."""
    write_states(store.root, [(start, start + len(keys), keys)])
    catalog.record_segment(store.db, start, start + len(keys))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "store", write=True) as opened:
        yield opened


def brute_force_scores(keys: np.ndarray, queries: np.ndarray) -> dict[int, float]:
    """MaxSim block scores from first principles: each query's 256 best keys, best per block, summed."""
    similarities = queries @ unit_keys(keys[:, 0]).T
    scores: dict[int, float] = {}
    for row in similarities:
        best: dict[int, float] = {}
        for position in np.argsort(-row)[:CANDIDATES_PER_TOKEN]:
            block = int(position) // BLOCK
            best[block] = max(best.get(block, -1.0), float(row[position]))
        for block, similarity in best.items():
            scores[block] = scores.get(block, 0.0) + similarity / len(queries)
    return scores


def own_rows(index: KeyIndex, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The token each key is found at when it is itself the query (its own row is its best match)."""
    similarities, rows = index.indexes[0].search(unit_keys(keys[:, 0]), 1)
    assert np.all(similarities[:, 0] > 0.95)
    return index.positions[rows[:, 0]]


def test_approximate_index_finds_the_planted_block_the_brute_force_finds(store):
    rng = np.random.default_rng(1)
    keys = random_keys(rng, 8 * SEGMENT)
    queries = unit_keys(random_keys(rng, 3)[:, 0])
    planted = 100
    for offset, query in zip([5, 20, 40], queries):
        keys[planted * BLOCK + offset, 0] = np.round(query * 127).astype(np.int8)
    for start in range(0, len(keys), SEGMENT):
        record(store, start, keys[start:start + SEGMENT])

    expected = brute_force_scores(keys, queries)
    assert max(expected, key=expected.get) == planted
    index = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    assert index.approximate
    scores = model_block_scores(index, [queries], BLOCK)
    assert max(scores, key=scores.get) == planted
    blocks, matches = candidate_matches(index, [queries], BLOCK)
    assert block_maxsim(blocks, matches[0])[blocks.index(planted)] == pytest.approx(expected[planted], abs=1e-4)  # 8-bit codes: int8 exactly


def test_refresh_across_the_threshold_and_retraining_keeps_rows_at_their_tokens(store):
    rng = np.random.default_rng(2)
    keys = random_keys(rng, 18 * SEGMENT)
    index = KeyIndex.build(store, CONFIG, exact_max_rows=3 * SEGMENT)

    def grow(starts: list[int]) -> int:
        for start in starts:
            record(store, start * SEGMENT, keys[start * SEGMENT:(start + 1) * SEGMENT])
        return index.refresh(store)

    def check() -> None:
        held = sorted(index.segments)
        sample = np.concatenate([np.arange(start, index.segments[start], 97) for start in held])
        assert index.tokens == sum(end - start for start, end in index.segments.items())
        assert np.array_equal(own_rows(index, keys[sample], sample), sample)

    assert grow([0, 2]) == 2 and not index.approximate  # recorded out of order, as ranks may
    check()
    assert grow([1, 3]) == 2 and index.trained_rows == 4 * SEGMENT  # past the threshold: lists trained
    check()
    assert grow([4, 5, 6]) == 3 and index.trained_rows == 4 * SEGMENT  # added to the trained lists
    check()
    assert grow(list(range(7, 18))) == 11 and index.trained_rows == 18 * SEGMENT  # four times larger: retrained
    check()


def test_saved_lists_are_used_only_while_they_match_the_catalog_and_settings(store, monkeypatch):
    rng = np.random.default_rng(3)
    keys = random_keys(rng, 5 * SEGMENT)
    for start in range(0, 4 * SEGMENT, SEGMENT):
        record(store, start, keys[start:start + SEGMENT])
    first = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    assert index_file.load(store, CONFIG) is not None
    other = EngineConfig(model_digest="test", heads=[(0, 0)], kv_heads=[0], key_means=[[0.5] * DIM])
    assert index_file.load(store, other) is None  # made under other settings

    trainings = []
    original = KeyIndex.trained.__func__
    monkeypatch.setattr(KeyIndex, "trained", classmethod(lambda cls, *args: trainings.append(args) or
                                                         original(cls, *args)))
    sample = np.arange(0, 5 * SEGMENT, 89)

    record(store, 4 * SEGMENT, keys[4 * SEGMENT:])
    reopened = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    assert not trainings and reopened.trained_rows == first.trained_rows  # the file, plus the new segment
    assert np.array_equal(own_rows(reopened, keys[sample], sample), sample)

    with store.db.conn:
        store.db.execute("UPDATE segments SET created_at = 'another store' WHERE token_start = 0")
    assert index_file.load(store, CONFIG) is None  # the catalog records a segment differently
    rebuilt = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    assert len(trainings) == 1 and np.array_equal(own_rows(rebuilt, keys[sample], sample), sample)
    assert index_file.load(store, CONFIG) is not None

    saved = store.root / INDEX / index_file.KEYS_FILE
    saved.write_bytes(saved.read_bytes()[:1000])
    assert index_file.load(store, CONFIG) is None  # a cut file is not read
    abandoned = saved.with_name(f"{index_file.KEYS_FILE}.999999999.x.part")  # no process has this pid
    abandoned.write_bytes(b"partial")
    cut = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    assert len(trainings) == 2 and np.array_equal(own_rows(cut, keys[sample], sample), sample)
    assert index_file.load(store, CONFIG) is not None and not abandoned.exists()


def test_a_store_that_cannot_be_written_still_gets_its_index(store, monkeypatch):
    rng = np.random.default_rng(4)
    keys = random_keys(rng, 2 * SEGMENT)
    record(store, 0, keys[:SEGMENT])
    record(store, SEGMENT, keys[SEGMENT:])
    (store.root / INDEX).write_text("not a folder")  # mkdir fails as on a read-only store
    index = KeyIndex.build(store, CONFIG, exact_max_rows=SEGMENT)
    sample = np.arange(0, 2 * SEGMENT, 61)
    assert index.approximate and np.array_equal(own_rows(index, keys[sample], sample), sample)


def test_empty_probed_lists_never_map_to_a_token(store):
    """An IVF search can return fewer than k rows (-1 for the rest): those must not become the last row."""
    rng = np.random.default_rng(5)
    keys = random_keys(rng, 512)
    record(store, 0, keys)
    index = KeyIndex.build(store, CONFIG, exact_max_rows=100)
    queries = unit_keys(keys[:2, 0])
    _, rows = index.indexes[0].search(queries, CANDIDATES_PER_TOKEN)
    assert (rows < 0).any()  # the probed lists hold fewer than 256 keys
    found = {int(block) for row in rows for block in index.positions[row[row >= 0]] // BLOCK}
    assert set(model_block_scores(index, [queries], BLOCK)) == found
