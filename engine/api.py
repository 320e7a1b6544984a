"""The engine's public API, for the CLI and the app: open a store, bring it up to date, ask it questions.

    store = engine.open_store("~/corpus-store")
    for kind, value in store.ask("Where is the spare key?"):
        ...   # ("token", str) while the answer streams, then ("answer", engine.answer.Answer)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

from engine.answer import Answer, answer_stream, excerpts_for_blocks, fit_excerpts
from engine.calibration import calibration_for
from engine.errors import UsageError
from engine.config import EngineConfig, load_config
from engine.memory import (ProcessReport, StoreFigures, config_for_store, process_store, require_same_model,
                           store_figures)
from engine import key_index
from engine.key_index import KeyIndex
from engine.question import check_question
from engine.retrieval import retrieve
from engine.runtime import Runtime, load_runtime
from engine.store_check import check_store, forget_damaged_segments
from ingest import catalog
from ingest.catalog import StoreError
from ingest.extract import CODE, MARKDOWN, PDF, RST, binary_reason
from ingest.pipeline import Progress, RunSummary, ingest
from ingest.store import Store
from ingest.tokens import sequence_tokenizer

MAX_CONTEXT_TOKENS = 1024  # the small model answers best from a short context
# File suffixes the ingest reads as documents, plain text or source code (the app accepts these as uploads).
READABLE_SUFFIXES = frozenset(MARKDOWN | RST | PDF | set(CODE) | {".txt", ".text", ".log", ".csv", ".org"})
__all__ = ["EngineStore", "READABLE_SUFFIXES", "binary_reason", "open_store"]  # binary_reason: the app's upload check


class EngineStore:
    """An open store with its model: `process()` reads what is new, `ask()` answers from everything read."""

    def __init__(self, store: Store, runtime: Runtime):
        self.store, self.runtime = store, runtime
        try:
            catalog.check_tokenizer(store.db, runtime.tokenizer.fingerprint)
        except StoreError as error:
            raise UsageError(str(error)) from error
        self.config: EngineConfig | None = load_config(store.db)
        require_same_model(self.config, runtime)
        self._index: KeyIndex | None = None

    @property
    def root(self) -> Path:
        return self.store.root

    def add(self, paths: list[Path], progress: Progress | None = None) -> RunSummary:
        """Ingests `paths` with this model's tokenizer (the store must be open for writing); `process()` reads them."""
        tokenizer = self.runtime.tokenizer
        try:
            return ingest(self.store, paths, lambda: sequence_tokenizer(tokenizer.backend, tokenizer.fingerprint),
                          progress=progress)
        except StoreError as error:
            raise UsageError(str(error)) from error

    def process(self, progress: Callable[[int, int], None] | None = None, across_ranks: bool = False,
                batch_segments: int | None = None) -> ProcessReport:
        """Reads what is new; `across_ranks` (this process being rank 0 of a joined process group) deals the
        segments out to every rank (`engine.sharded`). `batch_segments` segments go through the model in one
        forward pass (default: what suits each device); the stored keys do not depend on it."""
        if batch_segments is not None and batch_segments < 1:
            raise UsageError(f"batch_segments must be at least 1 (got {batch_segments})")
        forget_damaged_segments(self.store.db, check_store(self.root, self.store.db))  # read again below
        self.config = config_for_store(self.store.db, self.runtime, lambda: calibration_for(self.runtime))
        if across_ranks:
            from engine.sharded import coordinate

            report = coordinate(self.root, self.store.db, self.runtime, self.config, progress, batch_segments)
        else:
            report = process_store(self.root, self.store.db, self.runtime, self.config, progress, batch_segments)
        self._index = None
        return report

    def prepare_index(self) -> bool:
        """Past `key_index.EXACT_MAX_ROWS` keys, builds the IVF index now and saves it in the store; below, does
        nothing (the exact index has nothing to train). Returns whether it built one.

        Training the lists takes tens of seconds at 2M keys and minutes at 10M. Done here, at the end of the
        ingest that made the store that large, no question has to wait for it: `ask` finds the saved lists.
        """
        if self.config is None or key_index.stored_rows(self.store.db) <= key_index.EXACT_MAX_ROWS:
            return False
        self._index = KeyIndex.build(self.root, self.store.db, self.config)
        return True

    def index(self) -> KeyIndex:
        if self._index is None:
            self._index = KeyIndex.build(self.root, self.store.db, self.config)
        return self._index

    def refresh(self) -> None:
        """Catches up with what another writer committed since this store was opened (config, new segments)."""
        if self.config is None:
            self.config = load_config(self.store.db)
            require_same_model(self.config, self.runtime)
        elif self._index is not None:
            self._index.refresh(self.root, self.store.db)

    def ask(self, question: str, top_k: int = 4, max_new_tokens: int = 128, lexical: bool = True,
            temperature: float = 0.0) -> Iterator[tuple[str, object]]:
        """Events: ("token", text) while the answer streams, then ("answer", Answer) with its citations."""
        check_question(self.runtime.tokenizer, question, self.runtime.config.trained_context)
        damage = check_store(self.root, self.store.db, states=self._index is None)  # once built, keys are in memory
        if damage:
            raise UsageError(f"the store is damaged: {damage.line()}; {damage.advice()}")
        self.refresh()
        if self.config is None or self.index().tokens == 0:
            raise UsageError(f"the store at {self.root} holds nothing the engine has read yet: "
                             f"run `engine ingest PATH` first")
        started = time.perf_counter()
        blocks = retrieve(self.runtime, self.config, self.index(), self.root, self.store.db, question, top_k, lexical)
        retrieved = time.perf_counter() - started
        excerpts = excerpts_for_blocks(self.runtime, self.root, self.store.db, blocks, self.config.block_tokens,
                                       MAX_CONTEXT_TOKENS)
        excerpts = fit_excerpts(self.runtime, excerpts, question, self.runtime.config.trained_context - max_new_tokens)
        for kind, value in answer_stream(self.runtime, excerpts, question, max_new_tokens, started, temperature):
            if isinstance(value, Answer):
                value.timings["retrieve_s"] = retrieved
            yield kind, value

    def documents(self) -> list[dict]:
        """Every document the store knows (path, name, kind, status, reason, tokens, date, live), live ones first."""
        return catalog.documents_table(self.store.db)

    def remove(self, path: str) -> bool:
        """Stops citing and retrieving the document at `path` (until it is ingested again)."""
        return catalog.remove_document(self.store.db, path)

    def lines(self, name: str, page: int | None, first: int, last: int) -> tuple[int, list[str]]:
        """Lines of a live document by its name, as a citation names it: (first line number, lines)."""
        return catalog.document_lines(self.store.db, name, page, first, last)

    def figures(self) -> StoreFigures:
        return store_figures(self.store, self.runtime)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "EngineStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_store(path: str | Path, model: str | None = None, device: str | None = None, write: bool = False,
               runtime: Runtime | None = None) -> EngineStore:
    """The store at `path` with its model loaded (`runtime` reuses one already loaded)."""
    try:
        store = Store.open(Path(path).expanduser(), write=write)
    except StoreError as error:
        raise UsageError(str(error)) from error
    try:
        return EngineStore(store, runtime or load_runtime(model, device))
    except BaseException:
        store.close()
        raise
