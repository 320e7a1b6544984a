"""`engine ingest` and `engine status` as a user meets them: the sample corpus, every broken file, bad input.

These test the front end, so they pass --no-process (the model's pass over the new tokens is the engine's,
tested with the engine).
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main
from tests.ingest.pdfs import encrypt_pdf, make_pdf

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2


def engine_json(capsys, *args: str) -> dict:
    assert main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ingest_the_sample_corpus_then_status(tmp_path, capsys, default_model_path):
    store = str(tmp_path / "store")
    summary = engine_json(capsys, "ingest", str(DATA), "--store", store, "--no-process")
    assert summary["added"] == 8 and summary["skipped"] == {} and summary["tokens_added"] > 1000
    report = engine_json(capsys, "status", "--store", store)
    assert report["documents"] == {"code": {"ok": 1}, "markdown": {"ok": 4}, "pdf": {"ok": 1}, "rst": {"ok": 1},
                                   "text": {"ok": 1}}
    assert report["tokens"]["sequence"] == report["tokens"]["live"] == summary["sequence_tokens"]
    assert report["unprocessed"]["tokens"] == summary["sequence_tokens"]
    assert report["size_on_disk"]["tokens"] == 4 * summary["sequence_tokens"]
    again = engine_json(capsys, "ingest", str(DATA), "--store", store, "--no-process")
    assert (again["unchanged"], again["tokens_added"]) == (8, 0)


def test_human_output_has_a_summary_table_and_a_status_table(tmp_path, capsys, default_model_path):
    store = str(tmp_path / "store")
    assert main(["ingest", str(DATA / "notes"), "--store", store, "--no-process"]) == 0
    out = capsys.readouterr().out
    assert "added" in out and "3" in out and "tokens appended" in out
    assert main(["status", "--store", store]) == 0
    out = capsys.readouterr().out
    assert "markdown" in out and "not processed by the engine yet" in out


def write_broken_corpus(root: Path) -> None:
    root.mkdir()
    (root / "good.md").write_text("# Fine\n\nThis one is fine.\n")
    pdf = make_pdf([["line " * 15] * 40, ["more " * 15] * 40])
    (root / "truncated.pdf").write_bytes(pdf[: len(pdf) // 2])
    (root / "encrypted.pdf").write_bytes(encrypt_pdf(make_pdf([["top secret"]]), "hunter2"))
    (root / "noise.pdf").write_bytes(os.urandom(5000))
    (root / "latin1.txt").write_bytes("Fête à Noël, ½ prix".encode("latin-1"))
    (root / "empty.txt").write_bytes(b"")
    (root / "big.txt").write_text("word " * 5000)
    os.symlink(".", root / "loop")
    unreadable = root / "unreadable.txt"
    unreadable.write_text("you cannot see me\n")
    unreadable.chmod(0)
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside.txt").write_text("hidden away\n")
    locked.chmod(0)


def _without_file_permission_override() -> None:
    """Run as root without the capabilities that let root read any file, so mode 000 really means unreadable."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
            if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_every_broken_file_gets_a_recorded_reason_and_the_run_completes(tmp_path, default_model_path):
    corpus, store = tmp_path / "broken", tmp_path / "store"
    write_broken_corpus(corpus)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "engine", "ingest", str(corpus), "--store", str(store), "--max-file-mb", "0.01",
             "--json", "--no-process"], capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            preexec_fn=_without_file_permission_override)
    finally:
        (corpus / "locked").chmod(0o755)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == 2  # good.md, and latin1.txt read as Windows-1252
    assert summary["skipped"] == {"damaged": 2, "encrypted": 1, "empty": 1, "too-large": 1, "link-loop": 1,
                                  "unreadable": 2}
    with sqlite3.connect(store / "catalog.db") as db:
        rows = {name.split("/", 1)[1]: (status, code, reason) for name, status, code, reason in db.execute(
            "SELECT name, status, reason_code, reason FROM documents")}
    assert rows["latin1.txt"][:2] == ("partial", "encoding") and "Windows-1252" in rows["latin1.txt"][2]
    assert rows["unreadable.txt"] == ("skipped", "unreadable", "permission denied")
    assert rows["locked"][:2] == ("skipped", "unreadable") and "cannot list folder" in rows["locked"][2]
    assert rows["loop"][:2] == ("skipped", "link-loop")
    assert rows["big.txt"][:2] == ("skipped", "too-large") and "--max-file-mb" in rows["big.txt"][2]
    for name in ("truncated.pdf", "noise.pdf", "encrypted.pdf", "empty.txt"):
        assert rows[name][0] == "skipped" and rows[name][2], name
    assert rows["good.md"] == ("ok", None, None)


def run_engine(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("args, expected", [
    (["ingest", "/no/such/folder"], "path not found: /no/such/folder"),
    (["ingest", str(DATA), "--max-file-mb", "0"], "--max-file-mb must be positive"),
    (["ingest", str(DATA), "--batch-segments", "0"], "--batch-segments must be at least 1"),
    (["status"], "no store at"),
])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, args, expected):
    result = run_engine(*args, "--store", str(tmp_path / "store"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]


def test_a_store_made_with_another_tokenizer_is_refused(tmp_path, capsys, default_model_path):
    store = tmp_path / "store"
    assert main(["ingest", str(DATA / "todo.txt"), "--store", str(store), "--json", "--no-process"]) == 0
    with sqlite3.connect(store / "catalog.db") as db:
        db.execute("UPDATE meta SET value = '00000000deadbeef' WHERE key = 'tokenizer_fingerprint'")
        db.execute("UPDATE meta SET value = 'another model' WHERE key = 'model_key'")
    result = run_engine("ingest", str(DATA), "--store", str(store), "--no-process")
    assert result.returncode == 2 and "another tokenizer" in result.stderr and "Traceback" not in result.stderr
