"""One ingest run: list the files, decide what changed, read and tokenize in parallel, append in order.

How a run goes, and why:
1. The walk (`sources`) lists every file in a stable order; each is compared with its catalog row.
   Same size and mtime -> unchanged, not even opened, unless the mtime is within two seconds of when the
   file was last read (it may have changed again within the file system's timestamp granularity): then
   its hash decides. A changed mtime with the same hash only refreshes the row.
2. Files to read go to a thread pool (reading, hashing, extraction, splitting and tokenizing; the
   tokenizer releases the GIL). Results are taken in listing order through a bounded window, so memory
   stays flat however large the corpus is and the sequence order is the listing order.
3. Identical bytes already in the store (under any path, live or tombstoned) are not appended again:
   the document points at the existing content, which comes back to life if it was tombstoned.
4. The writer collects whole documents into batches; a committer thread appends each batch to
   tokens.u32, fsyncs, then records the documents, contents, spans and the new committed length in one
   transaction, while the next batch is being read. A kill at any moment leaves whole documents only;
   the next writer cuts off an unfinished append (see `store`).
5. Documents under the walked roots that were not listed are tombstoned (status `removed`); a content no
   live document has any more is tombstoned with its spans. Nothing is deleted from the sequence.
A file's own trouble (unreadable, vanished, binary, damaged...) is recorded with a reason and the run
goes on; only trouble with the store itself (a full disk) stops the run, leaving it consistent.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ingest import catalog
from ingest.catalog import LIVE_STATUSES, StoreError
from ingest.extract import Extracted, extract, kind_of, name_date
from ingest.sequence import TOKEN_BYTES, encode_ids
from ingest.sources import Source, WalkOptions, list_sources, normalize_roots
from ingest.spans import SPAN_CHARS, Span, split_spans
from ingest.store import Store
from ingest.tokens import SequenceTokenizer

RACY_NS = 2_000_000_000
RETRIED_REASONS = {"vanished", "unreadable"}  # may be gone next time: always try again


@dataclass(frozen=True)
class IngestOptions:
    walk: WalkOptions = WalkOptions()
    workers: int = max(2, os.cpu_count() or 2)
    span_chars: int = SPAN_CHARS
    batch_tokens: int = 2_000_000  # commit at least this often (tokens) ...
    batch_seconds: float = 1.0  # ... or this often (seconds)
    window_bytes: int = 32 * 2**20  # source bytes in flight at most (results wait while the writer commits)
    window_files: int = 256  # files in flight at most: enough for the readers to keep busy through a commit


class Progress(Protocol):
    def start(self, files: int, total_bytes: int) -> None: ...

    def advance(self, files: int, done_bytes: int, tokens: int) -> None: ...


@dataclass
class RunSummary:
    run_id: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason code -> files
    problems: list[tuple[str, str, str, str]] = field(default_factory=list)  # (name, status, code, reason)
    ignored: int = 0
    files_read: int = 0
    bytes_read: int = 0
    tokens_added: int = 0
    sequence_tokens: int = 0
    seconds: float = 0.0  # the whole run
    read_seconds: float = 0.0  # from the first file handed to the readers to the last batch recorded

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Row:
    """The catalog's row for a path, as the run compares against it."""

    id: int
    size: int
    mtime_ns: int
    checked_ns: int
    sha256: str | None
    status: str
    reason_code: str | None
    reason: str | None
    content_id: int | None


@dataclass
class _Prepared:
    """What a worker made of one file: a skip, an existing content to point at, or a new content."""

    source: Source
    row: _Row | None
    checked_ns: int
    sha256: str | None = None
    kind: str | None = None
    language: str | None = None
    skip: tuple[str, str] | None = None  # (reason code, reason)
    same_as_before: bool = False
    extracted: Extracted | None = None
    spans: list[Span] | None = None
    span_tokens: list[bytes] | None = None
    header: bytes = b""
    separator: bytes = b""


def ingest(store: Store, paths: list[Path], tokenizer: Callable[[], SequenceTokenizer],
           options: IngestOptions = IngestOptions(), progress: Progress | None = None,
           model_key: str | None = None) -> RunSummary:
    """Bring the store up to date with `paths`; `tokenizer` is called once, and only when needed.

    `model_key` names the model file as it is now (path, size, mtime): when the store already proved that
    key's tokenizer fingerprint, a run with nothing to read never loads the tokenizer (it is the slow part
    of starting up). Without a key the tokenizer is always loaded and checked.
    """
    started = time.perf_counter()
    roots = normalize_roots(paths)
    with store.db.atomic():
        run_id = store.db.execute("INSERT INTO runs(started_at, status, roots) VALUES (?, 'running', ?)",
                                  [catalog.now(), json.dumps(roots)]).lastrowid
    summary = RunSummary(run_id)
    try:
        with _quick_gil_handover():
            _run(store, roots, tokenizer, model_key, options, progress, summary)
    except BaseException as error:
        _finish_run(store, summary, started, "interrupted" if isinstance(error, KeyboardInterrupt) else "failed")
        raise
    _finish_run(store, summary, started, "done")
    return summary


