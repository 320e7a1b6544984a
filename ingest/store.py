"""A store on disk: one directory per corpus holding `catalog.db`, `tokens.u32` and (the engine's) `states/`, `index/`.

Opening for writing takes an exclusive lock (`lock`), so two ingests never append at once, and repairs
what a killed writer can leave behind: bytes in tokens.u32 past the committed length are cut off, and
runs still marked `running` become `interrupted`. A new store's catalog is built under the lock, under a
temporary name, and renamed into place, so a store directory either has a whole catalog or none, and two
ingests creating the same new store at once never build it together: the second is refused in one line.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

import sqlite_utils

from ingest import catalog, durable
from ingest.catalog import FORMAT_VERSION, StoreError
from ingest.sequence import TOKEN_BYTES, TokenFile

CATALOG = "catalog.db"
TOKENS = "tokens.u32"
STATES = "states"  # the engine's segment states
INDEX = "index"  # the engine's saved key index
LOCK = "lock"
# A writer that finds the lock taken tries again for this long before it is refused: long enough to ride
# out a reader's probe of the lock (`writer_active`), far too short to queue behind a real ingest.
LOCK_WAIT_SECONDS = 2.0
LOCK_RETRY_SECONDS = 0.05


class Store:
    """An open store: `db` (sqlite-utils), and for a writer the lock and the token file."""

    def __init__(self, root: Path, db: sqlite_utils.Database, tokens: TokenFile | None, lock_handle=None):
        self.root, self.db, self.tokens, self._lock = root, db, tokens, lock_handle

    @classmethod
    def open(cls, root: Path, *, write: bool = False) -> Store:
        """Open the store at `root`; a writer creates it when missing, a reader requires it."""
        root = Path(root)
        if not write and not (root / CATALOG).exists():
            raise StoreError(f"no store at {root} (run `engine ingest PATH` to make one)")
        lock_handle = _lock(root) if write else None  # before creating anything: two new ingests never race
        try:
            return cls._opened(root, write, lock_handle)
        except BaseException:
            if lock_handle is not None:
                lock_handle.close()
            raise

    @classmethod
    def _opened(cls, root: Path, write: bool, lock_handle) -> Store:
        if write and not (root / CATALOG).exists():
            _create(root)
        try:
            db = _connect(root / CATALOG)
        except sqlite3.DatabaseError as error:  # garbage over the catalog fails at its first PRAGMA
            raise StoreError(_damaged_catalog(root, error)) from error
        try:
            version = catalog.get_meta(db, "format_version")
        except Exception as error:
            db.close()
            raise StoreError(_damaged_catalog(root, error)) from error
        if version is None or int(version) > FORMAT_VERSION:
            db.close()
            raise StoreError(f"{root} was written by a newer wholecorpus (store format {version}; this one reads "
                             f"up to {FORMAT_VERSION}): upgrade, or use another --store")
        store = cls(root, db, TokenFile(root / TOKENS) if write else None, lock_handle)
        if write:
            try:
                store._recover()
            except BaseException:
                store.close()
                raise
        return store

    @property
    def tokens_path(self) -> Path:
        return self.root / TOKENS

    @property
    def states_dir(self) -> Path:
        return self.root / STATES

    @property
    def index_dir(self) -> Path:
        return self.root / INDEX

    def sizes(self) -> dict[str, int]:
        """Bytes on disk: the catalog (with its WAL), the token sequence, the engine's states and index."""
        catalog_files = [self.root / (CATALOG + suffix) for suffix in ("", "-wal", "-shm")]
        sizes = {"catalog": sum(_size(path) for path in catalog_files), "tokens": _size(self.tokens_path),
                 "states": _size(self.states_dir), "index": _size(self.index_dir)}
        sizes["total"] = sum(sizes.values())
        return sizes

    def _recover(self) -> None:
        committed = catalog.sequence_length(self.db)
        on_disk = self.tokens.bytes_on_disk()
        if on_disk < committed * TOKEN_BYTES:
            raise StoreError(f"the store is damaged: {self.tokens_path} holds {on_disk // TOKEN_BYTES:,} tokens but the "
                             f"catalog records {committed:,}, and the tokens cannot be rebuilt in place: move "
                             f"{self.root} away and run `engine ingest` on your folders again")
        if on_disk > committed * TOKEN_BYTES:
            self.tokens.truncate(committed)
        with self.db.atomic():
            self.db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")

    def size_on_disk(self) -> int:
        return sum(path.stat().st_size for path in self.root.rglob("*") if path.is_file())

    def close(self) -> None:
        if self.tokens is not None:
            self.tokens.close()
        self.db.close()
        if self._lock is not None:
            self._lock.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def exists(root: Path) -> bool:
    """Whether `root` holds a store (a whole catalog)."""
    return (Path(root) / CATALOG).exists()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _damaged_catalog(root: Path, error: Exception) -> str:
    return (f"{root / CATALOG} is damaged or not a wholecorpus catalog ({error}); it cannot be rebuilt: move "
            f"{root} away and run `engine ingest` on your folders again")


def _connect(path: Path) -> sqlite_utils.Database:
    # The ingest writer commits from its own thread, never while another thread uses the connection.
    db = sqlite_utils.Database(sqlite3.connect(path, check_same_thread=False))
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: commits survive a killed process
    db.execute("PRAGMA busy_timeout = 10000")
    return db


def _create(root: Path) -> None:
    building = root / (CATALOG + ".new")
    building.unlink(missing_ok=True)
    os.close(os.open(building, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives its -wal and -shm the same mode
    db = sqlite_utils.Database(building)
    catalog.create_schema(db)
    db.close()
    os.close(os.open(root / TOKENS, os.O_WRONLY | os.O_CREAT, 0o600))  # private to this user, like the catalog
    durable.replace(building, root / CATALOG)


def _lock(root: Path):
    root.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new store is its user's alone
    handle = open(root / LOCK, "a")
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                raise StoreError(f"another `engine ingest` is writing to {root}; wait for it to finish") from None
            time.sleep(LOCK_RETRY_SECONDS)


def writer_active(root: Path) -> bool:
    """Whether some process holds the store's write lock now. The kernel lets go of a killed process's
    lock, so a run recorded as `running` while no one holds it was interrupted.

    The probe takes a shared lock for an instant; a writer starting in that instant waits for it (`_lock`)."""
    try:
        handle = open(root / LOCK)
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
