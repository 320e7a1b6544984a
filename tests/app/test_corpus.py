"""The app's store service: answers while documents are being added, removal, the empty store, passages."""

from __future__ import annotations

import shutil
import threading

import pytest

from app.corpus import CONTEXT_LINES, AskError, Corpus
from engine import Answer, Citation
from engine.runtime import load_runtime
from tests.app.conftest import DATA


@pytest.fixture(scope="module")
def runtime(default_model_path):
    return load_runtime(str(default_model_path), "cpu")


@pytest.fixture
def corpus(sample_store, tmp_path, runtime):
    copy = tmp_path / "store"
    shutil.copytree(sample_store, copy)
    served = Corpus(copy, runtime, max_upload_bytes=2**20, allowed_roots=(tmp_path,))
    yield served
    served.close()


def final_answer(corpus: Corpus, question: str):
    events = list(corpus.ask(question))
    assert isinstance(events[-1], Answer), events[-1]
    return events[-1]


def test_an_empty_store_says_how_to_add_documents(tmp_path, runtime):
    empty = Corpus(tmp_path / "new-store", runtime, max_upload_bytes=2**20)
    try:
        assert empty.figures().documents == 0 and empty.figures().processed_tokens == 0
        events = list(empty.ask("Where is the spare key?"))
        assert len(events) == 1 and isinstance(events[0], AskError) and "engine ingest" in events[0].message
    finally:
        empty.close()


def test_answers_during_an_ingest_see_only_whole_documents_and_then_the_new_ones(corpus, tmp_path):
    folder = tmp_path / "garden"
    folder.mkdir()
    filler = "The hedge was trimmed and the compost turned over once again this week.\n" * 60
    for month in ("april", "may", "june"):
        (folder / f"{month}.md").write_text(f"# Garden in {month}\n\n{filler}")
    (folder / "greenhouse.md").write_text("# Greenhouse\n\nThe greenhouse thermometer hangs on the north wall; the "
                                          "heater switches on below 6 degrees.\n")
    finished = threading.Event()
    errors: list[BaseException] = []

    def add() -> None:
        try:
            corpus.add_paths([folder])
        except BaseException as error:  # reported by the test below
            errors.append(error)
        finally:
            finished.set()

    adding = threading.Thread(target=add)
    adding.start()
    during = []
    while not finished.is_set() or not during:
        during.append(final_answer(corpus, "When is my dentist appointment?"))
    adding.join()
    assert not errors
    live = {row["name"] for row in corpus.documents() if row["status"] == "ok"}
    for answer in during:
        assert answer.text.strip()
        assert all(citation.path in live for citation in answer.citations)
    after = final_answer(corpus, "Where does the greenhouse thermometer hang?")
    assert any(citation.path == "garden/greenhouse.md" for citation in after.citations)


def test_a_removed_document_is_no_longer_cited_or_shown(corpus):
    todo = next(row for row in corpus.documents() if row["name"] == "data/todo.txt")
    assert corpus.remove(todo["path"]) is True
    assert corpus.remove(todo["path"]) is False
    status = {row["name"]: row["status"] for row in corpus.documents()}
    assert status["data/todo.txt"] == "removed" and status["data/notes/lake-cabin.md"] == "ok"
    answer = final_answer(corpus, "When is my dentist appointment?")
    assert all(citation.path != "data/todo.txt" for citation in answer.citations)
    assert corpus.passage(Citation("data/todo.txt", ["data/todo.txt"], None, 5, 5, "", "", [5, 5], 0.0))[1] == []


def test_a_passage_is_the_document_text_around_the_cited_lines(corpus):
    first, lines = corpus.passage(Citation("data/todo.txt", ["data/todo.txt"], None, 5, 5, "", "", [5, 5], 0.0))
    written = (DATA / "todo.txt").read_text(encoding="utf-8").split("\n")
    assert first == 1  # line 5 less 12 lines of context, clamped to the document's start
    assert lines == written[:5 + CONTEXT_LINES]
    assert lines[4].startswith("- Dentist appointment on 12 June")