@contextlib.contextmanager
def _quick_gil_handover(interval: float = 0.0001):
    """A shorter GIL switch interval while the run lasts.

    The committer gives the GIL up and takes it back once per catalog row (SQLite runs without it); at
    the default 5 ms interval it waits behind the readers' Python code (splitting) nearly every time,
    and the commits, not the readers, set the pace. Measured on the stdlib: 22 s -> 14 s.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def _run(store: Store, roots: list[str], load_tokenizer: Callable[[], SequenceTokenizer], model_key: str | None,
         options: IngestOptions, progress: Progress | None, summary: RunSummary) -> None:
    listing = list_sources(roots, dataclasses.replace(options.walk, leave_out=(str(store.root),)))
    summary.ignored = listing.ignored
    rows = _known_rows(store.db)
    writer = _Writer(store, summary, options)
    try:
        _read_and_write(store, roots, listing, rows, writer, load_tokenizer, model_key, options, progress, summary)
    finally:
        writer.close()


def _read_and_write(store: Store, roots: list[str], listing, rows: dict[str, _Row], writer: _Writer,
                    load_tokenizer: Callable[[], SequenceTokenizer], model_key: str | None, options: IngestOptions,
                    progress: Progress | None, summary: RunSummary) -> None:
    work: list[tuple[Source, _Row | None]] = []
    for source in listing.sources:
        row = rows.get(source.path)
        if source.skip:
            writer.record_skip(source, row, source.skip, source.detail or source.skip, time.time_ns())
        elif not _unchanged(source, row):
            work.append((source, row))
        elif row.status in LIVE_STATUSES:
            summary.unchanged += 1
        else:
            writer.count_skip(source, row.reason_code or "other", row.reason or "")
    if progress is not None:
        progress.start(len(work), sum(source.size for source, _ in work))
    if work or model_key is None or catalog.get_meta(store.db, "model_key") != model_key:
        sequence = _bind_tokenizer(store, load_tokenizer, model_key)
        reading = time.perf_counter()
        known = writer.known_contents
        with ThreadPoolExecutor(options.workers, thread_name_prefix="ingest") as pool:
            for prepared in _in_order(pool, work, lambda item: _prepare(*item, known, sequence, options),
                                      options.window_bytes, options.window_files):
                tokens = writer.add(prepared)
                if progress is not None:
                    progress.advance(1, prepared.source.size, tokens)
                writer.maybe_flush()
        writer.flush()
        summary.read_seconds = round(time.perf_counter() - reading, 3)
    writer.flush()
    writer.remove_unlisted(roots, {s.path for s in listing.sources}, [s.path for s in listing.sources if s.is_dir],
                           rows)
    summary.sequence_tokens = writer.committed


def _bind_tokenizer(store: Store, load_tokenizer: Callable[[], SequenceTokenizer],
                    model_key: str | None) -> SequenceTokenizer:
    """Load the tokenizer, refuse one that differs from the store's, and remember which model proved it."""
    sequence = load_tokenizer()
    catalog.check_tokenizer(store.db, sequence.fingerprint)
    with store.db.atomic():
        catalog.set_meta(store.db, "tokenizer_fingerprint", sequence.fingerprint)
        if model_key is not None:
            catalog.set_meta(store.db, "model_key", model_key)
    return sequence


def _in_order(pool: ThreadPoolExecutor, work: list[tuple[Source, _Row | None]], fn, window_bytes: int,
              window_files: int):
    """fn over work items in the pool, yielded in order, with a bounded number of files and bytes in flight."""
    queue: collections.deque[tuple[Future, int]] = collections.deque()
    in_flight, items = 0, iter(work)
    upcoming = next(items, None)
    while upcoming is not None or queue:
        while (upcoming is not None and len(queue) < window_files
               and (not queue or in_flight + upcoming[0].size <= window_bytes)):
            queue.append((pool.submit(fn, upcoming), upcoming[0].size))
            in_flight += upcoming[0].size
            upcoming = next(items, None)
        future, size = queue.popleft()
        in_flight -= size
        try:
            yield future.result()
        except BaseException:
            for waiting, _ in queue:
                waiting.cancel()
            raise


