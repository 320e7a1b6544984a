"""Segments read in batches and stored a step at a time: batched keys equal the keys of one segment at a
time and the keys computed here by hand (in fp32); keys read in bf16, the default on CPUs with bf16
instructions, stay close to those by hand, and bf16 is chosen only there; a step's leftovers after a kill (a `.part` file, a state file
renamed into place but not recorded) are not counted and do not stop the resume. Segments are 64 tokens
so a corpus of a few hundred tokens gives several full ones and a shorter last one."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils
import torch

from engine.api import open_store
from engine.memory.calibration import calibration_for
from engine.memory.config import EngineConfig, load_config
from engine.memory.segments import deal, segment_batches
from engine.memory.states import STATES, read_state, write_states
from engine.model.llama import FullCausalAttention
from engine.runtime import load_runtime, reading_dtype
from ingest import catalog
from ingest.sequence import read_tokens
from tests.engine.test_memory import write_corpus

SEGMENT = 64


@pytest.fixture(scope="module")
def runtime(default_model_path):
    """The model reading in fp32 whatever the CPU, so that keys can be compared to the int8 step."""
    return replace(load_runtime(str(default_model_path), "cpu"), reading_dtype=None)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("segments") / "corpus"
    write_corpus(folder, filler_paragraphs=3)
    return folder


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory, corpus, runtime) -> tuple[Path, dict]:
    """The store read one segment a forward pass, and its states."""
    root = tmp_path_factory.mktemp("one") / "store"
    return root, processed_store(root, corpus, runtime, batch_segments=1)


def new_store(root: Path, corpus: Path, runtime, **attention) -> None:
    """The corpus ingested (not processed) into a store reading segments of SEGMENT tokens (one undilated
    window over each unless `attention` gives other patterns)."""
    attention = attention or {"segment_lengths": [SEGMENT]}
    with open_store(root, runtime=runtime, write=True) as store:
        store.add([corpus])
        config = replace(EngineConfig.from_calibration(runtime, calibration_for(runtime)), segment_tokens=SEGMENT,
                         **attention)
        catalog.set_meta(store.store.db, "engine_config", json.dumps(asdict(config)))


def processed_store(root: Path, corpus: Path, runtime, batch_segments: int, **attention) -> dict[int, np.ndarray]:
    new_store(root, corpus, runtime, **attention)
    with open_store(root, runtime=runtime, write=True) as store:
        report = store.process(batch_segments=batch_segments)
    assert report.segments == len(states_of(root))
    return states_of(root)


def states_of(root: Path) -> dict[tuple[int, int], np.ndarray]:
    db = sqlite_utils.Database(root / "catalog.db")
    states = {}
    for start, end in db.execute("SELECT token_start, token_end FROM segments ORDER BY token_start"):
        begin, stop, keys = read_state(root, start)
        assert (begin, stop) == (start, end)
        states[(start, end)] = keys
    return states


def assert_within_one_step(states: dict, expected: dict) -> None:
    assert states.keys() == expected.keys()
    for segment, keys in expected.items():
        assert states[segment].shape == keys.shape
        assert np.abs(states[segment].astype(np.int16) - keys.astype(np.int16)).max() <= 1, segment


def keys_by_hand(root: Path, runtime) -> dict[tuple[int, int], np.ndarray]:
    """Each recorded segment read alone by the model's own full causal attention (one undilated window
    covering the segment is exactly that) up to the deepest retrieval layer, its retrieval heads' pre-RoPE
    keys taken from the k projection, centred by the head's mean key, scaled to unit length, times 127."""
    config = load_config(sqlite_utils.Database(root / "catalog.db"))
    model, head_dim = runtime.model, runtime.config.head_dim
    deepest = max(layer for layer, _ in config.heads)
    expected = {}
    for start, end in states_of(root):
        ids = torch.as_tensor(read_tokens(root / "tokens.u32", start, end).astype(np.int64))[None]
        projected = {}
        hooks = [model.layers[layer].k.register_forward_hook(
            lambda _module, _inputs, output, layer=layer, keep=projected: keep.__setitem__(layer, output[0]))
            for layer, _ in config.heads]
        try:
            with torch.inference_mode():
                model.run_layers(ids, FullCausalAttention(*model.rope(end - start)), deepest + 1)
        finally:
            for hook in hooks:
                hook.remove()
        heads = []
        for (layer, _), kv, mean in zip(config.heads, config.kv_heads, config.key_means):
            key = projected[layer].view(end - start, -1, head_dim)[:, kv].double().numpy() - np.array(mean)
            heads.append(key / np.linalg.norm(key, axis=-1, keepdims=True))
        expected[(start, end)] = np.clip(np.round(np.stack(heads, axis=1) * 127), -127, 127).astype(np.int8)
    return expected


