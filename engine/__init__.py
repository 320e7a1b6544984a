"""The wholecorpus engine: the model, the memory of the corpus, answers with citations.

What the app (and any other caller) may use is exported here and nowhere else. The exports that need
torch are loaded on first use (PEP 562 `__getattr__`), so that `engine --help`, `engine status` and
`python -m app --help` do not pay seconds for it.
"""

from __future__ import annotations

import importlib

from engine.errors import RunError, UsageError
from engine.model.files import ModelError
from engine.store import default_store
from ingest.durable import written as durably_written
from ingest.store import exists as store_exists

_LAZY = {
    "open_store": "engine.api",
    "EngineStore": "engine.api",
    "READABLE_SUFFIXES": "engine.api",
    "TOP_K": "engine.api",
    "binary_reason": "engine.api",
    "Answer": "engine.answer.generation",
    "Token": "engine.answer.generation",
    "Grounds": "engine.answer.generation",
    "Citation": "engine.answer.citations",
    "Evidence": "engine.answer.evidence",
    "unknown_said": "engine.answer.found",
    "StoreFigures": "engine.memory.segments",
    "Runtime": "engine.runtime",
    "load_runtime": "engine.runtime",
    "run_passkey": "engine.selftest.passkey",
    "summarise": "engine.selftest.passkey",
}

__all__ = ["ModelError", "RunError", "UsageError", "default_store", "durably_written", "store_exists", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