def _known_rows(db) -> dict[str, _Row]:
    return {path: _Row(*rest) for path, *rest in db.execute(
        "SELECT path, id, size, mtime_ns, checked_ns, sha256, status, reason_code, reason, content_id FROM documents")}


def _unchanged(source: Source, row: _Row | None) -> bool:
    """Same size and mtime, not racy, and not a skip worth retrying: the file need not be opened."""
    if row is None or row.status == "removed" or row.reason_code in RETRIED_REASONS or row.reason_code == "too-large":
        return False  # (a file once too large is looked at again: the cap may have been raised)
    return (row.size == source.size and row.mtime_ns == source.mtime_ns
            and source.mtime_ns < row.checked_ns - RACY_NS)


def _prepare(source: Source, row: _Row | None, known: dict[tuple[str, str], tuple], sequence: SequenceTokenizer,
             options: IngestOptions) -> _Prepared:
    """A worker's job for one file: read, hash, and (if its text is new) extract, split and tokenize."""
    checked_ns = time.time_ns()
    cap = options.walk.max_file_bytes
    try:
        with open(source.path, "rb") as handle:
            data = handle.read(cap + 1)
    except FileNotFoundError:
        return _Prepared(source, row, checked_ns, skip=("vanished", "deleted before it could be read"))
    except PermissionError:
        return _Prepared(source, row, checked_ns, skip=("unreadable", "permission denied"))
    except OSError as error:
        return _Prepared(source, row, checked_ns, skip=("unreadable", f"cannot read: {error.strerror or error}"))
    if len(data) > cap:
        return _Prepared(source, row, checked_ns, skip=(
            "too-large", f"grew past the {cap / 2**20:g} MB cap while being read (--max-file-mb raises it)"))
    sha256 = hashlib.sha256(data).hexdigest()
    kind, language = kind_of(source.name)
    prepared = _Prepared(source, row, checked_ns, sha256, kind, language)
    if row is not None and row.sha256 == sha256 and row.status in LIVE_STATUSES:
        prepared.same_as_before = True
        return prepared
    if (sha256, kind) in known:
        return prepared  # the same text is stored already: the writer points this path at it
    extracted = extract(source.name, data)
    if extracted.status == "skipped":
        prepared.skip = (extracted.reason_code or "other", extracted.reason or "")
        return prepared
    spans = split_spans(extracted, options.span_chars)
    text = extracted.text
    encoded = sequence.encode_many([text[span.char_start:span.char_end] for span in spans])
    prepared.extracted, prepared.spans = extracted, spans
    prepared.span_tokens = [encode_ids(ids) for ids in encoded]
    prepared.header = encode_ids(sequence.header(source.name))
    prepared.separator = encode_ids(sequence.separator())
    return prepared


@dataclass
class _NewContent:
    """A content appended in the batch being collected (its id is given here: this is the only writer)."""

    id: int
    sha256: str
    kind: str
    language: str | None
    name: str
    token_start: int
    token_end: int
    body_start: int
    chars: int
    pages: int | None
    date: str | None
    spans: list[tuple]


@dataclass
class _Batch:
    """Whole documents waiting to be committed together."""

    chunks: list[bytes] = field(default_factory=list)
    contents: list[_NewContent] = field(default_factory=list)
    documents: list[dict] = field(default_factory=list)
    touched_files: list[tuple[int, int, int, int]] = field(default_factory=list)  # (size, mtime, checked, id)
    touched: set[int] = field(default_factory=set)  # stored contents whose liveness may have changed
    end_token: int = 0

    def __bool__(self) -> bool:
        return bool(self.documents or self.touched_files or self.touched)


