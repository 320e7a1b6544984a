"""`engine status` shows the engine settings a store was read with and what its states weigh, and its
figures agree with the files on disk, counted here independently of the command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.api import open_store
from engine.cli import main
from engine.runtime import load_runtime

SEGMENT_TOKENS = 2048  # the engine's default segment length, which a fresh store takes


@pytest.fixture(scope="module")
def processed_store(tmp_path_factory, default_model_path):
    """A store of two notes long enough to fill more than one segment, read by the embedded model."""
    base = tmp_path_factory.mktemp("status")
    corpus = base / "corpus"
    corpus.mkdir()
    for name, topic in [("bridges.md", "the history of bridges"), ("tomatoes.txt", "growing tomatoes")]:
        lines = [f"Line {n}: a note about {topic}, number {n * 7 % 13}." for n in range(70)]
        (corpus / name).write_text("\n".join(lines) + "\n")
    runtime = load_runtime(str(default_model_path), "cpu")
    with open_store(base / "store", runtime=runtime, write=True) as store:
        store.add([corpus])
        store.process()
    return base / "store", runtime


def status_json(capsys, root: Path) -> dict:
    assert main(["status", "--store", str(root), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_status_figures_match_the_files_on_disk(processed_store, capsys):
    root, runtime = processed_store
    engine = status_json(capsys, root)["engine"]
    sequence_tokens = (root / "tokens.u32").stat().st_size // 4  # one uint32 a token
    state_files = sorted((root / "states").glob("*.safetensors"))
    state_bytes = sum(path.stat().st_size for path in state_files)

    assert sequence_tokens > SEGMENT_TOKENS  # the corpus spans more than one segment, as intended
    assert engine["processed_tokens"] == sequence_tokens
    assert engine["processed_segments"] == len(state_files) == math.ceil(sequence_tokens / SEGMENT_TOKENS)
    assert engine["state_bytes"] == state_bytes
    assert engine["bytes_per_token"] == pytest.approx(state_bytes / sequence_tokens)
    # int8 keys: one byte per dimension per retrieval head per token, plus each file's small header
    key_bytes = len(engine["retrieval_heads"]) * runtime.config.head_dim
    assert key_bytes < engine["bytes_per_token"] < key_bytes + 1024 * len(state_files) / sequence_tokens
    assert engine["index_bytes"] == 0 and not (root / "index").exists()


def test_status_shows_the_settings_the_store_was_read_with(processed_store, capsys):
    root, runtime = processed_store
    engine = status_json(capsys, root)["engine"]
    assert runtime.digest.startswith(engine["model_digest"]) and len(engine["model_digest"]) == 12
    assert engine["segment_tokens"] == SEGMENT_TOKENS and engine["block_tokens"] == 64
    assert engine["patterns"] == [{"segment_length": SEGMENT_TOKENS, "dilation_rate": 1}]
    for layer, head in engine["retrieval_heads"]:
        assert 0 <= layer < runtime.config.num_layers and 0 <= head < runtime.config.num_heads

    assert main(["status", "--store", str(root)]) == 0
    out = capsys.readouterr().out
    layer, head = engine["retrieval_heads"][0]
    assert engine["model_digest"] in out and f"layer {layer} head {head}" in out
    assert f"{engine['processed_tokens']:,} tokens in {engine['processed_segments']} segment(s)" in out
    assert f"{engine['bytes_per_token']:,.1f}" in out


def test_status_of_a_store_the_engine_has_not_read(tmp_path, capsys, default_model_path):
    note = tmp_path / "note.md"
    note.write_text("# A note\n\nNothing to read yet.\n")
    assert main(["ingest", str(note), "--store", str(tmp_path / "store"), "--no-process"]) == 0
    capsys.readouterr()
    assert status_json(capsys, tmp_path / "store")["engine"] is None
    assert main(["status", "--store", str(tmp_path / "store")]) == 0
    assert "not run on this store yet" in capsys.readouterr().out
