"""The engine over real stores: answers cite the right file and lines, passkeys are found through the
whole ingest + engine path, processing resumes after SIGKILL with the same states, bad stores are refused."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from engine.answer.excerpts import excerpts_for_blocks
from engine.answer.generation import Answer
from engine.api import EngineStore, open_store
from engine.cli import main
from engine.errors import UsageError
from engine.memory import index_file, key_index
from engine.memory.key_index import KeyIndex
from engine.memory.states import read_state
from engine.runtime import load_runtime
from engine.selftest.passkey import FILLER, TASK, PasskeyTrial, engine_answer, run_passkey
from ingest.store import INDEX, Store

FILLER_TOPICS = ["the history of bridges", "growing tomatoes", "the rules of chess", "caring for houseplants",
                 "train timetables", "the water cycle", "knitting patterns", "the planets of the solar system"]


@pytest.fixture(scope="module")
def runtime(default_model_path):
    return load_runtime(str(default_model_path), "cpu")


def write_corpus(folder: Path, filler_paragraphs: int = 6) -> dict[str, tuple[str, int]]:
    """Notes with one known fact each, at a known line, among paragraphs of unrelated text."""
    facts = {
        "What is the combination of the bike lock?": ("bike.md", "The combination of the bike lock is 7-2-9-5."),
        "Who repaired the chimney?": ("house/repairs.md", "The chimney was repaired by Tomasz Wierzbicki in May."),
        "What colour is the front door?": ("house/paint.txt", "We painted the front door a deep teal green."),
    }
    rng = random.Random(5)
    where = {}
    for question, (name, fact) in facts.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"# Notes on {name}", ""]
        for _ in range(filler_paragraphs):
            topic = rng.choice(FILLER_TOPICS)
            lines += [f"Some thoughts about {topic}, written down on a quiet evening.",
                      f"Nothing here matters much; {topic} is simply something I read about.", ""]
        insert_at = len(lines) // 2
        lines[insert_at:insert_at] = [fact, ""]
        path.write_text("\n".join(lines) + "\n")
        where[question] = (name, insert_at + 1)
    return where


def build_store(root: Path, corpus: Path, runtime, batch_segments: int | None = None) -> None:
    with open_store(root, runtime=runtime, write=True) as store:
        store.add([corpus])
        store.process(batch_segments=batch_segments)


def answer_of(store: EngineStore, question: str):
    return next(event for event in store.ask(question, max_new_tokens=32) if isinstance(event, Answer))


@pytest.fixture(scope="module")
def notes_store(tmp_path_factory, runtime):
    base = tmp_path_factory.mktemp("notes")
    where = write_corpus(base / "corpus")
    build_store(base / "store", base / "corpus", runtime)
    return base / "store", where


def test_citations_point_at_the_file_and_line_of_the_fact(notes_store, runtime):
    root, where = notes_store
    with open_store(root, runtime=runtime) as store:
        for question, (name, line) in where.items():
            answer = answer_of(store, question)
            assert answer.citations, question
            top = answer.citations[0]
            assert top.path.endswith(name)
            assert top.start_line <= line <= top.end_line


def test_ingest_readies_the_approximate_index_and_citations_hold(notes_store, runtime, tmp_path, monkeypatch,
                                                                 default_model_path):
    """Past the threshold (forced: the notes are far below it) `engine ingest` trains and saves the IVF lists,
    so the question after it trains nothing; and the IVF path still cites the fact's file and line."""
    root, where = notes_store
    shutil.copytree(root, tmp_path / "store")  # the index file it saves stays out of the shared store
    monkeypatch.setattr(key_index, "EXACT_MAX_ROWS", 0)
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "garden.md").write_text("The shed key hangs behind the rain barrel.\n")
    assert main(["ingest", str(tmp_path / "more"), "--store", str(tmp_path / "store"), "--device", "cpu",
                 "--model", str(default_model_path)]) == 0
    assert (tmp_path / "store" / INDEX / index_file.KEYS_FILE).exists()
    monkeypatch.setattr(KeyIndex, "trained", classmethod(lambda cls, *args: pytest.fail("the question trained")))
    question = "What is the combination of the bike lock?"
    name, line = where[question]
    with open_store(tmp_path / "store", runtime=runtime) as store:
        assert store.index().approximate
        top = answer_of(store, question).citations[0]
    assert top.path.endswith(name)
    assert top.start_line <= line <= top.end_line


def test_answer_uses_the_fact(notes_store, runtime):
    root, _ = notes_store
    with open_store(root, runtime=runtime) as store:
        answer = answer_of(store, "What is the combination of the bike lock?")
    assert "7-2-9-5" in answer.text
    assert answer.grounded
    assert set(answer.timings) >= {"retrieve_s", "first_token_s", "total_s"}