class _Writer:
    """Collects whole documents into batches; a committer thread appends and records each batch.

    Committing (fsync, SQLite, the FTS index) runs beside the readers instead of stopping the stream of
    results; at most one batch is being committed while the next one is collected. During the reading
    phase only the committer touches the catalog.
    """

    def __init__(self, store: Store, summary: RunSummary, options: IngestOptions):
        self.store, self.db, self.summary, self.options = store, store.db, summary, options
        self.committed = catalog.sequence_length(self.db)
        self.next_token = self.committed
        self.next_content_id = (self.db.execute("SELECT max(id) FROM contents").fetchone()[0] or 0) + 1
        # (sha256, kind) -> (content id, front-matter date), for every content stored or being stored.
        self.known_contents: dict[tuple[str, str], tuple[int, str | None]] = {
            (sha, kind): (cid, date) for cid, sha, kind, date in self.db.execute(
                "SELECT id, sha256, kind, date FROM contents")}
        self.batch = _Batch(end_token=self.next_token)
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="ingest-commit")
        self.committing: Future | None = None
        self.last_flush = time.perf_counter()

    def count_skip(self, source: Source, code: str, reason: str) -> None:
        self.summary.skipped[code] = self.summary.skipped.get(code, 0) + 1
        self.summary.problems.append((source.name, "skipped", code, reason))

    def record_skip(self, source: Source, row: _Row | None, code: str, reason: str, checked_ns: int,
                    sha256: str | None = None) -> None:
        self.count_skip(source, code, reason)
        if (row is not None and row.status == "skipped" and row.reason_code == code and row.size == source.size
                and row.mtime_ns == source.mtime_ns):
            return
        if row is not None and row.content_id is not None:
            self.batch.touched.add(row.content_id)
        self._keep(source, "skipped", code, reason, checked_ns, sha256, kind_of(source.name)[0], None, None, None)

    def add(self, prepared: _Prepared) -> int:
        """Take one worker result; returns the tokens it appended."""
        source, row = prepared.source, prepared.row
        self.summary.files_read += 1
        self.summary.bytes_read += source.size
        if prepared.skip:
            self.record_skip(source, row, *prepared.skip, prepared.checked_ns, prepared.sha256)
            return 0
        if prepared.same_as_before:
            self.summary.unchanged += 1
            self.batch.touched_files.append((source.size, source.mtime_ns, prepared.checked_ns, row.id))
            return 0
        appended = 0
        known = self.known_contents.get((prepared.sha256, prepared.kind))
        if known is None:
            content = self._append(prepared)
            known = (content.id, content.date)
            appended = content.token_end - content.token_start
        content_id, text_date = known
        self.batch.touched.add(content_id)
        extracted = prepared.extracted
        status, code, reason = (extracted.status, extracted.reason_code, extracted.reason) if extracted else ("ok", None, None)
        if status == "partial":
            self.summary.problems.append((source.name, "partial", code or "other", reason or ""))
        if row is None or row.status == "removed" or row.content_id is None:
            self.summary.added += 1
        elif row.content_id != content_id:
            self.summary.updated += 1
            self.batch.touched.add(row.content_id)
        else:
            self.summary.unchanged += 1
        self._keep(source, status, code, reason, prepared.checked_ns, prepared.sha256, prepared.kind,
                   prepared.language, text_date or name_date(source.name), content_id)
        return appended

    def _append(self, prepared: _Prepared) -> _NewContent:
        """Place a new content at the end of the sequence being collected."""
        extracted, text = prepared.extracted, prepared.extracted.text
        start = self.next_token
        body_start = start + len(prepared.header) // TOKEN_BYTES
        spans, at = [], body_start
        for ordinal, (span, tokens) in enumerate(zip(prepared.spans, prepared.span_tokens)):
            count = len(tokens) // TOKEN_BYTES
            spans.append((ordinal, span.char_start, span.char_end, span.line_start, span.line_end, span.page,
                          span.heading, at, at + count, text[span.char_start:span.char_end]))
            at += count
        end = at + len(prepared.separator) // TOKEN_BYTES
        self.batch.chunks += [prepared.header, *prepared.span_tokens, prepared.separator]
        self.next_token = self.batch.end_token = end
        self.summary.tokens_added += end - start
        content = _NewContent(self.next_content_id, prepared.sha256, prepared.kind, prepared.language,
                              prepared.source.name, start, end, body_start, len(text),
                              len(extracted.pages) if extracted.pages else None, extracted.date, spans)
        self.next_content_id += 1
        self.batch.contents.append(content)
        self.known_contents[(prepared.sha256, prepared.kind)] = (content.id, content.date)
        return content

    def _keep(self, source: Source, status: str, code: str | None, reason: str | None, checked_ns: int,
              sha256: str | None, kind: str | None, language: str | None, date: str | None,
              content_id: int | None) -> None:
        self.batch.documents.append({
            "path": source.path, "name": source.name, "root": source.root, "size": source.size,
            "mtime_ns": source.mtime_ns, "checked_ns": checked_ns, "sha256": sha256, "kind": kind,
            "language": language, "status": status, "reason_code": code, "reason": reason, "date": date,
            "content_id": content_id, "run": self.summary.run_id})

    def maybe_flush(self) -> None:
        if (self.next_token - self.committed >= self.options.batch_tokens
                or time.perf_counter() - self.last_flush >= self.options.batch_seconds):
            self.flush(wait=False)

    def flush(self, wait: bool = True) -> None:
        """Hand the collected batch to the committer (after the previous one is done); `wait` for it too."""
        self.last_flush = time.perf_counter()
        self._wait()
        if self.batch:
            batch, self.batch = self.batch, _Batch(end_token=self.next_token)
            self.committing = self.committer.submit(self._commit, batch)
        if wait:
            self._wait()

    def _wait(self) -> None:
        if self.committing is not None:
            committing, self.committing = self.committing, None
            committing.result()

    def close(self) -> None:
        """Stop the committer; a batch being committed is finished first, one still collected is dropped."""
        self.committer.shutdown(wait=True)

    def _commit(self, batch: _Batch) -> None:
        """Append the batch's tokens durably, then record all of it in one transaction."""
        try:
            if batch.chunks:
                self.store.tokens.append(b"".join(batch.chunks))
                self.store.tokens.sync()
            with self.db.atomic():
                self._insert_contents(batch.contents)
                self._upsert_documents(batch.documents)
                self.db.conn.executemany("UPDATE documents SET size = ?, mtime_ns = ?, checked_ns = ? WHERE id = ?",
                                         batch.touched_files)
                catalog.refresh_liveness(self.db, batch.touched)
                catalog.set_meta(self.db, "sequence_tokens", str(batch.end_token))
        except (OSError, sqlite3.Error) as error:
            self._undo_append()
            raise StoreError(f"could not write to the store at {self.store.root}: {error}. The store keeps every "
                             "whole document recorded before this batch; free space and run again") from error
        self.committed = batch.end_token

    def _undo_append(self) -> None:
        try:
            self.store.tokens.truncate(self.committed)
        except OSError:
            pass  # the next writer cuts the file back to the committed length when it opens the store

    def _insert_contents(self, contents: list[_NewContent]) -> None:
        self.db.conn.executemany(
            "INSERT INTO contents(id, sha256, kind, language, name, token_start, token_end, body_start, chars, spans, "
            "pages, date, live, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            [(c.id, c.sha256, c.kind, c.language, c.name, c.token_start, c.token_end, c.body_start, c.chars,
              len(c.spans), c.pages, c.date, self.summary.run_id) for c in contents])
        self.db.conn.executemany(
            "INSERT INTO spans(content_id, ordinal, char_start, char_end, line_start, line_end, page, heading, "
            "token_start, token_end, text, live) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
            [(c.id, *span) for c in contents for span in c.spans])

    def _upsert_documents(self, documents: list[dict]) -> None:
        self.db.conn.executemany(
            "INSERT INTO documents(path, name, root, size, mtime_ns, checked_ns, sha256, kind, language, status, "
            "reason_code, reason, date, content_id, first_run, last_run) VALUES (:path, :name, :root, :size, "
            ":mtime_ns, :checked_ns, :sha256, :kind, :language, :status, :reason_code, :reason, :date, :content_id, "
            ":run, :run) ON CONFLICT(path) DO UPDATE SET name = excluded.name, root = excluded.root, "
            "size = excluded.size, mtime_ns = excluded.mtime_ns, checked_ns = excluded.checked_ns, "
            "sha256 = excluded.sha256, kind = excluded.kind, language = excluded.language, status = excluded.status, "
            "reason_code = excluded.reason_code, reason = excluded.reason, date = excluded.date, "
            "content_id = excluded.content_id, last_run = excluded.last_run", documents)

    def remove_unlisted(self, roots: list[str], listed: set[str], unreadable_dirs: list[str],
                        rows: dict[str, _Row]) -> None:
        """Tombstone documents under the walked roots that this walk did not list (except under folders it could
        not read: their files may well still be there)."""
        under_roots = tuple(r.rstrip(os.sep) + os.sep for r in roots)
        under_unreadable = tuple(d.rstrip(os.sep) + os.sep for d in unreadable_dirs)
        gone = [row for path, row in rows.items()
                if row.status != "removed" and path not in listed
                and (path in roots or path.startswith(under_roots))
                and not (under_unreadable and path.startswith(under_unreadable))]
        if not gone:
            return
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE documents SET status = 'removed', reason_code = 'removed', "
                "reason = 'deleted, or no longer listed', last_run = ? WHERE id = ?",
                [(self.summary.run_id, row.id) for row in gone])
            catalog.refresh_liveness(self.db, {row.content_id for row in gone if row.content_id is not None})
        self.summary.removed = len(gone)


def _finish_run(store: Store, summary: RunSummary, started: float, status: str) -> None:
    summary.seconds = round(time.perf_counter() - started, 3)
    try:
        with store.db.atomic():
            store.db.execute("UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?",
                             [catalog.now(), status, json.dumps(summary.as_dict()), summary.run_id])
    except sqlite3.Error:
        pass  # a full disk: the run stays `running`, and the next writer marks it interrupted
