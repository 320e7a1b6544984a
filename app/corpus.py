"""The app's side of one store: answering, adding and removing documents, figures — safe to call from
Gradio's worker threads at once.

Answers come from one long-lived reader (its retrieval index is kept and caught up with new segments),
used by one answer at a time; each answer is produced on its own thread that always finishes and lets
go of the reader, even when the browser that asked goes away. Adding documents takes the store's write
lock (one ingest at a time, the app's or the command line's); everything a reader sees was committed
before (the catalog is SQLite in WAL mode and a segment is recorded only after its state file is whole),
so chatting while an ingest runs never sees a half-written store.
"""

from __future__ import annotations

import os
import pwd
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.uploads import UPLOADS, Saved, Upload, save_uploads
from engine import (
    TOP_K,
    Answer,
    Citation,
    EngineStore,
    Runtime,
    StoreFigures,
    Token,
    UsageError,
    open_store,
    store_exists,
)

CONTEXT_LINES = 12  # shown around a cited passage when it is opened in its document


@dataclass(frozen=True)
class AskError:
    """An answer that could not be given, as the chat shows it."""

    message: str


@dataclass
class AddProgress:
    """Where an add stands, for a progress bar: the files read, then the tokens the model has read."""

    phase: str = "reading files"
    files: int = 0
    total_files: int = 0
    tokens: int = 0
    total_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / max(time.perf_counter() - self.started, 1e-6)

    @property
    def eta_seconds(self) -> float | None:
        rate = self.tokens_per_second
        return (self.total_tokens - self.tokens) / rate if self.total_tokens and rate > 0 else None


@dataclass
class AddResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    refused: list[tuple[str, str]] = field(default_factory=list)  # uploads not kept: (client name, reason)
    tokens_read: int = 0
    seconds: float = 0.0


def home_directory() -> Path:
    """The home directory of the user running this process (from the password database, not $HOME, which
    `sudo` may leave pointing at another user's)."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir)


def under_roots(path: Path, roots: tuple[Path, ...]) -> bool:
    """Whether `path`, symbolic links resolved, lies inside one of `roots` (resolved too)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