def test_passkey_at_4k_passes_through_ingest_and_engine(runtime):
    results = run_passkey(runtime, [4096], trials=1, baseline_limit=0)
    assert results[0].passed, results[0].answer
    assert results[0].needle_read


def test_a_haystack_without_the_needle_is_reported_as_not_retrieved(runtime, tmp_path):
    """The needle flag reads what the prompt held: with no needle in the text it cannot be true, whatever
    number the model makes up."""
    haystack = " ".join([TASK] + [FILLER] * 60)
    trial = PasskeyTrial(passkey=52817, depth=0.5, haystack=haystack, tokens=len(runtime.tokenizer.encode(haystack)))
    answer, needle_read = engine_answer(runtime, trial, tmp_path)
    assert not needle_read
    assert not trial.passes(answer)


def test_question_on_an_empty_store_is_refused(tmp_path, runtime):
    Store.open(tmp_path / "empty", write=True).close()
    with open_store(tmp_path / "empty", runtime=runtime) as store:
        with pytest.raises(UsageError, match="engine ingest"):
            list(store.ask("anything?"))


def test_missing_store_is_refused(tmp_path, runtime):
    with pytest.raises(UsageError, match="no store"):
        open_store(tmp_path / "nowhere", runtime=runtime)


def test_store_from_another_model_is_refused(notes_store, runtime, tmp_path):
    root, _ = notes_store
    db = sqlite_utils.Database(root / "catalog.db")
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'engine_config'").fetchone()[0])
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("catalog.db", "tokens.u32"):
        (copy / name).write_bytes((root / name).read_bytes())
    other = sqlite_utils.Database(copy / "catalog.db")
    other["meta"].upsert({"key": "engine_config", "value": json.dumps(config | {"model_digest": "f" * 64})}, pk="key")
    with pytest.raises(UsageError, match="another model"):
        open_store(copy, runtime=runtime)


def test_store_from_a_newer_engine_is_refused(notes_store, runtime, tmp_path):
    root, _ = notes_store
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("catalog.db", "tokens.u32"):
        (copy / name).write_bytes((root / name).read_bytes())
    db = sqlite_utils.Database(copy / "catalog.db")
    config = json.loads(db.execute("SELECT value FROM meta WHERE key = 'engine_config'").fetchone()[0])
    db["meta"].upsert({"key": "engine_config", "value": json.dumps(config | {"format": 99})}, pk="key")
    with pytest.raises(UsageError, match="newer"):
        open_store(copy, runtime=runtime)


def states_of(root: Path) -> dict[int, np.ndarray]:
    db = sqlite_utils.Database(root / "catalog.db")
    return {start: read_state(root, start)[2] for (start,) in db.execute("SELECT token_start FROM segments")}


