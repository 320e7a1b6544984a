"""The engine's public API, for the CLI and the app: open a store, bring it up to date, ask it questions.

    store = engine.open_store("~/corpus-store")
    for event in store.ask("Where is the spare key?"):
        ...   # engine.Grounds (the evidence) first, engine.Token pieces while the answer streams,
              # then the engine.Answer with the citations that support it
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from pathlib import Path

from engine.answer.citations import Citation, citation_record, pinned_to_evidence, supporting
from engine.answer.evidence import Choice, best_sentences, choose_evidence
from engine.answer.excerpts import Excerpt, excerpts_for_blocks
from engine.answer.found import is_found, unknown_names
from engine.answer.generation import Answer, Grounds, Token, answer_stream
from engine.answer.prompt import fit_excerpts
from engine.answer.retrieval import TOP_K, retrieve
from engine.answer.support import unsupported
from engine.errors import UsageError
from engine.memory import key_index
from engine.memory.calibration import calibration_for
from engine.memory.config import DEFAULT_MEMORY, EngineConfig, load_config
from engine.memory.key_index import KeyIndex
from engine.memory.segments import (
    ProcessReport,
    StoreFigures,
    config_for_store,
    process_store,
    require_same_model,
    store_figures,
)
from engine.question import check_question
from engine.runtime import Runtime, load_runtime
from engine.store_check import check_store, forget_damaged_segments
from ingest import catalog
from ingest.catalog import StoreError
from ingest.extract import CODE, MARKDOWN, PDF, RST, binary_reason
from ingest.pipeline import IngestOptions, Progress, RunSummary, ingest
from ingest.store import Store
from ingest.tokens import sequence_tokenizer

MAX_CONTEXT_TOKENS = 1024  # the small model answers best from a short context
MAX_NEW_TOKENS = 128  # an answer's length: room to quote the evidence (a sentence or a few) and say it
# The reader reads the excerpts of the READ_BLOCKS best blocks and the one holding the evidence sentence: the
# evidence is chosen among all TOP_K blocks' sentences, but each excerpt more in the prompt costs its prefill.
READ_BLOCKS = 4
CLOSEST = 3  # passages offered when a question was not found: enough to see what the files hold nearby
# File suffixes the ingest reads as documents, plain text or source code (the app accepts these as uploads).
READABLE_SUFFIXES = frozenset(MARKDOWN | RST | PDF | set(CODE) | {".txt", ".text", ".log", ".csv", ".org"})
# binary_reason: the app's upload check
__all__ = ["EngineStore", "READABLE_SUFFIXES", "TOP_K", "binary_reason", "open_store"]


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

    def add(self, paths: list[Path], progress: Progress | None = None,
            options: IngestOptions | None = None) -> RunSummary:
        """Ingests `paths` with this model's tokenizer (the store must be open for writing); `process()` reads them."""
        tokenizer = self.runtime.tokenizer
        try:
            return ingest(self.store, paths, lambda: sequence_tokenizer(tokenizer.backend, tokenizer.fingerprint),
                          options or IngestOptions(), progress=progress)
        except StoreError as error:
            raise UsageError(str(error)) from error

    def process(self, progress: Callable[[int, int], None] | None = None, across_ranks: bool = False,
                batch_segments: int | None = None, memory: str = DEFAULT_MEMORY) -> ProcessReport:
        """Reads what is new; `across_ranks` (this process being rank 0 of a joined process group) deals the
        segments out to every rank (`engine.parallel.sharded`). `batch_segments` segments go through the model in one
        forward pass (default: what suits each device); the stored keys do not depend on it. `memory` ("fast" or
        "best", `engine.memory.config.MEMORY_SETTINGS`) is taken by a store processed for the first time; a store
        keeps the setting it was first processed with."""
        if batch_segments is not None and batch_segments < 1:
            raise UsageError(f"batch_segments must be at least 1 (got {batch_segments})")
        forget_damaged_segments(self.store, check_store(self.store))  # read again below
        self.config = config_for_store(self.store, self.runtime, lambda: calibration_for(self.runtime), memory)
        if across_ranks:
            from engine.parallel.sharded import coordinate

            report = coordinate(self.store, self.runtime, self.config, progress, batch_segments)
        else:
            report = process_store(self.store, self.runtime, self.config, progress, batch_segments)
        self._index = None
        return report

    def read_new(self, progress: Callable[[int, int], None] | None = None, across_ranks: bool = False,
                 batch_segments: int | None = None,
                 indexing: AbstractContextManager | None = None, memory: str = DEFAULT_MEMORY) -> ProcessReport:
        """After an ingest: the model reads what is new (`process`), then the key index is readied for the
        store's new size (`prepare_index`, inside `indexing`, e.g. a progress display). The one order the
        command line and the app both follow."""
        report = self.process(progress, across_ranks, batch_segments, memory)
        with indexing or nullcontext():
            self.prepare_index()
        return report

    def prepare_index(self) -> bool:
        """Past `key_index.EXACT_MAX_ROWS` keys, builds the IVF index now and saves it in the store; below, does
        nothing (the exact index has nothing to train). Returns whether it built one.

        Training the lists takes tens of seconds at 2M keys and minutes at 10M. Done here, at the end of the
        ingest that made the store that large, no question has to wait for it: `ask` finds the saved lists.
        """
        if self.config is None or key_index.stored_rows(self.store.db) <= key_index.EXACT_MAX_ROWS:
            return False
        self._index = KeyIndex.build(self.store, self.config)
        return True

    def index(self) -> KeyIndex:
        if self._index is None:
            self._index = KeyIndex.build(self.store, self.config)
        return self._index

    def refresh(self) -> None:
        """Catches up with what another writer committed since this store was opened (config, new segments)."""
        if self.config is None:
            self.config = load_config(self.store.db)
            require_same_model(self.config, self.runtime)
        elif self._index is not None:
            self._index.refresh(self.store)

    def ask(self, question: str, top_k: int = TOP_K, max_new_tokens: int = MAX_NEW_TOKENS, lexical: bool = True,
            temperature: float = 0.0, previous: str | None = None) -> Iterator[Grounds | Token | Answer]:
        """Events: the Grounds (evidence, found or not) before the answer starts, a Token for each piece of the
        answer while it streams, then the Answer with the citations that support it. A question not found gets
        no answer: the Grounds, then at once the Answer with no text and the closest passages.

        `previous`, the question asked just before, makes this one a follow-up ("and when was that?"): its
        words join this question's in retrieval and in choosing the evidence, which a question that only
        points back ("that", "it") could not find alone."""
        check_question(self.runtime.tokenizer, question, self.runtime.config.trained_context)
        sought = question
        if previous:
            check_question(self.runtime.tokenizer, previous, self.runtime.config.trained_context)
            sought = f"{previous} {question}"
        damage = check_store(self.store, states=self._index is None)  # once built, keys are in memory
        if damage:
            raise UsageError(f"the store is damaged: {damage.line()}; {damage.advice()}")
        self.refresh()
        if self.config is None or self.index().tokens == 0:
            raise UsageError(f"the store at {self.root} holds nothing the engine has read yet: "
                             f"run `engine ingest PATH` first")
        started = time.perf_counter()
        blocks, excerpts = self._retrieve(sought, top_k, lexical)
        nearest = list(excerpts)  # all retrieved, also those the prompt has no room for: should it not be found
        retrieved = time.perf_counter() - started
        texts = [self.runtime.tokenizer.decode(e.ids) for e in excerpts]
        choice = choose_evidence(excerpts, texts, sought, self.lines)
        unknown = unknown_names(self.store.db, sought)
        found = is_found(choice, unknown)
        if not found:
            # No answer is given, so none is generated: the reply (that it was not found, and the closest
            # passages) is whole at once, and nothing the model made up is kept where it could pass for an answer.
            evidence_ready = time.perf_counter() - started
            yield Grounds(choice.evidence, found, unknown)
            closest = self._closest(nearest, texts, sought)
            total = time.perf_counter() - started
            yield Answer(closest=closest, evidence=choice.evidence, found=found, unknown=unknown,
                         timings={"retrieve_s": retrieved, "evidence_s": evidence_ready, "first_token_s": total,
                                  "total_s": total})
            return
        evidence = choice.evidence[0]
        excerpts, choice = read_excerpts(excerpts, choice, [block for block, _ in blocks[:READ_BLOCKS]],
                                         self.config.block_tokens)
        # The evidence sentence is quoted again under the question (`build_prompt`), and its excerpt goes first,
        # so that fitting the prompt keeps it, then last: the small model reads the excerpt closest to the question.
        quote = (excerpts[choice.excerpt], evidence.text)
        excerpts.insert(0, excerpts.pop(choice.excerpt))
        excerpts = fit_excerpts(self.runtime, excerpts, question, self.runtime.config.trained_context - max_new_tokens,
                                quote)
        if excerpts:
            excerpts.append(excerpts.pop(0))
        else:
            quote = None
        evidence_ready = time.perf_counter() - started
        yield Grounds(choice.evidence, found, unknown)
        read = [self.runtime.tokenizer.decode(e.ids) for e in excerpts] + [e.text for e in choice.evidence]
        for event in answer_stream(self.runtime, excerpts, question, max_new_tokens, started, temperature,
                                   quote):
            if isinstance(event, Answer):
                event.timings["retrieve_s"] = retrieved
                event.timings["evidence_s"] = evidence_ready
                event.evidence, event.found, event.unknown = choice.evidence, found, unknown
                event.citations = supporting(pinned_to_evidence(event.citations, evidence, self.lines), evidence,
                                             event.text, sought)
                event.unsupported = unsupported(event.text, read, [e.citation.paths[0] for e in excerpts])
            yield event

    def _closest(self, excerpts: list[Excerpt], texts: list[str], question: str) -> list[Citation]:
        """For a question not found: the CLOSEST of the retrieved passages (`excerpts`, whose texts are `texts`):
        those sharing a word with the question first, the best-matching first, each marking its sentence that
        matches best; then the others in the corpus' order, each marking where it begins. None of them is said
        to support anything."""
        matched = best_sentences(excerpts, texts, question, self.lines)
        records = [pinned_to_evidence([citation_record(excerpts[number], texts[number])], sentence, self.lines)[0]
                   for number, sentence in matched[:CLOSEST]]
        marked = {number for number, _ in matched}
        others = [number for number in range(len(excerpts)) if number not in marked]
        return records + [citation_record(excerpts[number], texts[number])
                          for number in others[:CLOSEST - len(records)]]

    def passages(self, question: str, top_k: int = TOP_K, lexical: bool = True) -> list[Excerpt]:
        """The excerpts retrieved for `question`, widened to whole lines, in corpus order (before the prompt is fitted)."""
        return self._retrieve(question, top_k, lexical)[1]

    def _retrieve(self, question: str, top_k: int, lexical: bool) -> tuple[list[tuple[int, float]], list[Excerpt]]:
        """The `top_k` best blocks (best first) and the excerpts they cover (`passages`)."""
        blocks = retrieve(self.runtime, self.config, self.index(), self.store, question, top_k, lexical)
        return blocks, excerpts_for_blocks(self.runtime, self.store, blocks, self.config.block_tokens,
                                           MAX_CONTEXT_TOKENS)

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

    def __enter__(self) -> EngineStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_excerpts(excerpts: list[Excerpt], choice: Choice, best: list[int],
                  block_tokens: int) -> tuple[list[Excerpt], Choice]:
    """The excerpts the answer's prompt gets: those covering one of the `best` blocks, and the evidence's
    (`choice.excerpt`, renumbered among those kept)."""
    kept = [number for number, excerpt in enumerate(excerpts) if number == choice.excerpt or any(
        excerpt.token_start // block_tokens <= block <= (excerpt.token_start + len(excerpt.ids) - 1) // block_tokens
        for block in best)]
    where = kept.index(choice.excerpt) if choice.excerpt is not None else None
    return [excerpts[number] for number in kept], replace(choice, excerpt=where)


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
