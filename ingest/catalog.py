"""The SQLite catalog (`catalog.db`): what the sequence holds, where each piece came from, what is live.

Tables (created with sqlite-utils; WAL mode):
- `meta(key, value)`: `format_version`, `tokenizer_fingerprint`, `model_key` (which model file last
  proved that fingerprint), `created_at`, `sequence_tokens` (the committed length of tokens.u32).
- `runs(id, started_at, finished_at, status, roots, summary)`: one row per ingest run; status is
  running | done | interrupted | failed; summary is the run's counts as JSON.
- `contents(id, sha256, kind, language, name, token_start, token_end, body_start, chars, spans, pages,
  date, live, run_id)`: one row per distinct text appended to the sequence (identical bytes under several
  paths are appended once). [token_start, token_end) is the whole document in the sequence:
  `<filename>name\\n` + body + `<file_sep>`; the body starts at `body_start`; `date` is a date from the
  text's front matter. `live` is 0 once no live document has this text any more (tombstoned: its tokens
  stay in the append-only sequence).
- `documents(id, path, name, root, size, mtime_ns, checked_ns, sha256, kind, language, status,
  reason_code, reason, date, content_id, first_run, last_run)`: one row per path ever seen; path is
  absolute (the identity), name is what is shown and cited; date is the text's front-matter date, else
  one in the file name. status: ok | partial (stored, with a
  caveat in reason) | skipped (nothing stored; reason says why) | removed (deleted or no longer listed).
- `spans(id, content_id, ordinal, char_start, char_end, line_start, line_end, page, heading,
  token_start, token_end, live, text)`: the citable pieces of a content, tiling its body in order;
  token ranges are absolute positions in the sequence. `spans_fts` is an FTS5 index (porter stemming)
  over text and heading, kept current by triggers (not fired by tombstoning): a lexical path for retrieval.
- `segments(token_start, token_end, created_at)`: written by the engine, one row per token range it
  has processed (its states written). Ingest never writes it.
- `segment_work(token_start, token_end, pass_started, rank, world_size, host, device, seconds)`: who
  computed each segment and how long its forward took (the engine's own seconds on that rank), written
  with the `segments` row. Stores made before it lack the table: it is created on first write, and
  readers treat a missing table as empty, so the format version stays 1.

Hand-off to the engine, all functions of an open sqlite3/sqlite-utils connection:
- `sequence_length(db)`: committed tokens in tokens.u32 (read them with `ingest.sequence.read_tokens`).
- `unprocessed_ranges(db, live_only=True)`: sorted [start, end) ranges of [0, sequence_length) that no
  `segments` row covers (with live_only, tombstoned contents are left out too).
- `record_segment(db, start, end)`: mark a range processed (call after its states are durable).
- `record_segments(db, work)`: mark several ranges processed, with who computed them, in one transaction.
- `citations(db, start, end)`: the live spans overlapping a token range, with every live path that
  holds them, page, lines and heading: what an answer cites.
- `search_spans(db, query, limit)`: full-text search over live spans (FTS5 syntax).
- `mentions(db, word)`: whether a live document holds a word, in its text, headings or name.
- `check_tokenizer(db, fingerprint)`: raises StoreError if the store was written with another tokenizer.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import sqlite_utils

FORMAT_VERSION = 1
LIVE_STATUSES = ("ok", "partial")
LIVE_SQL = "(" + ", ".join(f"'{status}'" for status in LIVE_STATUSES) + ")"  # for SQL: d.status IN LIVE_SQL


class StoreError(Exception):
    """A store that cannot be used as asked: missing, newer, busy, damaged or made with another tokenizer."""


def create_schema(db: sqlite_utils.Database) -> None:
    """The tables of a new catalog, in one transaction."""
    with db.atomic():
        db["meta"].create({"key": str, "value": str}, pk="key")
        db["runs"].create({"id": int, "started_at": str, "finished_at": str, "status": str, "roots": str,
                           "summary": str}, pk="id")
        db["contents"].create({"id": int, "sha256": str, "kind": str, "language": str, "name": str,
                               "token_start": int, "token_end": int, "body_start": int, "chars": int,
                               "spans": int, "pages": int, "date": str, "live": int, "run_id": int}, pk="id")
        db["contents"].create_index(["sha256", "kind"], unique=True)
        db["contents"].create_index(["token_start"])
        db["documents"].create({"id": int, "path": str, "name": str, "root": str, "size": int, "mtime_ns": int,
                                "checked_ns": int, "sha256": str, "kind": str, "language": str, "status": str,
                                "reason_code": str, "reason": str, "date": str, "content_id": int,
                                "first_run": int, "last_run": int}, pk="id")
        db["documents"].create_index(["path"], unique=True)
        db["documents"].create_index(["content_id"])
        db["spans"].create({"id": int, "content_id": int, "ordinal": int, "char_start": int, "char_end": int,
                            "line_start": int, "line_end": int, "page": int, "heading": str, "token_start": int,
                            "token_end": int, "live": int, "text": str}, pk="id")
        db["spans"].create_index(["content_id", "ordinal"], unique=True)
        db["spans"].create_index(["token_start"])
        db["segments"].create({"token_start": int, "token_end": int, "created_at": str}, pk="token_start")
        db["meta"].insert_all([
            {"key": "format_version", "value": str(FORMAT_VERSION)},
            {"key": "created_at", "value": now()},
            {"key": "sequence_tokens", "value": "0"},
        ])
    db["spans"].enable_fts(["text", "heading"], fts_version="FTS5", tokenize="porter")
    # sqlite-utils' own triggers re-index a span on any update; tombstoning only flips `live`, so these
    # re-index on a change of the indexed columns alone.
    with db.atomic():
        for statement in _FTS_TRIGGERS:
            db.execute(statement)


_FTS_TRIGGERS = (
    "CREATE TRIGGER spans_ai AFTER INSERT ON spans BEGIN INSERT INTO spans_fts (rowid, text, heading) "
    "VALUES (new.id, new.text, new.heading); END",
    "CREATE TRIGGER spans_ad AFTER DELETE ON spans BEGIN INSERT INTO spans_fts (spans_fts, rowid, text, heading) "
    "VALUES ('delete', old.id, old.text, old.heading); END",
    "CREATE TRIGGER spans_au AFTER UPDATE OF text, heading ON spans BEGIN "
    "INSERT INTO spans_fts (spans_fts, rowid, text, heading) VALUES ('delete', old.id, old.text, old.heading); "
    "INSERT INTO spans_fts (rowid, text, heading) VALUES (new.id, new.text, new.heading); END",
)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def get_meta(db: sqlite_utils.Database, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_meta(db: sqlite_utils.Database, key: str, value: str) -> None:
    db.execute("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
               [key, value])


def sequence_length(db: sqlite_utils.Database) -> int:
    return int(get_meta(db, "sequence_tokens") or 0)


def check_tokenizer(db: sqlite_utils.Database, fingerprint: str) -> None:
    stored = get_meta(db, "tokenizer_fingerprint")
    if stored is not None and stored != fingerprint:
        raise StoreError(f"this store was written with another tokenizer (fingerprint {stored}; this model's is "
                         f"{fingerprint}): use the model it was made with (--model), or a new --store")


def refresh_liveness(db: sqlite_utils.Database, content_ids: set[int]) -> None:
    """A content (and its spans) is live while some live document has it; tombstoned otherwise."""
    for chunk in _chunks(sorted(content_ids), 500):
        marks = ",".join("?" * len(chunk))
        db.execute(f"UPDATE contents SET live = EXISTS (SELECT 1 FROM documents d WHERE d.content_id = contents.id "
                   f"AND d.status IN {LIVE_SQL}) WHERE id IN ({marks})", chunk)
        db.execute(f"UPDATE spans SET live = (SELECT live FROM contents c WHERE c.id = spans.content_id) "
                   f"WHERE content_id IN ({marks}) AND live != (SELECT live FROM contents c "
                   f"WHERE c.id = spans.content_id)", chunk)


def unprocessed_ranges(db: sqlite_utils.Database, live_only: bool = True) -> list[tuple[int, int]]:
    """Token ranges the engine has not processed yet: [0, sequence_length) minus `segments` (minus dead text)."""
    taken = [tuple(row) for row in db.execute("SELECT token_start, token_end FROM segments ORDER BY token_start")]
    if live_only:
        taken += [tuple(row) for row in db.execute(
            "SELECT token_start, token_end FROM contents WHERE live = 0 ORDER BY token_start")]
        taken.sort()
    gaps, at = [], 0
    for start, end in taken:
        if start > at:
            gaps.append((at, start))
        at = max(at, end)
    length = sequence_length(db)
    if at < length:
        gaps.append((at, length))
    return gaps


def segment_ranges(db: sqlite_utils.Database) -> dict[int, int]:
    """The processed segments, token_start -> token_end, in sequence order."""
    return dict(db.execute("SELECT token_start, token_end FROM segments ORDER BY token_start").fetchall())


def forget_segments(db: sqlite_utils.Database, starts: list[int]) -> None:
    """Deletes the records of the segments starting at `starts` (their states are to be computed again)."""
    if not starts:
        return
    with db.atomic():
        has_work = "segment_work" in db.table_names()  # made by the first pass that records its work
        for start in starts:
            db.execute("DELETE FROM segments WHERE token_start = ?", [start])
            if has_work:
                db.execute("DELETE FROM segment_work WHERE token_start = ?", [start])


def segment_records(db: sqlite_utils.Database) -> dict[int, tuple[int, str]]:
    """The processed segments as recorded: token_start -> (token_end, created_at)."""
    return {start: (end, created) for start, end, created in
            db.execute("SELECT token_start, token_end, created_at FROM segments")}


def processed_tokens(db: sqlite_utils.Database) -> int:
    """Tokens in processed segments: the keys the engine holds for each retrieval head."""
    return db.execute("SELECT coalesce(sum(token_end - token_start), 0) FROM segments").fetchone()[0]


def live_documents(db: sqlite_utils.Database) -> int:
    return db.execute(f"SELECT count(*) FROM documents WHERE status IN {LIVE_SQL}").fetchone()[0]


def live_tokens(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT coalesce(sum(token_end - token_start), 0) FROM contents WHERE live = 1").fetchone()[0]


def record_segment(db: sqlite_utils.Database, token_start: int, token_end: int) -> None:
    with db.atomic():
        db.execute("INSERT OR REPLACE INTO segments(token_start, token_end, created_at) VALUES (?, ?, ?)",
                   [token_start, token_end, now()])


@dataclass(frozen=True)
class SegmentWork:
    """One processed segment and who computed it: `seconds` is that rank's own time on the segment."""

    token_start: int
    token_end: int
    pass_started: str
    rank: int
    world_size: int
    host: str
    device: str
    seconds: float


