"""Reading GGUF files with the `gguf` package: metadata as plain Python values, tensors dequantised to fp32.

Every failure becomes a `ModelError` naming the file and the reason, so the CLI can print one line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize

from engine.model.files import ModelError


def open_gguf(path: Path) -> GGUFReader:
    if path.stat().st_size < 24:
        raise ModelError(f"{path}: not a GGUF file (only {path.stat().st_size} bytes)")
    with open(path, "rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (no GGUF magic at the start)")
    try:
        return GGUFReader(path)
    except ValueError as error:
        unknown = re.search(r"(\d+)\)? is not a valid GGMLQuantizationType", str(error))
        if unknown:
            raise ModelError(f"{path}: a tensor uses unknown quantisation type {unknown.group(1)}") from error
        raise ModelError(f"{path}: truncated or damaged GGUF file ({error})") from error
    except (IndexError, KeyError, OSError, TypeError) as error:
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
    """(name, fp32 array in PyTorch's (out, in) orientation) for every tensor of the file.

    Any type the gguf package dequantises works (F32, F16, BF16, Q4_0 to Q8_0, the K-quants, ...).
    """
    for tensor in reader.tensors:
        kind = GGMLQuantizationType(tensor.tensor_type)
        expected = int(np.prod(tensor.shape))
        try:
            values = dequantize(tensor.data, kind)
        except NotImplementedError as error:
            raise ModelError(f"{path}: tensor {tensor.name} uses quantisation type {kind.name}, "
                             "which the gguf package cannot dequantise") from error
        except ValueError as error:
            raise ModelError(f"{path}: tensor {tensor.name} could not be dequantised ({error})") from error
        if values.size != expected:
            raise ModelError(f"{path}: tensor {tensor.name} is truncated ({values.size} of {expected} values)")
        shape = tuple(reversed([int(n) for n in tensor.shape]))
        # np.array copies: F32 tensors come back as read-only views of the memory-mapped file.
        yield tensor.name, np.array(values.reshape(shape), dtype=np.float32)
