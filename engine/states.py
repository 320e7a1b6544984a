"""A segment's state file on disk: `states/<first token>.safetensors`, int8 keys and the token range.

Apart from `engine.memory` (which runs the model) because reading, writing and weighing these files
needs numpy and safetensors only: `engine status` measures them without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

STATES = "states"


def state_path(root: Path, start: int) -> Path:
    return root / STATES / f"{start:012d}.safetensors"


def write_state(root: Path, start: int, end: int, keys: np.ndarray) -> None:
    path = state_path(root, start)
    path.parent.mkdir(exist_ok=True)
    partial = path.with_name(path.name + ".part")
    save_file({"keys": keys, "range": np.array([start, end], dtype=np.int64)}, str(partial))
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_state(root: Path, start: int) -> tuple[int, int, np.ndarray]:
    state = load_file(str(state_path(root, start)))
    begin, end = (int(x) for x in state["range"])
    return begin, end, state["keys"]


def recorded_state_bytes(root: Path, db) -> tuple[int, int, int]:
    """(segments, tokens, bytes on disk) of the state files the catalog records as processed.

    Counted from the recorded segments, not by listing `states/`: a `.part` file left by a killed run,
    or a file renamed into place just before the kill and not yet recorded, is not part of the store.
    """
    segments = tokens = size = 0
    for start, end in db.execute("SELECT token_start, token_end FROM segments"):
        segments += 1
        tokens += end - start
        size += state_path(root, start).stat().st_size
    return segments, tokens, size
