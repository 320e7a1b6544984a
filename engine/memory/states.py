"""A segment's state file on disk: `states/<first token>.safetensors`, int8 keys and the token range.

Apart from `engine.memory.segments` (which runs the model) because reading, writing and weighing these files
needs numpy and safetensors only: `engine status` measures them without importing torch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from ingest import catalog, durable
from ingest.store import STATES, Store

# Threads syncing one step's files at once: concurrent fsyncs share the file system's journal commits
# (bench/bench_segments.py), and past a few dozen in flight there is nothing left to share.
SYNC_THREADS = 16


def state_path(root: Path, start: int) -> Path:
    return root / STATES / f"{start:012d}.safetensors"


def unit_keys(keys: np.ndarray) -> np.ndarray:
    """Stored int8 keys (unit length × 127) as float32 unit vectors, as faiss searches them."""
    return keys.astype(np.float32) / 127.0


def write_states(root: Path, states: list[tuple[int, int, np.ndarray]], hubs: list[np.ndarray] | None = None) -> None:
    """Writes the state files of one step, `(start, end, keys)` each, with each segment's block hub scores
    (`engine.memory.hubs.block_hubs`) where given, whole and durable when it returns.

    Every file goes to a temporary name first; then all of them are fsynced together from a few threads
    (one fsync after another costs a journal commit each, which capped a single writer near 250k tokens/s;
    fsyncs in flight together are committed together), renamed into place, and the directory is fsynced
    once for all the renames. Only then may the catalog record these segments: a run killed before that
    leaves `.part` files or renamed but unrecorded files, which the catalog does not count and a re-run
    overwrites.
    """
    if not states:
        return
    folder = root / STATES
    folder.mkdir(exist_ok=True)
    moves = []
    for number, (start, end, keys) in enumerate(states):
        path = state_path(root, start)
        partial = path.with_name(path.name + ".part")
        tensors = {"keys": keys, "range": np.array([start, end], dtype=np.int64)}
        if hubs is not None:
            tensors["hubs"] = hubs[number]
        save_file(tensors, str(partial))
        moves.append((partial, path))
    if len(moves) == 1:
        durable.sync_file(moves[0][0])
    else:
        with ThreadPoolExecutor(min(SYNC_THREADS, len(moves)), thread_name_prefix="state-sync") as pool:
            list(pool.map(durable.sync_file, [partial for partial, _ in moves]))
    for partial, path in moves:
        os.replace(partial, path)
    durable.sync_directory(folder)


def read_state(root: Path, start: int) -> tuple[int, int, np.ndarray]:
    begin, end, keys, _ = read_state_hubs(root, start)
    return begin, end, keys


def read_state_hubs(root: Path, start: int) -> tuple[int, int, np.ndarray, np.ndarray | None]:
    """A state file's range, keys and block hub scores (None in a file from before hub scores)."""
    state = load_file(str(state_path(root, start)))
    begin, end = (int(x) for x in state["range"])
    return begin, end, state["keys"], state.get("hubs")


def recorded_state_bytes(store: Store) -> tuple[int, int, int]:
    """(segments, tokens, bytes on disk) of the state files the catalog records as processed.

    Counted from the recorded segments, not by listing `states/`: a `.part` file left by a killed run,
    or a file renamed into place just before the kill and not yet recorded, is not part of the store.
    """
    segments = tokens = size = 0
    for start, end in catalog.segment_ranges(store.db).items():
        try:
            size += state_path(store.root, start).stat().st_size
        except FileNotFoundError:  # a damaged store (engine.store_check names it): the others still count
            continue
        segments += 1
        tokens += end - start
    return segments, tokens, size
