"""A safetensors file's header read without its data: the cheap check that a file written by the engine (a
segment's state, the cache of dequantised weights) is whole, used before trusting it."""

from __future__ import annotations

import json
import struct
from pathlib import Path


class CutShort(ValueError):
    """The file ends before its header does."""


def read_header(path: Path) -> tuple[dict, int, int]:
    """(the header, the size the header says the file has, the size it has). Raises CutShort when the file
    ends inside its header, OSError when it cannot be read, ValueError (and the like) when the header is not
    JSON of the safetensors form."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CutShort(path)
        (header_bytes,) = struct.unpack("<Q", prefix)
        if header_bytes > size - 8:
            raise CutShort(path)
        header = json.loads(handle.read(header_bytes))
    ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    return header, 8 + header_bytes + max(ends, default=0), size
