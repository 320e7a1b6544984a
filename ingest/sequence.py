"""`tokens.u32`: the whole corpus as one append-only sequence of token ids (raw little-endian uint32).

Only the ingest writer appends, and only whole documents: it writes a batch of documents' tokens, fsyncs,
and then records them in the catalog in one transaction, whose `sequence_tokens` value is the committed
length. Bytes past that length are an append that a crash interrupted; the next writer truncates them.
Readers (the engine) read committed ranges only, through `read_tokens`.
"""

from __future__ import annotations

import array
import os
import sys
from pathlib import Path

import numpy as np

TOKEN_DTYPE = np.dtype("<u4")
TOKEN_BYTES = TOKEN_DTYPE.itemsize
if array.array("I").itemsize != TOKEN_BYTES:
    raise ImportError("this platform's C unsigned int is not 32 bits; tokens.u32 cannot be written here")


class TokenFile:
    """The writer's handle on the sequence file."""

    def __init__(self, path: Path):
        self.path = path
        self.handle = open(path, "ab")

    def tokens_on_disk(self) -> int:
        return os.fstat(self.handle.fileno()).st_size // TOKEN_BYTES

    def bytes_on_disk(self) -> int:
        return os.fstat(self.handle.fileno()).st_size

    def truncate(self, tokens: int) -> None:
        """Cut the file back to `tokens` ids (an unfinished append), durably."""
        self.handle.flush()
        os.truncate(self.path, tokens * TOKEN_BYTES)
        os.fsync(self.handle.fileno())

    def append(self, data: bytes) -> None:
        self.handle.write(data)

    def sync(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())

    def close(self) -> None:
        self.handle.close()


def encode_ids(ids: list[int]) -> bytes:
    """Token ids as the file stores them (array is about twice as fast as numpy at this conversion)."""
    packed = array.array("I", ids)
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def read_tokens(path: Path, start: int, end: int) -> np.ndarray:
    """Token ids [start, end) of the sequence file at `path`, as a uint32 array (a copy, safe to keep)."""
    if not 0 <= start <= end:
        raise ValueError(f"bad token range [{start}, {end})")
    with open(path, "rb") as handle:
        handle.seek(start * TOKEN_BYTES)
        data = handle.read((end - start) * TOKEN_BYTES)
    if len(data) != (end - start) * TOKEN_BYTES:
        raise ValueError(f"token range [{start}, {end}) is past the end of {path}")
    return np.frombuffer(data, dtype=TOKEN_DTYPE).copy()
