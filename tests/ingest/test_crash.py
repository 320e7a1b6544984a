"""A run killed with SIGKILL at several points: the store opens, holds only whole documents, and a re-run
ends with exactly the documents and tokens of a run that was never interrupted."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.ingest.conftest import REPO

WORDS = ("river stone lantern orchard copper meadow falcon harbor cinder willow quartz ember thistle saffron "
         "glacier juniper marble tundra velvet beacon").split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("crash") / "corpus"
    rng = random.Random(7)
    for n in range(160):
        folder = root / f"folder{n % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(rng.choice(WORDS) for _ in range(12)) + f" {rng.randrange(10**6)}" for _ in range(60)]
        suffix = (".md", ".txt", ".py")[n % 3]
        body = "\n".join(lines) if suffix != ".py" else "\n".join(f"x_{i} = '{line}'" for i, line in enumerate(lines))
        (folder / f"doc{n:03d}{suffix}").write_text(f"# Document {n}\n\n{body}\n")
    (root / "folder0" / "copy.md").write_bytes((root / "folder1" / "doc001.txt").read_bytes())
    return root


def ingest_in_subprocess(store: Path, tokenizer_json: Path, corpus: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "tests.ingest.crash_runner", str(store), str(tokenizer_json),
                             str(corpus)], cwd=REPO, env=env, stderr=subprocess.PIPE)


def snapshot(store: Path) -> dict:
    with sqlite3.connect(store / "catalog.db") as db:
        return {
            "documents": db.execute("SELECT d.name, d.sha256, d.status, c.token_start, c.token_end FROM documents d "
                                    "LEFT JOIN contents c ON c.id = d.content_id ORDER BY d.name").fetchall(),
            "spans": db.execute("SELECT token_start, token_end, line_start, line_end, text FROM spans "
                                "ORDER BY token_start").fetchall(),
            "tokens": (store / "tokens.u32").read_bytes(),
        }


def check_whole_documents(store: Path, clean: dict) -> int:
    """The catalog opens, is intact, and records only whole documents that match the clean run's."""
    with sqlite3.connect(store / "catalog.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        committed = int(db.execute("SELECT value FROM meta WHERE key = 'sequence_tokens'").fetchone()[0])
        contents = db.execute("SELECT id, token_start, token_end, body_start FROM contents ORDER BY token_start")
        at = 0
        for content_id, start, end, body in contents.fetchall():
            assert start == at  # contents follow each other with nothing missing
            spans = db.execute("SELECT token_start, token_end FROM spans WHERE content_id = ? ORDER BY ordinal",
                               [content_id]).fetchall()
            assert spans[0][0] == body and spans[-1][1] == end - 1
            at = end
        assert at == committed
        orphans = db.execute("SELECT count(*) FROM documents d WHERE d.content_id IS NOT NULL AND NOT EXISTS "
                             "(SELECT 1 FROM contents c WHERE c.id = d.content_id)").fetchone()[0]
        assert orphans == 0
    on_disk = (store / "tokens.u32").read_bytes()
    assert len(on_disk) >= committed * 4  # anything past the committed length is cut off by the next writer
    assert on_disk[: committed * 4] == clean["tokens"][: committed * 4]
    return committed


def test_runs_killed_at_random_points_resume_to_the_uninterrupted_result(tmp_path, corpus, tokenizer_json):
    clean_store = tmp_path / "clean"
    assert ingest_in_subprocess(clean_store, tokenizer_json, corpus).wait(timeout=120) == 0
    clean = snapshot(clean_store)
    total_bytes = len(clean["tokens"])
    store = tmp_path / "killed"
    rng = random.Random(11)
    kills = 0
    for fraction in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95):
        process = ingest_in_subprocess(store, tokenizer_json, corpus)
        target = total_bytes * (fraction + rng.uniform(-0.04, 0.04))
        deadline = time.monotonic() + 120
        tokens_file = store / "tokens.u32"
        while process.poll() is None and time.monotonic() < deadline:
            if tokens_file.exists() and tokens_file.stat().st_size >= target:
                time.sleep(rng.choice([0, 0, 0.002, 0.01, 0.03]))  # just after an append, or a little later
                process.send_signal(signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.001)
        process.wait(timeout=60)
        check_whole_documents(store, clean)
    assert kills >= 3  # most runs were cut short (a fast machine may finish a run before its point)
    assert ingest_in_subprocess(store, tokenizer_json, corpus).wait(timeout=120) == 0
    resumed = snapshot(store)
    assert resumed["tokens"] == clean["tokens"]
    assert resumed["documents"] == clean["documents"]
    assert resumed["spans"] == clean["spans"]
