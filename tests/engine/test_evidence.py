"""Evidence, "found" and unsupported names through `engine ask --json`: the sentence that holds the question's
words, quoted verbatim with its file and line; a question about nothing in the files is not found. The tiny
model reads the store: evidence is chosen by the question's words, whatever the model makes of them."""

from __future__ import annotations

import json

import pytest

from engine.answer.citations import Citation, pinned_to_evidence
from engine.answer.evidence import Evidence
from engine.answer.support import unsupported
from engine.cli import main
from tests.engine.tiny_gguf import tiny_model_in

pytest.importorskip("transformers")

FACT = "The spare key for the boathouse hangs behind the blue tide clock."
FILLER = ["Some thoughts about growing tomatoes, written down on a quiet evening.",
          "Nothing here matters much; the rules of chess are simply something I read about.", ""]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """(command prefix, the corpus, the fact's 1-based line in notes/boat.md)."""
    folder = tmp_path_factory.mktemp("evidence")
    with tiny_model_in(folder) as model:
        corpus = folder / "notes"
        corpus.mkdir()
        lines = ["# Boat notes", ""] + FILLER * 8 + [FACT, ""] + FILLER * 8
        (corpus / "boat.md").write_text("\n".join(lines) + "\n")
        (corpus / "garden.md").write_text("\n".join(FILLER * 10) + "\n")
        tail = ["--store", str(folder / "store"), "--model", str(model), "--device", "cpu"]
        assert main(["ingest", str(corpus), *tail]) == 0
        yield tail, corpus, lines.index(FACT) + 1


def ask(capsys, tail: list[str], question: str, *options: str) -> dict:
    capsys.readouterr()
    assert main(["ask", question, "--json", *options, *tail]) == 0
    return json.loads(capsys.readouterr().out)


def test_evidence_is_the_sentence_with_its_file_and_line(store, capsys):
    tail, corpus, line = store
    result = ask(capsys, tail, "Where does the spare key for the boathouse hang?")
    assert result["found"] is True, result
    [evidence] = result["evidence"]
    assert evidence["path"].endswith("boat.md")
    assert evidence["start_line"] == evidence["end_line"] == line
    assert evidence["text"] == (corpus / "boat.md").read_text().splitlines()[line - 1]


def test_a_question_about_nothing_in_the_files_is_not_found(store, capsys):
    tail, _, _ = store
    result = ask(capsys, tail, "Which volcano erupted during the 1783 expedition of Captain Ferreira?")
    assert result["found"] is False


def test_names_and_numbers_no_passage_holds_are_unsupported():
    passages = ["The lock was changed by Marta Kowalska in 2019.", "Room 12 is on the second floor."]
    answer = "Marta Kowalska changed the lock in 2021, with Jonas, in room 12."
    assert unsupported(answer, passages) == ["2021", "Jonas"]


def test_the_command_prints_the_evidence_or_says_not_found(store, capsys):
    tail, _, line = store
    capsys.readouterr()
    assert main(["ask", "Where does the spare key for the boathouse hang?", *tail]) == 0
    out = capsys.readouterr().out
    assert "Evidence: " in out and f"boat.md:{line}" in out and FACT in out
    assert main(["ask", "Which volcano erupted during the 1783 expedition of Captain Ferreira?", *tail]) == 0
    assert "Not found in your files." in capsys.readouterr().out


def test_the_citation_holding_the_evidence_comes_first_marking_its_lines():
    other = Citation(path="a.md", paths=["a.md"], page=None, start_line=5, end_line=6, text="e\nf",
                     context="a\nb\nc\nd\ne\nf", context_lines=[1, 6], score=0.5)
    holder = Citation(path="b.md", paths=["b.md"], page=None, start_line=10, end_line=10, text="first",
                      context="first\nsecond\nthird", context_lines=[10, 12], score=0.3)
    pinned = pinned_to_evidence([other, holder], Evidence("b.md", None, 12, 12, "third"))
    assert [(c.path, c.start_line, c.end_line, c.text) for c in pinned] == [("b.md", 12, 12, "third"),
                                                                          ("a.md", 5, 6, "e\nf")]
    assert pinned_to_evidence([other], Evidence("c.md", None, 1, 1, "elsewhere")) == [other]


def test_a_follow_up_finds_its_evidence_through_the_question_before(store, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))  # where the CLI keeps the last question
    tail, corpus, line = store
    assert main(["ask", "Is it still there?", "--follow-up", "--json", *tail]) == 2  # nothing asked before
    assert ask(capsys, tail, "Is it still there?")["found"] is False  # alone, its words point at nothing
    ask(capsys, tail, "Where does the spare key for the boathouse hang?")
    result = ask(capsys, tail, "Is it still there?", "--follow-up")
    assert result["found"] is True, result
    [evidence] = result["evidence"]
    assert evidence["path"].endswith("boat.md") and evidence["start_line"] == line
