"""A store of the sample corpus read by the engine once per session, and a server started on a copy of it."""

from __future__ import annotations

import contextlib
import shutil
import socket
from pathlib import Path

import pytest

from app.server import ServeOptions, start
from engine.api import open_store
from engine.runtime import load_runtime

DATA = Path(__file__).resolve().parents[2] / "data"
TOKEN = "the-served-test-token"  # the chat's token in these tests (a real one is random)
AUTH = {"Authorization": f"token {TOKEN}"}  # how an API client sends it


@pytest.fixture(scope="session")
def sample_store(tmp_path_factory, default_model_path) -> Path:
    root = tmp_path_factory.mktemp("sample") / "store"
    with open_store(root, runtime=load_runtime(str(default_model_path), "cpu"), write=True) as store:
        store.add([DATA])
        store.process()
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(store: Path, tmp_path: Path, **options):
    """The app on a copy of `store` (tests that add documents must not change the shared one), guarded by
    TOKEN unless a login is given, folders addable under `tmp_path`: yields (url, corpus, the copy's path)."""
    copy = tmp_path / "served-store"
    shutil.copytree(store, copy)
    if "auth" not in options:
        options.setdefault("token", TOKEN)
    options.setdefault("roots", (tmp_path,))
    page, url, corpus = start(ServeOptions(copy, device="cpu", port=free_port(), **options), block=False)
    try:
        yield url, corpus, copy
    finally:
        page.close()
        corpus.close()
