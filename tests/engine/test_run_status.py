"""A run killed mid-way shows as interrupted in `engine status`, not as running forever; a live one as running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.cli import main

REPO = Path(__file__).resolve().parents[2]
# A writer as an ingest is one: it holds the store's lock and has recorded its run as running.
WRITER = """
import sys, time
from pathlib import Path
from ingest.store import Store
store = Store.open(Path(sys.argv[1]), write=True)
store.db.execute("INSERT INTO runs(started_at, status, roots) VALUES ('2026-01-01T00:00:00', 'running', '[]')")
store.db.conn.commit()
print("ready", flush=True)
time.sleep(3600)
"""


def last_run_status(capsys, store: Path) -> str:
    assert main(["status", "--store", str(store), "--json"]) == 0
    return json.loads(capsys.readouterr().out)["last_run"]["status"]


def test_a_killed_run_is_interrupted_and_a_live_one_running(tmp_path, capsys):
    store = tmp_path / "store"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert writer.stdout.readline().strip() == "ready"
        assert last_run_status(capsys, store) == "running"
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=60)
        assert last_run_status(capsys, store) == "interrupted"
    finally:
        writer.kill()
        writer.wait(timeout=60)
    assert main(["status", "--store", str(store)]) == 0
    assert "interrupted" in capsys.readouterr().out
