"""Shared fixtures: the embedded default model, fetched once into the user cache like a user's first run.

Without a GPU the Triton kernels run under Triton's interpreter, which must be switched on before
triton (and so `kernels`, which the engine imports) is first imported: this conftest runs first.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from engine.model.files import resolve_model_path


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    return resolve_model_path(None)
