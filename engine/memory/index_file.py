"""A trained approximate key index kept in `<store>/index/`, so that opening a large store does not train again.

Training the IVF lists and adding millions of keys to them takes minutes on a laptop CPU (measured in
`bench/bench_key_search.py`), far longer than the search it speeds up, so a one-shot `engine ask` would
lose by training at every open. The exact index is never kept: rebuilding it is reading the states.

The file must never give wrong answers, only save time. It is written under a temporary name, fsynced
and renamed, so it is whole or absent. It names the segments it holds in row order, with the token range
and the catalog's `created_at` of each, and a digest of the engine config: a file whose segments the
catalog does not record identically (a store rebuilt in the same folder), or made under other settings,
is not used, and the index is trained again from the states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from engine.memory.config import EngineConfig
from ingest import catalog, durable
from ingest.store import Store

log = logging.getLogger(__name__)
KEYS_FILE = "keys.safetensors"
FILE_FORMAT = "2"  # 2: with the blocks' hub scores


@dataclass
class SavedIndex:
    indexes: list[faiss.Index]
    segments: dict[int, int]  # token_start -> token_end, in row order
    trained_rows: int
    hubs: np.ndarray | None = None  # (blocks, heads), as KeyIndex.hubs


def config_digest(config: EngineConfig) -> str:
    return hashlib.sha256(json.dumps(asdict(config), sort_keys=True).encode()).hexdigest()


def segments_digest(db, segments: dict[int, int]) -> str | None:
    """Digest of `segments` as the catalog records them (range and created_at); None if it lacks one."""
    recorded = catalog.segment_records(db)
    digest = hashlib.sha256()
    for start, end in segments.items():
        if recorded.get(start, (None,))[0] != end:
            return None
        digest.update(f"{start} {end} {recorded[start][1]}\n".encode())
    return digest.hexdigest()


def save(store: Store, config: EngineConfig, saved: SavedIndex) -> None:
    """Writes the index file, or nothing where the store cannot be written: the file only saves time."""
    folder = store.index_dir
    try:
        folder.mkdir(exist_ok=True)
        _remove_abandoned(folder)
        tensors = {f"head{head}": faiss.serialize_index(index) for head, index in enumerate(saved.indexes)}
        tensors["segments"] = np.array(list(saved.segments.items()), dtype=np.int64).reshape(-1, 2)
        if saved.hubs is not None:
            tensors["hubs"] = saved.hubs
        metadata = {"format": FILE_FORMAT, "config": config_digest(config), "trained_rows": str(saved.trained_rows),
                    "segments": segments_digest(store.db, saved.segments) or ""}
        with durable.written(folder / KEYS_FILE) as partial:
            save_file(tensors, str(partial), metadata=metadata)
    except OSError as error:
        log.info("the key index was not saved in %s (%s); the next open trains it again", folder, error)


def load(store: Store, config: EngineConfig) -> SavedIndex | None:
    """The saved index, if there is one made under `config` over segments the catalog records as it does."""
    path = store.index_dir / KEYS_FILE
    try:
        with safe_open(str(path), framework="np") as file:
            metadata = file.metadata() or {}
            if metadata.get("format") != FILE_FORMAT or metadata.get("config") != config_digest(config):
                return None
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (OSError, SafetensorError):
        return None
    segments = {int(start): int(end) for start, end in tensors.pop("segments")}
    if not metadata.get("segments") or segments_digest(store.db, segments) != metadata["segments"]:
        return None
    indexes = [faiss.deserialize_index(tensors[f"head{head}"]) for head in range(len(config.heads))]
    rows = sum(end - start for start, end in segments.items())
    if any(index.ntotal != rows or index.d != len(config.key_means[0]) for index in indexes):
        return None
    return SavedIndex(indexes, segments, int(metadata["trained_rows"]), tensors.get("hubs"))


def _remove_abandoned(folder: Path) -> None:
    """Removes temporary files of saves whose process is gone (killed mid-write)."""
    for partial in folder.glob(f"{KEYS_FILE}.*.part"):
        pid = partial.name[len(KEYS_FILE) + 1:].split(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            partial.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
