"""Questions the engine refuses before the model reads them: empty, one character, or long enough to stall it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from engine.question import MAX_QUESTION_TOKENS, question_limit
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")

SENTENCE = "Where did I leave the spare key to the garden shed last spring? "


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny model, a store it has read), with the weights cache in the test's own folder."""
    folder = tmp_path_factory.mktemp("question")
    with tiny_model_in(folder) as model:
        notes = folder / "notes"
        notes.mkdir()
        (notes / "keys.md").write_text("# Keys\n\nThe spare key is under the blue flowerpot by the shed door.\n")
        assert main(["ingest", str(notes), "--store", str(folder / "store"), "--model", str(model),
                     "--device", "cpu"]) == 0
        yield model, folder / "store"


def ask(tiny, question: str, *extra: str) -> list[str]:
    model, store = tiny
    return ["ask", question, *extra, "--store", str(store), "--model", str(model), "--device", "cpu"]


def test_the_cap_leaves_room_for_excerpts_and_answer_in_any_context():
    assert question_limit(8192) == MAX_QUESTION_TOKENS == 512
    assert question_limit(512) == 128  # a small model: a quarter of its context


@pytest.mark.parametrize("question, expected", [
    ("", "the question is empty"),
    ("   \n", "the question is empty"),
    ("?", "too short"),
    (SENTENCE * 40, "too long ("),  # ~2,600 characters: under the character bound, over the tiny model's 128 tokens
])
def test_a_bad_question_is_one_line_and_exit_2(tiny, capsys, question, expected):
    assert main(ask(tiny, question)) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and out == ""


def test_a_100000_character_question_is_refused_at_once_by_the_command(tiny):
    result = subprocess.run([sys.executable, "-m", "engine", *ask(tiny, "x" * 100_000)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "too long (100,000 characters" in lines[0]


def test_a_question_inside_the_cap_is_answered(tiny, capsys):
    assert main(ask(tiny, SENTENCE * 2, "--json")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) >= {"answer", "citations"}


def test_in_the_chat_a_long_question_is_a_clear_message_not_a_stalled_reader(tiny):
    from app.corpus import AskError, Corpus
    from engine import Answer
    from engine.runtime import load_runtime

    model, store = tiny
    corpus = Corpus(store, load_runtime(str(model), "cpu"), max_upload_bytes=2**20)
    try:
        events = list(corpus.ask("x" * 100_000))
        assert len(events) == 1 and isinstance(events[0], AskError) and "too long" in events[0].message
        answered = list(corpus.ask(SENTENCE))  # the reader was let go: the next question is answered
        assert isinstance(answered[-1], Answer)
    finally:
        corpus.close()
