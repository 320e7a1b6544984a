"""Shared fixtures: the embedded default model, fetched once into the user cache like a user's first run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.model_files import resolve_model_path


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return resolve_model_path(None)