_SEGMENT_WORK = ("CREATE TABLE IF NOT EXISTS segment_work (token_start INTEGER PRIMARY KEY, token_end INTEGER, "
                 "pass_started TEXT, rank INTEGER, world_size INTEGER, host TEXT, device TEXT, seconds REAL)")


def record_segments(db: sqlite_utils.Database, work: list[SegmentWork]) -> None:
    """Marks every segment of `work` processed, with who computed it, in one transaction (states durable first)."""
    with db.atomic():
        db.execute(_SEGMENT_WORK)
        stamp = now()
        for item in work:
            db.execute("INSERT OR REPLACE INTO segments(token_start, token_end, created_at) VALUES (?, ?, ?)",
                       [item.token_start, item.token_end, stamp])
            db.execute("INSERT OR REPLACE INTO segment_work VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       [item.token_start, item.token_end, item.pass_started, item.rank, item.world_size,
                        item.host, item.device, item.seconds])


def processing_passes(db: sqlite_utils.Database, limit: int = 3) -> list[dict[str, Any]]:
    """The latest processing passes, newest first, each with every rank's segments, tokens and tokens/s."""
    if not db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'segment_work'").fetchone():
        return []
    passes = [row[0] for row in db.execute("SELECT DISTINCT pass_started FROM segment_work "
                                           "ORDER BY pass_started DESC LIMIT ?", [limit])]
    report = []
    for started in passes:
        ranks = []
        for rank, world, host, device, segments, tokens, seconds, first, last in db.execute(
                "SELECT rank, world_size, host, device, count(*), sum(token_end - token_start), sum(seconds), "
                "min(token_start), max(token_end) FROM segment_work WHERE pass_started = ? "
                "GROUP BY rank, world_size, host, device ORDER BY rank", [started]):
            ranks.append({"rank": rank, "world_size": world, "host": host, "device": device, "segments": segments,
                          "tokens": tokens, "seconds": seconds, "first_token": first, "last_token": last,
                          "tokens_per_second": tokens / seconds if seconds else 0.0})
        report.append({"started_at": started, "ranks": ranks})
    return report


