"""Two writers creating the same new store at once: the lock is taken before anything is created, so one
builds it and the other is refused in one line, and the store is whole whichever wins."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.catalog import StoreError
from ingest.store import Store

ROUNDS = 10


def _writer(root: str, ready, done, results) -> None:
    """Opens the store for writing at the same moment as its rival, and holds it until both have tried."""
    ready.wait()
    try:
        store = Store.open(Path(root), write=True)
    except StoreError as error:
        results.put(("refused", str(error)))
        done.wait()
        return
    results.put(("writer", ""))
    done.wait()
    store.close()


def test_two_writers_racing_on_a_new_store_one_wins_and_the_other_is_refused(tmp_path):
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        root = tmp_path / f"store-{round_number}"
        ready, done, results = context.Barrier(2), context.Barrier(2), context.Queue()
        racers = [context.Process(target=_writer, args=(str(root), ready, done, results)) for _ in range(2)]
        for racer in racers:
            racer.start()
        outcomes = sorted(results.get(timeout=120) for _ in racers)
        for racer in racers:
            racer.join(timeout=120)
            assert racer.exitcode == 0
        assert [kind for kind, _ in outcomes] == ["refused", "writer"]
        assert "another `engine ingest` is writing" in outcomes[0][1]
        assert sorted(path.name for path in root.iterdir() if not path.name.startswith("catalog.db-")) == \
            ["catalog.db", "lock", "tokens.u32"]
        with sqlite3.connect(root / "catalog.db") as db:
            assert db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone() == ("1",)
        Store.open(root).close()


def test_two_ingests_racing_on_a_new_store_never_show_a_traceback(tmp_path):
    pytest.importorskip("transformers")
    from tests.engine.tiny_gguf import tiny_reference_model, write_tiny_gguf

    model = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_reference_model(), model, "Q8_0")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nThe first note.\n")
    env = {"ENGINE_CACHE": str(tmp_path / "cache")}
    for round_number in range(3):
        store = tmp_path / f"store-{round_number}"
        command = [sys.executable, "-m", "engine", "ingest", str(notes), "--no-process", "--store", str(store),
                   "--model", str(model)]
        racers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **env}) for _ in range(2)]
        finished = [(racer.wait(timeout=600), racer.stderr.read()) for racer in racers]
        for code, err in finished:
            assert "Traceback" not in err
            assert code == 0 or (code == 2 and len(err.strip().splitlines()) == 1 and "another" in err)
        assert 0 in [code for code, _ in finished]
        assert not (store / "catalog.db.new").exists()
        with Store.open(store) as opened:
            assert opened.db.execute("SELECT count(*) FROM documents WHERE status = 'ok'").fetchone() == (1,)
