"""A damaged store: each kind of damage is named in one line by `status`, `ask` and `ingest`, never a
traceback; what can be rebuilt is rebuilt by the next `engine ingest`, after which the store answers and
its files match those of a store that was never damaged; what cannot is named as such."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")

WORDS = "river stone lantern orchard copper meadow falcon harbor cinder willow quartz ember thistle".split()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(model, a store of three segments read one segment a pass, the corpus), cache kept in the test's folder."""
    folder = tmp_path_factory.mktemp("damage")
    with tiny_model_in(folder) as model:
        corpus = folder / "corpus"
        corpus.mkdir()
        for n in range(3):
            lines = [f"{WORDS[(n + i) % len(WORDS)]} {WORDS[(3 * i) % len(WORDS)]} line {i} of note {n}"
                     for i in range(260)]
            (corpus / f"note{n}.md").write_text("\n".join(lines) + "\n")
        assert main(command("ingest", str(corpus), "--batch-segments", "1", store=folder / "store", model=model)) == 0
        yield model, folder / "store", corpus


def command(*args: str, store: Path, model: Path) -> list[str]:
    return [*args, "--store", str(store), "--model", str(model), "--device", "cpu"]


def one_line(capsys, code: int, expected_code: int) -> str:
    out, err = capsys.readouterr()
    assert code == expected_code, out + err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def copy(built, tmp_path):
    model, store, corpus = built
    target = tmp_path / "store"
    shutil.copytree(store, target)
    return model, target, corpus, store


def state_files(store: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((store / "states").glob("*.safetensors"))}


def test_the_built_store_has_several_segments(built):
    assert len(state_files(built[1])) >= 3


def test_garbage_over_the_catalog_is_one_line_and_exit_2_everywhere(copy, capsys):
    model, store, corpus, _ = copy
    (store / "catalog.db").write_bytes(os.urandom(8192))
    for args in (("status",), ("ask", "where is the copper lantern?"), ("ingest", str(corpus))):
        line = one_line(capsys, main(command(*args, store=store, model=model)), 2)
        assert "catalog.db is damaged" in line and "cannot be rebuilt" in line


@pytest.mark.parametrize("how", ["truncated", "deleted"])
def test_a_damaged_state_file_is_named_then_rebuilt_to_the_same_bytes(copy, capsys, how):
    model, store, corpus, pristine = copy
    victim = sorted((store / "states").glob("*.safetensors"))[1]
    if how == "truncated":
        os.truncate(victim, victim.stat().st_size // 2)
    else:
        victim.unlink()
    problem = "cut short" if how == "truncated" else "missing"

    assert main(["status", "--store", str(store), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [item["problem"] for item in report["damage"]["segments"]] == [problem]
    assert main(["status", "--store", str(store)]) == 0
    _out, err = capsys.readouterr()
    assert victim.name in err and problem in err and len(err.strip().splitlines()) == 1

    line = one_line(capsys, main(command("ask", "where is the copper lantern?", store=store, model=model)), 2)
    assert victim.name in line and "engine ingest" in line

    assert main(command("ingest", str(corpus), "--batch-segments", "1", store=store, model=model)) == 0
    _out, err = capsys.readouterr()
    assert "repairing" in err and victim.name in err
    assert state_files(store) == state_files(pristine)  # the same model, the same segment: the same keys
    assert main(["status", "--store", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["damage"] is None
    assert main(command("ask", "where is the copper lantern?", "--json", store=store, model=model)) == 0
    assert json.loads(capsys.readouterr().out)["citations"] is not None


def test_a_short_tokens_file_is_named_as_not_rebuildable(copy, capsys):
    model, store, corpus, _ = copy
    tokens = store / "tokens.u32"
    os.truncate(tokens, tokens.stat().st_size - 100)
    assert main(["status", "--store", str(store)]) == 0
    _out, err = capsys.readouterr()
    assert "tokens.u32 is cut short" in err and "cannot be rebuilt" in err
    line = one_line(capsys, main(command("ask", "where is the copper lantern?", store=store, model=model)), 2)
    assert "tokens.u32 is cut short" in line
    line = one_line(capsys, main(command("ingest", str(corpus), store=store, model=model)), 2)
    assert "tokens.u32" in line and "cannot be rebuilt" in line
    assert tokens.stat().st_size % 4 == 0 and (store / "catalog.db").exists()  # nothing more was changed