@dataclass(frozen=True)
class Citation:
    span_id: int
    paths: tuple[str, ...]  # every live document name holding this text (identical files are stored once)
    page: int | None
    line_start: int
    line_end: int
    heading: str | None
    token_start: int
    token_end: int
    date: str | None


def citations(db: sqlite_utils.Database, token_start: int, token_end: int) -> list[Citation]:
    """The live spans overlapping [token_start, token_end), in sequence order, with where they come from."""
    rows = db.execute(
        "SELECT s.id, s.page, s.line_start, s.line_end, s.heading, s.token_start, s.token_end, "
        "group_concat(d.name, char(31)), max(d.date) FROM spans s JOIN documents d ON d.content_id = s.content_id "
        f"AND d.status IN {LIVE_SQL} WHERE s.live = 1 AND s.token_start < ? AND s.token_end > ? "
        "GROUP BY s.id ORDER BY s.token_start", [token_end, token_start]).fetchall()
    return [Citation(r[0], tuple(sorted(r[7].split("\x1f"))), r[1], r[2], r[3], r[4], r[5], r[6], r[8])
            for r in rows]


def search_spans(db: sqlite_utils.Database, query: str, limit: int = 20) -> list[dict[str, Any]]:
    """Live spans matching an FTS5 query, best first: id, name, lines, page, heading, token range, text."""
    sql = ("SELECT s.id, (SELECT min(d.name) FROM documents d WHERE d.content_id = s.content_id "
           f"AND d.status IN {LIVE_SQL}) AS name, s.line_start, s.line_end, s.page, s.heading, "
           "s.token_start, s.token_end, s.text FROM spans_fts JOIN spans s ON s.id = spans_fts.rowid "
           "WHERE spans_fts MATCH ? AND s.live = 1 ORDER BY spans_fts.rank LIMIT ?")
    try:
        cursor = db.execute(sql, [query, limit])
    except sqlite3.OperationalError as error:
        raise StoreError(f"bad search query {query!r}: {error}") from error
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def mentions(db: sqlite_utils.Database, word: str) -> bool:
    """Whether a live document holds `word` in its text or a heading (full-text search, as a phrase), or in its
    name (case aside)."""
    if search_spans(db, '"' + word.replace('"', '""') + '"', 1):
        return True
    return db.execute(f"SELECT 1 FROM documents WHERE status IN {LIVE_SQL} AND instr(lower(name), ?) > 0 LIMIT 1",
                      [word.lower()]).fetchone() is not None