class Corpus:
    """`allowed_roots`: the folders under which the page may add a folder or file (default: the user's home
    directory). The page can name any path of the machine; without this, anyone allowed to use the chat
    could have the server read files its user can read and others cannot, then ask for their content."""

    def __init__(self, root: Path, runtime: Runtime, max_upload_bytes: int,
                 allowed_roots: tuple[Path, ...] | None = None):
        self.root, self.runtime, self.max_upload_bytes = Path(root).expanduser(), runtime, max_upload_bytes
        self.allowed_roots = tuple(Path(r).expanduser() for r in allowed_roots) if allowed_roots else (home_directory(),)
        if not store_exists(self.root):
            open_store(self.root, runtime=runtime, write=True).close()  # a new, empty store
        self._reader = open_store(self.root, runtime=runtime)
        self._reader_lock = threading.Lock()
        self._adding = threading.Lock()

    def ask(self, question: str, top_k: int = TOP_K, temperature: float = 0.0,
            previous: str | None = None) -> Iterator[Token | Answer | AskError]:
        """The engine's events for `question` (Token ... Answer), or an AskError; `previous` (the question
        asked before it in this conversation) makes it a follow-up.

        The answer starts at once, on its own thread, not when the caller first reads: the page can show
        the question while retrieval and the prompt's prefill are already under way."""
        events: queue.Queue = queue.Queue()

        def produce() -> None:
            with self._reader_lock:
                try:
                    for event in self._reader.ask(question, top_k=top_k, temperature=temperature, previous=previous):
                        events.put(event)
                except UsageError as error:
                    events.put(AskError(str(error)))
                except Exception as error:  # shown in the chat rather than lost in a worker thread
                    events.put(AskError(f"the engine failed: {error}"))
                finally:
                    events.put(None)

        threading.Thread(target=produce, name="answer", daemon=True).start()
        return iter(events.get, None)

    def add_paths(self, paths: list[Path], report: Callable[[AddProgress], None] | None = None) -> AddResult:
        """Ingests folders or files on this machine, then lets the model read what is new."""
        for path in paths:
            if not under_roots(path, self.allowed_roots):
                allowed = ", ".join(str(root) for root in self.allowed_roots)
                raise UsageError(f"{path} is outside the folders this chat may read ({allowed}); start it with "
                                 f"--allow-root to add another")
            if not path.exists():
                raise UsageError(f"path not found: {path}")
        return self._add(paths, AddResult(), report)

    def add_uploads(self, uploads: list[Upload], report: Callable[[AddProgress], None] | None = None) -> AddResult:
        saved: list[Saved] = save_uploads(self.root, uploads, self.max_upload_bytes)
        result = AddResult(refused=[(item.client_name, item.reason) for item in saved if item.reason])
        accepted = [item.path for item in saved if item.path is not None]
        return self._add(accepted, result, report) if accepted else result

    def _add(self, paths: list[Path], result: AddResult, report) -> AddResult:
        if not self._adding.acquire(blocking=False):
            raise UsageError("documents are being added already; wait for that to finish")
        try:
            progress = AddProgress()
            with open_store(self.root, runtime=self.runtime, write=True) as writer:
                summary = writer.add(paths, _IngestProgress(progress, report))
                progress.phase, progress.started = "the model is reading", time.perf_counter()

                def processed(done: int, total: int) -> None:
                    progress.tokens, progress.total_tokens = done, total
                    if report is not None:
                        report(progress)

                processing = writer.read_new(processed)  # past 2M keys it trains the lists here, not in a question
        finally:
            self._adding.release()
        result.added, result.updated, result.unchanged = summary.added, summary.updated, summary.unchanged
        result.skipped = [(name, reason) for name, status, _code, reason in summary.problems if status == "skipped"]
        result.tokens_read, result.seconds = processing.tokens, summary.seconds + processing.seconds
        return result

    def remove(self, path: str) -> bool:
        with open_store(self.root, runtime=self.runtime, write=True) as writer:
            removed = writer.remove(path)
        if removed and Path(path).parent == (self.root / UPLOADS).resolve():
            Path(path).unlink(missing_ok=True)  # an upload lives only in the store: it goes with its document
        return removed

    def documents(self) -> list[dict]:
        with self._fresh_reader() as reader:
            return reader.documents()

    def figures(self) -> StoreFigures:
        with self._fresh_reader() as reader:
            return reader.figures()

    def engine_settings(self) -> dict | None:
        with self._fresh_reader() as reader:
            reader.refresh()
            return None if reader.config is None else vars(reader.config)

    def passage(self, citation: Citation) -> tuple[int, list[str]]:
        """The cited lines with CONTEXT_LINES either side, from the document's stored text."""
        first = max(1, citation.start_line - CONTEXT_LINES)
        with self._fresh_reader() as reader:
            return reader.lines(citation.path, citation.page, first, citation.end_line + CONTEXT_LINES)

    def _fresh_reader(self) -> EngineStore:
        """A short-lived reader of its own, so listings never wait for an answer being generated."""
        return open_store(self.root, runtime=self.runtime)

    def close(self) -> None:
        with self._reader_lock:
            self._reader.close()


@dataclass
class _IngestProgress:
    """The ingest pipeline's progress protocol, turned into AddProgress reports."""

    progress: AddProgress
    report: Callable[[AddProgress], None] | None

    def start(self, files: int, total_bytes: int) -> None:
        self.progress.total_files = files
        self._send()

    def advance(self, files: int, done_bytes: int, tokens: int) -> None:
        self.progress.files += files
        self.progress.tokens += tokens
        self._send()

    def _send(self) -> None:
        if self.report is not None:
            self.report(self.progress)
