"""Runs over real files: what the sequence and the catalog hold, incremental re-runs, the engine's hand-off."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ingest import catalog, pipeline
from ingest.catalog import StoreError
from ingest.pipeline import IngestOptions, ingest
from ingest.sequence import TokenFile
from ingest.store import Store
from ingest.tokens import SequenceTokenizer
from tests.ingest.conftest import REPO


@pytest.fixture
def corpus(tmp_path) -> Path:
    """A copy of the sample corpus in data/, free to change."""
    target = tmp_path / "corpus"
    shutil.copytree(REPO / "data", target)
    return target


def query(store_dir: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(store_dir / "catalog.db") as db:
        return db.execute(sql, args).fetchall()


def sequence_ids(store_dir: Path) -> np.ndarray:
    return np.fromfile(store_dir / "tokens.u32", dtype="<u4")


def test_each_document_is_header_text_separator_and_spans_tile_its_body(run, corpus, model_tokenizer):
    backend, _ = model_tokenizer
    summary = run(corpus)
    assert summary.added == 8 and not summary.skipped and summary.sequence_tokens == len(sequence_ids(run.store_dir))
    ids = sequence_ids(run.store_dir)
    contents = query(run.store_dir, "SELECT id, name, token_start, token_end, body_start, kind FROM contents")
    assert sum(end - start for _, _, start, end, _, _ in contents) == len(ids)
    for content_id, name, start, end, body, kind in contents:
        assert ids[start] == backend.token_to_id("<filename>") and ids[end - 1] == backend.token_to_id("<file_sep>")
        assert backend.decode(ids[start + 1:body].tolist()) == name + "\n"
        spans = query(run.store_dir, "SELECT token_start, token_end, text, char_start, char_end FROM spans "
                                     "WHERE content_id = ? ORDER BY ordinal", content_id)
        assert spans[0][0] == body and spans[-1][1] == end - 1
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        for token_start, token_end, text, _char_start, _char_end in spans:
            assert backend.decode(ids[token_start:token_end].tolist()) == text
        if kind != "pdf":
            source = (corpus.parent / name).read_text(encoding="utf-8")
            assert "".join(span[2] for span in spans) == source


def test_dates_from_front_matter_or_file_name(run, corpus):
    run(corpus)
    dates = dict(query(run.store_dir, "SELECT name, date FROM documents"))
    assert dates["corpus/journal/2024-03-14.md"] == "2024-03-14"  # front matter
    assert dates["corpus/journal/2024-05-02.md"] == "2024-05-02"  # file name
    assert dates["corpus/notes/lake-cabin.md"] is None


def test_a_second_run_changes_nothing(run, corpus):
    first = run(corpus)
    before = (run.store_dir / "tokens.u32").read_bytes()
    rows = query(run.store_dir, "SELECT * FROM documents ORDER BY id")
    second = run(corpus)
    assert (second.added, second.updated, second.removed, second.tokens_added) == (0, 0, 0, 0)
    assert second.unchanged == first.added and second.files_read == 0
    assert (run.store_dir / "tokens.u32").read_bytes() == before
    assert query(run.store_dir, "SELECT * FROM documents ORDER BY id") == rows


def test_a_changed_file_is_appended_again_and_its_old_spans_tombstoned(run, corpus):
    run(corpus)
    note = corpus / "notes" / "lake-cabin.md"
    (old_id, old_start, old_end), = query(run.store_dir, "SELECT c.id, c.token_start, c.token_end FROM contents c "
                                                         "JOIN documents d ON d.content_id = c.id WHERE d.path = ?",
                                          str(note))
    note.write_text(note.read_text().replace("heron-4417", "kestrel-9902"))
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 5_000_000_000))
    summary = run(corpus)
    assert (summary.updated, summary.unchanged, summary.added) == (1, 7, 0)
    assert query(run.store_dir, "SELECT live FROM contents WHERE id = ?", old_id) == [(0,)]
    assert set(query(run.store_dir, "SELECT live FROM spans WHERE content_id = ?", old_id)) == {(0,)}
    with Store.open(run.store_dir) as store:
        assert [hit["name"] for hit in catalog.search_spans(store.db, "kestrel")] == ["corpus/notes/lake-cabin.md"]
        assert catalog.search_spans(store.db, "heron") == []
        assert catalog.mentions(store.db, "Kestrel") and not catalog.mentions(store.db, "heron")
        assert catalog.mentions(store.db, "Journal")  # in no line, but in two files' names
        gaps = catalog.unprocessed_ranges(store.db)
        assert all(end <= old_start or start >= old_end for start, end in gaps)
        assert sum(end - start for start, end in gaps) == catalog.sequence_length(store.db) - (old_end - old_start)


def test_a_deleted_file_is_tombstoned_and_comes_back_without_being_appended(run, corpus):
    run(corpus)
    todo = corpus / "todo.txt"
    kept = todo.read_bytes()
    todo.unlink()
    summary = run(corpus)
    assert summary.removed == 1
    assert query(run.store_dir, "SELECT status FROM documents WHERE path = ?", str(todo)) == [("removed",)]
    assert query(run.store_dir, "SELECT c.live FROM contents c WHERE c.name = 'corpus/todo.txt'") == [(0,)]
    length = len(sequence_ids(run.store_dir))
    todo.write_bytes(kept)
    back = run(corpus)
    assert (back.added, back.tokens_added) == (1, 0) and len(sequence_ids(run.store_dir)) == length
    assert query(run.store_dir, "SELECT c.live FROM contents c WHERE c.name = 'corpus/todo.txt'") == [(1,)]


def test_identical_files_are_stored_once_and_cited_under_every_path(run, corpus):
    shutil.copy(corpus / "notes" / "lake-cabin.md", corpus / "journal" / "cabin-copy.md")
    summary = run(corpus)
    assert summary.added == 9
    assert query(run.store_dir, "SELECT count(*) FROM contents") == [(8,)]
    with Store.open(run.store_dir) as store:
        hit, = catalog.search_spans(store.db, "heron")
        cited, = catalog.citations(store.db, hit["token_start"], hit["token_start"] + 1)
        assert cited.paths == ("corpus/journal/cabin-copy.md", "corpus/notes/lake-cabin.md")
        assert cited.line_start <= 15 <= cited.line_end
    (corpus / "notes" / "lake-cabin.md").unlink()
    run(corpus)
    with Store.open(run.store_dir) as store:
        assert catalog.citations(store.db, hit["token_start"], hit["token_end"])[0].paths == (
            "corpus/journal/cabin-copy.md",)


def test_a_touched_file_is_hashed_and_found_unchanged(run, corpus):
    run(corpus)
    note = corpus / "todo.txt"
    os.utime(note, ns=(note.stat().st_atime_ns, note.stat().st_mtime_ns + 7_000_000_000))
    summary = run(corpus)
    assert (summary.unchanged, summary.files_read, summary.tokens_added) == (8, 1, 0)


def test_a_change_within_the_same_timestamp_is_caught_by_the_hash(run, corpus):
    note = corpus / "todo.txt"
    note.write_bytes(note.read_bytes())  # written just now: its mtime is too close to when it is read to be trusted
    run(corpus)
    stat = note.stat()
    note.write_bytes(note.read_bytes().replace(b"ladder", b"kettle"))  # same size
    os.utime(note, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same mtime, as a coarse clock would give
    summary = run(corpus)
    assert summary.updated == 1


def test_overlapping_roots_list_each_file_once(run, corpus):
    summary = run(corpus / "notes", corpus, corpus / "todo.txt")
    assert summary.added == 8 and query(run.store_dir, "SELECT count(*) FROM documents") == [(8,)]


def test_a_store_inside_an_ingested_folder_is_not_read(tmp_path, corpus, sequence):
    with Store.open(corpus / "store", write=True) as store:
        ingest(store, [corpus], lambda: sequence)
        summary = ingest(store, [corpus], lambda: sequence)
    assert (summary.unchanged, summary.added, summary.skipped) == (8, 0, {})
    assert not query(corpus / "store", "SELECT name FROM documents WHERE name LIKE '%store%'")


def test_unprocessed_ranges_follow_the_segments_the_engine_records(run, corpus):
    run(corpus)
    with Store.open(run.store_dir) as store:
        total = catalog.sequence_length(store.db)
        assert catalog.unprocessed_ranges(store.db) == [(0, total)]
        catalog.record_segment(store.db, 0, 1000)
        assert catalog.unprocessed_ranges(store.db) == [(1000, total)]
        catalog.record_segment(store.db, 1200, total)
        assert catalog.unprocessed_ranges(store.db) == [(1000, 1200)]


def test_an_unchanged_corpus_does_not_load_the_tokenizer_for_a_known_model(tmp_path, corpus, sequence):
    def failing_loader() -> SequenceTokenizer:
        raise AssertionError("the tokenizer was loaded")

    with Store.open(tmp_path / "store", write=True) as store:
        ingest(store, [corpus], lambda: sequence, model_key="model-a")
        assert ingest(store, [corpus], failing_loader, model_key="model-a").unchanged == 8
        with pytest.raises(AssertionError):
            ingest(store, [corpus], failing_loader, model_key="model-b")  # another model: its tokenizer is checked


def test_a_store_refuses_another_tokenizer(tmp_path, corpus, sequence):
    other = SequenceTokenizer(sequence.encode_many, "0123456789abcdef", sequence.filename_id, sequence.file_sep_id)
    with Store.open(tmp_path / "store", write=True) as store:
        ingest(store, [corpus / "todo.txt"], lambda: sequence)
        with pytest.raises(StoreError, match="another tokenizer"):
            ingest(store, [corpus], lambda: other)
        assert query(tmp_path / "store", "SELECT count(*) FROM documents") == [(1,)]


def test_a_newer_store_and_a_second_writer_are_refused(tmp_path, corpus, sequence):
    store_dir = tmp_path / "store"
    with Store.open(store_dir, write=True):
        with pytest.raises(StoreError, match="another `engine ingest`"):
            Store.open(store_dir, write=True)
    with sqlite3.connect(store_dir / "catalog.db") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format_version'")
    with pytest.raises(StoreError, match="newer"):
        Store.open(store_dir)
    with pytest.raises(StoreError, match="no store"):
        Store.open(tmp_path / "elsewhere")


def test_a_full_disk_stops_the_run_and_leaves_whole_documents(tmp_path, corpus, sequence, monkeypatch):
    syncs = []
    real_sync = TokenFile.sync

    def sync_then_fill(self):
        syncs.append(1)
        if len(syncs) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(self)

    monkeypatch.setattr(TokenFile, "sync", sync_then_fill)
    small_batches = IngestOptions(batch_tokens=1)
    store_dir = tmp_path / "store"
    with Store.open(store_dir, write=True) as store:
        with pytest.raises(StoreError, match="No space left"):
            ingest(store, [corpus], lambda: sequence, small_batches)
    monkeypatch.setattr(TokenFile, "sync", real_sync)
    with Store.open(store_dir, write=True) as store:
        committed = catalog.sequence_length(store.db)
        assert committed == len(sequence_ids(store_dir)) > 0
        assert query(store_dir, "SELECT max(token_end) FROM contents") == [(committed,)]
        assert query(store_dir, "SELECT status FROM runs") == [("failed",)]
        ingest(store, [corpus], lambda: sequence)
    with Store.open(tmp_path / "clean", write=True) as store:
        ingest(store, [corpus], lambda: sequence)
    assert (store_dir / "tokens.u32").read_bytes() == (tmp_path / "clean" / "tokens.u32").read_bytes()


def test_a_file_deleted_between_listing_and_reading_is_recorded(run, corpus, monkeypatch):
    real_list = pipeline.list_sources

    def list_then_delete(*args, **kwargs):
        listing = real_list(*args, **kwargs)
        (corpus / "todo.txt").unlink()
        return listing

    monkeypatch.setattr(pipeline, "list_sources", list_then_delete)
    summary = run(corpus)
    assert summary.skipped == {"vanished": 1} and summary.added == 7
    assert query(run.store_dir, "SELECT status, reason_code FROM documents WHERE name = 'corpus/todo.txt'") == [
        ("skipped", "vanished")]