def test_sigkill_mid_processing_then_resume_gives_the_uninterrupted_states(tmp_path, runtime, default_model_path):
    """Read two segments a forward pass and killed once the first step is recorded, in the middle of the
    next batch; the resumed store equals a store read two segments a pass, uninterrupted (the same batches:
    in bf16, the default reading on CPUs with bf16 instructions, batches of other sizes round a few int8
    steps apart, tests/engine/test_segments.py)."""
    corpus = tmp_path / "corpus"
    write_corpus(corpus, filler_paragraphs=60)
    reference = tmp_path / "reference"
    build_store(reference, corpus, runtime, batch_segments=2)
    expected = states_of(reference)
    assert len(expected) >= 3

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    command = [sys.executable, "-m", "engine", "ingest", str(corpus), "--store", str(killed), "--device", "cpu",
               "--model", str(default_model_path), "--batch-segments", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "catalog.db").exists():
            done = sqlite_utils.Database(killed / "catalog.db").execute("SELECT count(*) FROM segments").fetchone()[0]
            if done >= 1:
                break
        time.sleep(0.2)
    assert process.poll() is None, "processing finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()

    partial = states_of(killed)
    assert len(partial) == 2 < len(expected)  # the first step's two segments, recorded together
    with open_store(killed, runtime=runtime) as store:
        answer = answer_of(store, "What is the combination of the bike lock?")
    assert answer.text.strip()

    finished = subprocess.run(command, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    resumed = states_of(killed)
    assert resumed.keys() == expected.keys()
    for start, keys in expected.items():  # another process, the same batches
        assert np.abs(resumed[start].astype(np.int16) - keys.astype(np.int16)).max() <= 1


BLOCK = 64  # tokens per block in the stores these tests build (the default)


def test_a_block_across_two_spans_is_read_as_one_excerpt_on_the_right_lines(tmp_path, runtime):
    """The pieces of one passage that a block takes from two spans go into the prompt as one excerpt under one
    label, and its lines are still the file's."""
    lines = [f"Entry {number}: the tide came in at {number % 12 + 1} o'clock and the boats went out."
             for number in range(1, 121)]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "log.txt").write_text("\n".join(lines) + "\n")
    with open_store(tmp_path / "store", runtime=runtime, write=True) as store:
        store.add([tmp_path / "corpus"])
        db = store.store.db
        spans = [tuple(row) for row in db.execute("SELECT token_start, token_end FROM spans ORDER BY token_start")]
        assert len(spans) >= 2
        boundary = spans[0][1]
        blocks = sorted({(boundary - 1) // BLOCK, boundary // BLOCK})  # the block(s) either side of the seam
        excerpts = excerpts_for_blocks(runtime, store.store, [(block, 1.0) for block in blocks], BLOCK, 1024)
    assert len(excerpts) == 1
    excerpt = excerpts[0]
    assert excerpt.token_start < boundary < excerpt.token_start + len(excerpt.ids)
    text = runtime.tokenizer.decode(excerpt.ids)
    file_from_there = "".join(line + "\n" for line in lines[excerpt.line_start - 1:])
    assert file_from_there.startswith(text) and text.endswith("\n")


def test_a_looping_answer_is_cut_before_the_first_repeated_sentence():
    from engine.answer.repeats import repeat_cut

    def cut(text):
        at = repeat_cut(text)
        return None if at is None else text[:at]

    assert cut("1. The appointment is on 12 June.\n") is None
    assert cut("1. On 12 June.\n2. On 12 June.\n") == "1. On 12 June."
    assert cut("Intro.\n1. On 12 June.\n2. On 12 June.\n3") == "Intro.\n1. On 12 June."
    assert cut("Line one.\n\nLine two.\n") is None
    assert cut("The same\nThe same") is None  # the last line is not finished yet
    assert cut("The lead is Marta. She made it. She made it. She") == "The lead is Marta. She made it."
    assert cut("She made it. She made it") is None  # not finished: no space after the full stop yet
    assert cut("It is 12. It is 13. ") is None
    # a quoted wrapped line said again on one line: its two pieces were one sentence
    assert cut("It is a mild strain of the\nmedial ligament. It is a mild strain of the medial ligament. ") == (
        "It is a mild strain of the\nmedial ligament.")
    assert cut("The tea was cold and it was dry. It was dry. ") is None  # a short one may be new
    assert cut('It hangs by the door.\n\n"It hangs by the door."\n') == "It hangs by the door."  # said again, quoted


def word_pieces(text: str) -> list[str]:
    """`text` cut the way a tokenizer streams it: each word with the space before it."""
    return re.findall(r"\s*\S+|\s+$", text)


@pytest.mark.parametrize("looping, kept", [
    ("The lead is Marta. She made it. She made it. She made it.", "The lead is Marta. She made it."),
    ("1. On 12 June.\n2. On 12 June.\n3. On 12 June.\n", "1. On 12 June."),
    ("It is 12. It is 13. It is 14.", "It is 12. It is 13. It is 14."),  # starts alike, never repeats
    ("A mild strain of the\nmedial ligament. A mild strain of the medial ligament. Rest.",
     "A mild strain of the\nmedial ligament."),
    # the answer's last sentence, ended by the answer itself, says again the end of one before it
    ("It hangs by the door. If the\nkey is gone, ask Marta.\n\nkey is gone, ask Marta.",
     "It hangs by the door. If the\nkey is gone, ask Marta."),
    ("It hangs by the door. If the key is gone, ask", "It hangs by the door. If the key is gone, ask"),
])
def test_a_streamed_answer_never_shows_the_sentence_that_is_cut(looping, kept):
    """What a terminal has printed cannot be taken back: the streamed pieces, joined, are the kept answer."""
    from engine.answer.repeats import without_repeats

    assert "".join(without_repeats(iter(word_pieces(looping)))) == kept


def test_a_streamed_answer_shows_new_text_as_it_comes():
    from engine.answer.repeats import without_repeats

    pulled = []

    def pieces():
        for piece in word_pieces("The lead is Marta. She designed the bridge."):
            pulled.append(piece)
            yield piece

    shown = []
    for piece in without_repeats(pieces()):
        shown.append((piece, len(pulled)))
    assert shown[0] == ("The", 1)  # the first word is out before the second is generated
    assert len(shown) == len(pulled)  # no sentence repeats, so nothing waits
