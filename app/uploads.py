"""Files uploaded through the web page, kept inside the store under names the server makes up.

Nothing the browser sends is trusted as a path: the client's file name contributes only a cleaned-up
stem (letters, digits and `_`, other runs turned into `-`) and a suffix from an allow-list, behind a random prefix, so an upload
can neither leave the store's `uploads/` folder nor overwrite another file. Size and type are checked
on the bytes received, whatever the page claimed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine import READABLE_SUFFIXES, binary_reason, durably_written

UPLOADS = "uploads"
SNIFF_BYTES = 8000
MAX_STEM = 60


@dataclass
class Upload:
    """One file the page sent: where Gradio put it, and the name the client gave it (untrusted)."""

    temp_path: Path
    client_name: str


@dataclass
class Saved:
    client_name: str
    path: Path | None = None  # inside the store, when accepted
    reason: str | None = None  # why it was refused


def safe_name(client_name: str) -> str | None:
    """`<random>-<stem><suffix>` from a client's file name, or None when its suffix is not allowed."""
    base = re.split(r"[\\/]", client_name)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        return None
    suffix = "." + suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        return None
    clean = re.sub(r"[^A-Za-z0-9_]+", "-", stem).strip("-")[:MAX_STEM] or "upload"
    return f"{secrets.token_hex(4)}-{clean}{suffix}"


def refusal(upload: Upload, max_bytes: int) -> str | None:
    """Why this upload cannot be kept (size, type, content), or None."""
    try:
        size = upload.temp_path.stat().st_size
    except OSError as error:
        return f"the upload could not be read ({error.strerror or error})"
    if size > max_bytes:
        return f"{size / 2**20:.1f} MB is over the {max_bytes / 2**20:g} MB upload limit"
    if safe_name(upload.client_name) is None:
        return "not a kind of file the engine reads (Markdown, text, PDF or source code)"
    with open(upload.temp_path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    is_pdf = upload.client_name.lower().endswith(".pdf")
    if is_pdf and not head.startswith(b"%PDF-"):
        return "named .pdf but is not a PDF"
    if not is_pdf and binary_reason(head) is not None:
        return "a binary file, not text"
    return None


def save_uploads(store_root: Path, uploads: list[Upload], max_bytes: int) -> list[Saved]:
    """Copies each acceptable upload into `<store>/uploads/` under a generated name (atomically: a copy
    to a hidden temporary name, then a rename); the others come back with the reason."""
    folder = store_root / UPLOADS
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    saved = []
    for upload in uploads:
        reason = refusal(upload, max_bytes)
        if reason is not None:
            saved.append(Saved(upload.client_name, reason=reason))
            continue
        target = folder / safe_name(upload.client_name)
        try:
            with durably_written(target, folder / f".{target.name}.part") as partial, \
                    open(upload.temp_path, "rb") as source, \
                    os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink:
                shutil.copyfileobj(source, sink)  # created 0600: only the user who runs the chat reads it
        except OSError as error:
            saved.append(Saved(upload.client_name, reason=f"could not be saved ({error.strerror or error})"))
            continue
        saved.append(Saved(upload.client_name, path=target))
    return saved
