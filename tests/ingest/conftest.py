"""Fixtures for the ingest tests: the embedded model's tokenizer (loaded once) and a store to write into."""

from __future__ import annotations

from pathlib import Path

import pytest
from tokenizers import Tokenizer

from ingest.pipeline import IngestOptions, RunSummary, ingest
from ingest.sources import WalkOptions
from ingest.store import Store
from ingest.tokens import SequenceTokenizer, sequence_tokenizer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def model_tokenizer(default_model_path) -> tuple[Tokenizer, str]:
    """The embedded model's tokenizer (a `tokenizers.Tokenizer`) and its fingerprint, as the CLI builds them."""
    from engine.model.weights import load_model_tokenizer

    chat = load_model_tokenizer(default_model_path)
    return chat.backend, chat.fingerprint


@pytest.fixture(scope="session")
def tokenizer_json(model_tokenizer, tmp_path_factory) -> Path:
    """The tokenizer as a JSON file, for subprocesses that should not import torch to get it."""
    path = tmp_path_factory.mktemp("tokenizer") / "tokenizer.json"
    path.write_text(model_tokenizer[0].to_str())
    return path


@pytest.fixture(scope="session")
def sequence(model_tokenizer) -> SequenceTokenizer:
    return sequence_tokenizer(*model_tokenizer)


@pytest.fixture
def run(tmp_path, sequence):
    """run(*paths, **walk_options) -> RunSummary, ingesting into tmp_path/store (one store per test)."""
    store_dir = tmp_path / "store"

    def run_ingest(*paths: Path, **walk: object) -> RunSummary:
        with Store.open(store_dir, write=True) as store:
            return ingest(store, list(paths), lambda: sequence, IngestOptions(walk=WalkOptions(**walk)))

    run_ingest.store_dir = store_dir
    return run_ingest