def status_report(db: sqlite_utils.Database) -> dict[str, Any]:
    """What the store holds, for `engine status`: documents by kind and status, tokens, spans, backlog."""
    by_kind: dict[str, dict[str, int]] = {}
    for kind, status, count in db.execute("SELECT coalesce(kind, 'other'), status, count(*) FROM documents "
                                          "GROUP BY 1, 2 ORDER BY 1, 2"):
        by_kind.setdefault(kind, {})[status] = count
    skipped = dict(db.execute("SELECT coalesce(reason_code, 'other'), count(*) FROM documents "
                              "WHERE status = 'skipped' GROUP BY 1 ORDER BY 2 DESC").fetchall())
    live_tokens, dead_tokens = db.execute(
        "SELECT coalesce(sum(CASE WHEN live = 1 THEN token_end - token_start END), 0), "
        "coalesce(sum(CASE WHEN live = 0 THEN token_end - token_start END), 0) FROM contents").fetchone()
    spans_live, spans_total = db.execute("SELECT coalesce(sum(live), 0), count(*) FROM spans").fetchone()
    backlog = unprocessed_ranges(db)
    problems = [dict(zip(("name", "status", "reason_code", "reason"), row)) for row in db.execute(
        "SELECT name, status, reason_code, reason FROM documents WHERE status IN ('skipped', 'partial') "
        "ORDER BY reason_code, name")]
    last_run = db.execute("SELECT id, started_at, finished_at, status, summary FROM runs ORDER BY id DESC LIMIT 1"
                          ).fetchone()
    return {
        "format_version": int(get_meta(db, "format_version") or 0),
        "tokenizer_fingerprint": get_meta(db, "tokenizer_fingerprint"),
        "created_at": get_meta(db, "created_at"),
        "documents": by_kind,
        "skipped_by_reason": skipped,
        "tokens": {"sequence": sequence_length(db), "live": live_tokens, "tombstoned": dead_tokens},
        "contents": db.execute("SELECT count(*) FROM contents").fetchone()[0],
        "spans": {"live": spans_live, "total": spans_total},
        "problems": problems,
        "unprocessed": {"tokens": sum(end - start for start, end in backlog), "ranges": len(backlog),
                        "processed_segments": db.execute("SELECT count(*) FROM segments").fetchone()[0]},
        "processing": processing_passes(db),
        "last_run": None if last_run is None else {
            "id": last_run[0], "started_at": last_run[1], "finished_at": last_run[2], "status": last_run[3],
            "summary": json.loads(last_run[4]) if last_run[4] else None},
    }


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def documents_table(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every document the store knows, for a listing: path, name, kind, status, reason, tokens, date, live."""
    cursor = db.execute(
        "SELECT d.path, d.name, coalesce(d.kind, 'other') AS kind, d.status, coalesce(d.reason, '') AS reason, "
        f"coalesce(c.token_end - c.token_start, 0) AS tokens, d.date, d.status IN {LIVE_SQL} AS live FROM documents d "
        "LEFT JOIN contents c ON c.id = d.content_id ORDER BY d.status = 'removed', d.name")
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def remove_document(db: sqlite_utils.Database, path: str) -> bool:
    """Tombstones one document (by its path): it is no longer cited or retrieved. False when no live one has it."""
    row = db.execute(f"SELECT id, content_id FROM documents WHERE path = ? AND status IN {LIVE_SQL}", [path]).fetchone()
    if row is None:
        return False
    with db.atomic():
        db.execute("UPDATE documents SET status = 'removed', reason_code = 'removed', reason = 'removed by the user' "
                   "WHERE id = ?", [row[0]])
        if row[1] is not None:
            refresh_liveness(db, {row[1]})
    return True


def document_lines(db: sqlite_utils.Database, name: str, page: int | None, first: int,
                   last: int) -> tuple[int, list[str]]:
    """Lines `first`..`last` (1-based; within `page` for a PDF) of the live document called `name`, as far as
    its spans reach: (the first line's number, the lines). Spans tile a document, so their texts join exactly."""
    rows = db.execute(
        "SELECT s.line_start, s.text FROM spans s WHERE s.content_id = (SELECT d.content_id FROM documents d "
        f"WHERE d.name = ? AND d.status IN {LIVE_SQL} LIMIT 1) AND s.page IS ? AND s.line_end >= ? AND s.line_start <= ? "
        "ORDER BY s.ordinal", [name, page, first, last]).fetchall()
    if not rows:
        return first, []
    start = rows[0][0]
    lines = "".join(text for _, text in rows).split("\n")
    low, high = max(first, start), min(last, start + len(lines) - 1)
    return low, lines[low - start:high - start + 1]
