"""Processing on two CPU ranks (gloo): the store equals the one-process store, and a rank that dies
mid-run stops the run cleanly; the re-run completes it with the same result. Segments are 64 tokens
here so a corpus of a few hundred tokens is dealt over several steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from engine.answer.generation import Answer
from engine.api import open_store
from engine.cli import main
from engine.memory.calibration import calibration_for
from engine.memory.config import EngineConfig
from engine.memory.states import read_state
from engine.runtime import load_runtime
from ingest import catalog
from tests.engine.test_memory import write_corpus

SEGMENT = 64
QUESTION = "What is the combination of the bike lock?"
ANSWER_TOKENS = 4  # the answer's start is enough to differ if its context did; CPU generation is slow
RANK_EXIT = Path(__file__).with_name("rank_exit")


@pytest.fixture(scope="module")
def runtime(default_model_path):
    return load_runtime(str(default_model_path), "cpu")


def new_store(root: Path, corpus: Path, runtime) -> None:
    """The corpus ingested (not processed) into a store whose engine reads segments of SEGMENT tokens."""
    with open_store(root, runtime=runtime, write=True) as store:
        store.add([corpus])
        config = replace(EngineConfig.from_calibration(runtime, calibration_for(runtime)),
                         segment_tokens=SEGMENT, segment_lengths=[SEGMENT])
        catalog.set_meta(store.store.db, "engine_config", json.dumps(asdict(config)))


def two_rank_ingest(root: Path, corpus: Path, model: Path, *options: str, **env) -> tuple[list[str], dict]:
    """The command and environment of `engine ingest --devices cpu,cpu` run from this checkout."""
    command = [sys.executable, "-m", "engine", "ingest", str(corpus), "--store", str(root), "--devices", "cpu,cpu",
               "--model", str(model), *options]
    paths = [str(Path(__file__).resolve().parents[2])]
    if "ENGINE_TEST_RANK_EXIT" in env:
        paths.insert(0, str(RANK_EXIT))  # its sitecustomize makes the asked-for rank die
    return command, dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1", **env)


def ingest_on_two_ranks(root: Path, corpus: Path, model: Path, *options: str, **env) -> subprocess.CompletedProcess:
    command, environment = two_rank_ingest(root, corpus, model, *options, **env)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600)


def segments_of(root: Path) -> list[tuple[int, int]]:
    db = sqlite_utils.Database(root / "catalog.db")
    return [tuple(row) for row in db.execute("SELECT token_start, token_end FROM segments ORDER BY token_start")]


def assert_same_states(root: Path, reference: Path) -> None:
    assert segments_of(root) == segments_of(reference)
    for start, end in segments_of(reference):
        begin, stop, keys = read_state(root, start)
        _, _, expected = read_state(reference, start)
        assert (begin, stop) == (start, end)
        assert keys.shape == expected.shape
        assert np.abs(keys.astype(np.int16) - expected.astype(np.int16)).max() <= 1


def answer_of(store):
    return next(event for event in store.ask(QUESTION, max_new_tokens=ANSWER_TOKENS) if isinstance(event, Answer))


def assert_same_answer(root: Path, reference: Path, runtime) -> None:
    with open_store(root, runtime=runtime) as store, open_store(reference, runtime=runtime) as one:
        answer, expected_answer = answer_of(store), answer_of(one)
    assert answer.text == expected_answer.text
    assert answer.citations == expected_answer.citations
    assert answer.citations and answer.text.strip()


@pytest.fixture(scope="module")
def corpus_and_reference(tmp_path_factory, runtime):
    base = tmp_path_factory.mktemp("devices")
    write_corpus(base / "corpus", filler_paragraphs=3)
    new_store(base / "reference", base / "corpus", runtime)
    with open_store(base / "reference", runtime=runtime, write=True) as store:
        store.process()
    assert len(segments_of(base / "reference")) >= 6
    return base / "corpus", base / "reference"


def test_two_ranks_give_the_one_process_store_even_after_losing_a_rank(tmp_path, corpus_and_reference, runtime,
                                                                         default_model_path, capsys):
    """One pass on two ranks, one segment a rank a step, where rank 1 dies after its first segment, then a
    clean pass that finishes with two segments a rank a step: both two-rank passes together must give the
    one-process store (three runs would cost a third more)."""
    corpus, reference = corpus_and_reference
    new_store(tmp_path / "store", corpus, runtime)
    stopped = ingest_on_two_ranks(tmp_path / "store", corpus, default_model_path, "--batch-segments", "1",
                                  ENGINE_TEST_RANK_EXIT="1:1")
    assert stopped.returncode == 1
    planned = len(segments_of(reference))
    assert f"rank 1 (cpu, exit code 3) stopped mid-run: 2 of {planned} segments are stored" in stopped.stderr
    assert segments_of(tmp_path / "store") == segments_of(reference)[:2]

    resumed = ingest_on_two_ranks(tmp_path / "store", corpus, default_model_path, "--batch-segments", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_states(tmp_path / "store", reference)
    assert_same_answer(tmp_path / "store", reference, runtime)

    assert main(["status", "--store", str(tmp_path / "store"), "--json"]) == 0
    latest, first = json.loads(capsys.readouterr().out)["processing"][:2]
    assert [(load["rank"], load["world_size"], load["device"]) for load in latest["ranks"]] == [(0, 2, "cpu"),
                                                                                                 (1, 2, "cpu")]
    assert sum(load["segments"] for load in latest["ranks"]) == planned - 2
    assert [load["segments"] for load in first["ranks"]] == [1, 1]
    assert all(load["tokens_per_second"] > 0 for load in latest["ranks"])
    db = sqlite_utils.Database(tmp_path / "store" / "catalog.db")
    dealt = [rank for rank, length in db.execute("SELECT rank, token_end - token_start FROM segment_work WHERE "
                                                 "pass_started = ? ORDER BY token_start", [latest["started_at"]])
             if length == SEGMENT]
    assert len(dealt) >= 4 and dealt == [(index // 2) % 2 for index in range(len(dealt))]  # two a rank a step


def test_a_rank_that_dies_before_joining_stops_the_run_at_once(tmp_path, corpus_and_reference, runtime,
                                                               default_model_path):
    """Rank 0 would otherwise wait for it as long as a collective may (30 minutes)."""
    corpus, _ = corpus_and_reference
    new_store(tmp_path / "store", corpus, runtime)
    stopped = ingest_on_two_ranks(tmp_path / "store", corpus, default_model_path, ENGINE_TEST_RANK_EXIT="1:join")
    assert stopped.returncode == 1
    last = stopped.stderr.strip().splitlines()[-1]
    assert last == "engine ingest: rank 1 (cpu) exited with code 3 before joining the run; nothing was processed"
    assert segments_of(tmp_path / "store") == []


def spawned_workers(pid: int) -> list[int]:
    """The rank processes `engine ingest --devices` started (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children
            if b"resource_tracker" not in Path(f"/proc/{child}/cmdline").read_bytes()]


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds the worker through Linux's /proc")
def test_a_worker_leaves_when_rank_zero_is_killed(tmp_path, corpus_and_reference, runtime, default_model_path):
    """Killed while its worker is still starting and joining, rank 0 cannot end it: the worker must see
    rank 0 gone and leave, not wait out the 30-minute rendezvous. The store is untouched and opens."""
    corpus, reference = corpus_and_reference
    new_store(tmp_path / "store", corpus, runtime)
    command, environment = two_rank_ingest(tmp_path / "store", corpus, default_model_path)
    rank_zero = subprocess.Popen(command, env=environment, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (workers := spawned_workers(rank_zero.pid)) and time.monotonic() < deadline:
            assert rank_zero.poll() is None, "rank 0 ended before it started a worker"
            time.sleep(0.05)
        assert len(workers) == 1
    finally:
        rank_zero.send_signal(signal.SIGKILL)
        rank_zero.wait()
    deadline = time.monotonic() + 120  # a bound far below the 30 minutes it would otherwise wait
    while is_running(workers[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not is_running(workers[0])
    assert segments_of(tmp_path / "store") == []
    with open_store(tmp_path / "store", runtime=runtime) as store, open_store(reference, runtime=runtime) as one:
        assert store.documents() == one.documents() != []
