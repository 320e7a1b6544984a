"""The CLI in a real pseudo-terminal, where rich draws live progress: people run it in one.

Output redirected to a pipe takes other paths (no live display), so these run each command under a pty
and read what a person would see.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def run_on_pty(*args: str, store: Path, timeout: float = 600) -> tuple[int, str]:
    """Runs `engine ARGS` with a pty as its stdin, stdout and stderr; returns its exit code and screen text."""
    leader, follower = pty.openpty()
    env = {**os.environ, "ENGINE_STORE": str(store), "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}
    process = subprocess.Popen([sys.executable, "-m", "engine", *args], stdin=follower, stdout=follower,
                               stderr=follower, env=env, cwd=REPO, start_new_session=True)
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                process.kill()
                raise TimeoutError(f"engine {' '.join(args)} printed nothing for {timeout} s")
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
    screen = b"".join(chunks).decode("utf-8", "replace")
    return process.wait(timeout=60), re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)


def test_ingest_ask_and_selftest_work_in_a_terminal(tmp_path, default_model_path):
    store = tmp_path / "store"
    code, screen = run_on_pty("ingest", str(DATA / "notes"), store=store)
    assert code == 0, screen
    assert "Traceback" not in screen
    assert "engine" in screen and "tokens" in screen and "tok/s" in screen  # the model's pass drew its progress
    assert "added" in screen and "sequence length" in screen

    code, screen = run_on_pty("ask", "Who leads project Osprey?", store=store)
    assert code == 0, screen
    assert "Traceback" not in screen and "project-osprey.md" in screen

    code, screen = run_on_pty("selftest", "passkey", "--lengths", "1k", "--trials", "1", store=store)
    assert code == 0, screen
    assert "Traceback" not in screen and "1,024 tokens" in screen and "100%" in screen


def test_a_damaged_store_and_a_bad_question_are_one_line_each_in_a_terminal(tmp_path, monkeypatch):
    """The hardening messages as a person sees them: one line each on a terminal, where rich would wrap text."""
    pytest.importorskip("transformers")
    from tests.engine.tiny_gguf import tiny_reference_model, write_tiny_gguf

    monkeypatch.setenv("ENGINE_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "tiny.gguf"
    write_tiny_gguf(tiny_reference_model(), model, "Q8_0")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.md").write_text("".join(f"copper lantern line {n} of the long note\n" for n in range(600)))
    store = tmp_path / "store"
    tiny = ("--model", str(model), "--device", "cpu")
    code, screen = run_on_pty("ingest", str(notes), "--batch-segments", "1", *tiny, store=store)
    assert code == 0, screen

    code, screen = run_on_pty("ask", "x" * 100_000, *tiny, store=store)
    assert code == 2 and "Traceback" not in screen
    assert len([line for line in screen.splitlines() if "too long" in line]) == 1
    assert [line for line in screen.splitlines() if line.strip()] == \
        [line for line in screen.splitlines() if "engine ask: the question is too long" in line]

    victim = sorted((store / "states").glob("*.safetensors"))[0]
    os.truncate(victim, 100)
    code, screen = run_on_pty("status", store=store)
    assert code == 0 and "Traceback" not in screen
    assert any(victim.name in line and "cut short" in line and "engine ingest" in line for line in screen.splitlines())

    code, screen = run_on_pty("ingest", str(notes), "--batch-segments", "1", *tiny, store=store)
    assert code == 0 and "Traceback" not in screen, screen
    assert any("repairing" in line and victim.name in line and "again" in line for line in screen.splitlines()), screen
    code, screen = run_on_pty("ask", "where is the copper lantern?", *tiny, store=store)
    assert code == 0 and "Traceback" not in screen, screen