def test_batches_take_consecutive_segments_of_one_length():
    a, b, c, d, e, f = (0, 64), (64, 128), (128, 192), (192, 200), (300, 364), (364, 428)
    segments = [a, b, c, d, e, f]
    assert segment_batches(segments, 1) == [[s] for s in segments]
    assert segment_batches(segments, 2) == [[a, b], [c], [d], [e, f]]
    assert segment_batches(segments, 3) == [[a, b, c], [d], [e, f]]
    assert segment_batches([], 4) == []
    with pytest.raises(ValueError):
        segment_batches(segments, 0)


def test_steps_deal_each_rank_a_batch_of_its_own_size():
    a, b, c, d, e, f = (0, 64), (64, 128), (128, 192), (192, 200), (300, 364), (364, 428)
    assert deal([a, b, c, d, e, f], [2, 1]) == [[[a, b], [c]], [[d], [e]], [[f], []]]
    assert deal([a, b, c, d, e, f], [1, 1]) == [[[a], [b]], [[c], [d]], [[e], [f]]]
    assert deal([a], [4, 4, 4]) == [[[a], [], []]]


def test_batched_keys_equal_one_segment_at_a_time_and_the_keys_by_hand(tmp_path, corpus, runtime, one_at_a_time):
    root, one = one_at_a_time
    lengths = [end - start for start, end in one]
    assert lengths.count(SEGMENT) >= 4 and lengths[-1] < SEGMENT  # full batches, and a shorter last segment
    assert_within_one_step(processed_store(tmp_path / "four", corpus, runtime, batch_segments=4), one)
    assert_within_one_step(one, keys_by_hand(root, runtime))


def test_keys_read_in_bf16_stay_close_to_the_fp32_keys_by_hand(tmp_path, corpus, runtime, one_at_a_time):
    """bf16 keeps 8 significant bits, so six layers of it move a key by a few int8 steps at most, never
    turn it away: every token's key keeps a cosine near 1 with the fp32 one, and most values are equal."""
    root, fp32 = one_at_a_time
    bf16 = processed_store(tmp_path / "bf16", corpus, replace(runtime, reading_dtype=torch.bfloat16), batch_segments=4)
    by_hand = keys_by_hand(root, runtime)
    assert bf16.keys() == by_hand.keys()
    read, exact = (np.concatenate(list(keys.values())).astype(np.float32) for keys in (bf16, by_hand))
    cosine = (read * exact).sum(-1) / (np.linalg.norm(read, axis=-1) * np.linalg.norm(exact, axis=-1))
    assert cosine.min() > 0.99
    assert (read == exact).mean() > 0.75
    assert any((bf16[segment] != keys).any() for segment, keys in fp32.items())  # the reading dtype was honoured


def test_the_pass_reads_in_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert reading_dtype(cpu, torch.float32) == torch.bfloat16
    assert reading_dtype(cpu, torch.bfloat16) is None  # weights in bf16 already
    assert reading_dtype(gpu, torch.bfloat16) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert reading_dtype(cpu, torch.float32) is None


def test_batched_dilated_attention_equals_one_segment_at_a_time(tmp_path, corpus, runtime):
    """Two patterns, the second dilated: the kernels' reference path, not the CPU's one-window shortcut."""
    dilated = {"segment_lengths": [32, SEGMENT], "dilation_rates": [1, 2]}
    one = processed_store(tmp_path / "one", corpus, runtime, batch_segments=1, **dilated)
    assert_within_one_step(processed_store(tmp_path / "three", corpus, runtime, batch_segments=3, **dilated), one)


def test_leftovers_of_a_killed_step_are_not_counted_and_the_resume_overwrites_them(tmp_path, corpus, runtime,
                                                                                     one_at_a_time):
    _, reference = one_at_a_time
    root = tmp_path / "killed"
    new_store(root, corpus, runtime)
    (first, first_end), (second, second_end), (third, _) = list(reference)[:3]
    zeros = np.zeros(reference[(first, first_end)].shape, np.int8)
    # Killed between renaming a step's files and recording them: whole files the catalog does not know,
    # and a half-written .part of the next step.
    write_states(root, [(first, first_end, zeros), (second, second_end, zeros)])
    (root / STATES / f"{third:012d}.safetensors.part").write_bytes(b"half a file")

    with open_store(root, runtime=runtime) as store:
        figures = store.figures()
    assert (figures.processed_tokens, figures.state_bytes) == (0, 0)
    with open_store(root, runtime=runtime, write=True) as store:
        store.process(batch_segments=2)
    assert_within_one_step(states_of(root), reference)
    assert not list((root / STATES).glob("*.part"))
