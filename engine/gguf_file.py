"""Reading GGUF files with the `gguf` package: metadata as plain Python values, tensors dequantised to fp32.

Every failure becomes a `ModelError` naming the file and the reason, so the CLI can print one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from engine.model_files import ModelError

# Types a user can expect to work: dequantised by the gguf package in numpy.
SUPPORTED_TYPES = {GGMLQuantizationType[name] for name in (
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")}


def open_gguf(path: Path) -> GGUFReader:
    if path.stat().st_size < 24:
        raise ModelError(f"{path}: not a GGUF file (only {path.stat().st_size} bytes)")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (no GGUF magic at the start)")
    try:
        return GGUFReader(path)
    except (ValueError, IndexError, KeyError, OSError, TypeError) as error:
        raise ModelError(f"{path}: truncated or damaged GGUF file ({error})") from error


def read_gguf_metadata(path: Path, reader: GGUFReader | None = None) -> dict:
    """All key/value fields as Python values (str, int, float, bool, or lists of them)."""
    reader = reader or open_gguf(path)
    meta = {}
    for key, field_ in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        try:
            meta[key] = field_.contents()
        except (ValueError, IndexError, UnicodeDecodeError) as error:
            raise ModelError(f"{path}: damaged metadata field {key} ({error})") from error
    return meta


def iter_gguf_tensors(path: Path, reader: GGUFReader) -> Iterator[tuple[str, np.ndarray]]:
    """(name, fp32 array in PyTorch's (out, in) orientation) for every tensor of the file."""
    for tensor in reader.tensors:
        kind = GGMLQuantizationType(tensor.tensor_type)
        if kind not in SUPPORTED_TYPES:
            raise ModelError(f"{path}: tensor {tensor.name} uses quantisation type {kind.name}, which is not "
                             f"supported (supported: {', '.join(sorted(t.name for t in SUPPORTED_TYPES))})")
        expected = int(np.prod(tensor.shape))
        try:
            values = dequantize(tensor.data, kind)
        except (ValueError, NotImplementedError) as error:
            raise ModelError(f"{path}: tensor {tensor.name} could not be dequantised ({error})") from error
        if values.size != expected:
            raise ModelError(f"{path}: tensor {tensor.name} is truncated ({values.size} of {expected} values)")
        shape = tuple(reversed([int(n) for n in tensor.shape]))
        # np.array copies: F32 tensors come back as read-only views of the memory-mapped file.
        yield tensor.name, np.array(values.reshape(shape), dtype=np.float32)
