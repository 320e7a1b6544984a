"""Hub correction of the heads' block scores: each block's mean MaxSim against background passages, computed
here by hand; a block that matches every question moderately (a hub) no longer outranks the block that
matches the question's own words; a store read with a memory setting keeps it, its head set and the hub
scores of every block in its state files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from engine.answer.retrieval import model_block_scores
from engine.api import open_store
from engine.cli import main
from engine.memory.config import load_config
from engine.memory.hubs import background_windows, block_hubs
from engine.memory.key_index import KeyIndex
from engine.memory.states import STATES
from engine.runtime import load_runtime
from tests.engine.test_memory import write_corpus


def unit(*vectors) -> np.ndarray:
    rows = np.array(vectors, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def stored(rows: np.ndarray) -> np.ndarray:
    """Unit rows as a store keeps them: int8, times 127."""
    return np.round(rows * 127).astype(np.int8)


def test_block_hubs_are_the_mean_over_background_rows_of_each_blocks_best_match():
    rng = np.random.default_rng(3)
    keys = stored(unit(*rng.normal(size=(70, 8))).reshape(35, 2, 8))  # 35 tokens, 2 heads
    queries = [unit(*rng.normal(size=(5, 8))), unit(*rng.normal(size=(3, 8)))]
    hubs = block_hubs(keys, queries, block_tokens=16)
    assert hubs.shape == (3, 2)  # blocks of 16, 16 and 3 tokens
    for block, (first, last) in enumerate([(0, 16), (16, 32), (32, 35)]):
        for head in range(2):
            expected = np.mean([max(float(keys[t, head].astype(np.float32) / 127 @ q) for t in range(first, last))
                                for q in queries[head]])
            assert hubs[block, head] == pytest.approx(expected, abs=1e-5)


def test_background_windows_spread_over_the_text_and_take_all_of_a_short_one():
    assert background_windows([(0, 50)], count=8, tokens=24) == [(0, 24), (24, 48), (48, 50)]
    windows = background_windows([(0, 2400), (5000, 5240)], count=10, tokens=24)
    assert len(windows) == 10 and windows[0] == (0, 24) and windows[-1][0] >= 2400 - 24 * 12
    assert all(end - start <= 24 for start, end in windows)


def test_a_hub_block_no_longer_outranks_the_block_with_the_questions_word():
    e = np.eye(8, dtype=np.float32)
    block_tokens = 4
    hub = np.repeat(unit(e[0] + e[1] + e[2] + e[3]), block_tokens, axis=0)  # near every query a little
    answer = np.stack([e[0], e[5], e[6], e[7]])  # holds the question's first word exactly, nothing else of it
    filler = np.repeat(unit(e[4]), block_tokens, axis=0)
    keys = np.concatenate([hub, answer, filler])[:, None, :]  # blocks 0, 1, 2; one head
    index = KeyIndex.exact(heads=1, dim=8)
    index.add_keys(np.arange(len(keys)), stored(keys))
    question = [unit(e[0], e[2], e[3])]
    raw = model_block_scores(index, question, block_tokens)
    assert max(raw, key=raw.get) == 0  # MaxSim alone: the hub (0.5 for each word) beats the answer (1, 0, 0)
    background = [unit(e[1], e[2], e[3], e[4] + e[1])]  # ordinary text: none of it is the question's first word
    index.set_hubs(0, block_hubs(stored(keys), background, block_tokens))
    centred = model_block_scores(index, question, block_tokens)
    assert max(centred, key=centred.get) == 1


@pytest.fixture(scope="module")
def fast_store(tmp_path_factory, default_model_path) -> Path:
    folder = tmp_path_factory.mktemp("hubs")
    write_corpus(folder / "corpus", filler_paragraphs=2)
    runtime = load_runtime(str(default_model_path), "cpu")
    with open_store(folder / "store", runtime=runtime, write=True) as store:
        store.add([folder / "corpus"])
        store.process(memory="fast")
    return folder / "store"


def test_a_store_read_fast_keeps_two_early_heads_and_every_blocks_hub_scores(fast_store):
    with open_store(fast_store) as store:
        config = load_config(store.store.db)
        assert config.memory == "fast" and len(config.heads) == 2 and config.layers_read <= 8
        assert config.background  # passages of the store's own text
        for path in sorted((fast_store / STATES).glob("*.safetensors")):
            state = load_file(str(path))
            start, end = state["range"]
            blocks = -(-(int(end) - int(start)) // config.block_tokens)
            assert state["hubs"].shape == (blocks, 2) and np.isfinite(state["hubs"]).all()
        hubs = store.index().hubs
        assert hubs is not None and np.abs(hubs).sum() > 0


def test_a_store_keeps_its_memory_setting_and_says_so(fast_store, tmp_path, capsys):
    (tmp_path / "more.md").write_text("The greenhouse thermometer reads 31 degrees at noon.\n")
    assert main(["ingest", str(tmp_path / "more.md"), "--store", str(fast_store), "--memory", "best"]) == 0
    assert "keeps the memory it was first read with (fast)" in capsys.readouterr().err
    with open_store(fast_store) as store:
        assert load_config(store.store.db).memory == "fast"
