"""Files uploaded through the web page, kept inside the store under the name the user gave them.

Nothing the browser sends is trusted as a path: the client's file name contributes only a cleaned-up stem
(letters, digits, spaces and `_ . - ( )`; other runs turned into `-`; no leading dot) and a suffix from an
allow-list, so an upload can never leave the store's `uploads/` folder. The name is what the chat shows in its
documents and citations, so it stays the user's own; a name already taken becomes `name (2).md`, reserved by
creating the file exclusively, so an upload never overwrites another, even two arriving at once. Size and type
are checked on the bytes received, whatever the page claimed.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine import READABLE_SUFFIXES, binary_reason, durably_written

UPLOADS = "uploads"
SNIFF_BYTES = 8000
MAX_STEM = 60
MAX_COPIES = 1000  # "name (2)" .. "name (1000)": past that, an upload of that name is refused


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
    """`<stem><suffix>` cleaned from a client's file name, or None when its suffix is not allowed."""
    base = re.split(r"[\\/]", client_name)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot or not stem:
        return None
    suffix = "." + suffix.lower()
    if suffix not in READABLE_SUFFIXES:
        return None
    clean = re.sub(r"[^\w .()-]+", "-", stem)
    clean = re.sub(r"\.{2,}", ".", re.sub(r"\s+", " ", clean)).strip(" .-")[:MAX_STEM].rstrip(" .") or "upload"
    return f"{clean}{suffix}"


def reserve(folder: Path, name: str) -> Path | None:
    """An empty file of `folder` created exclusively (only the user running the chat reads it) under `name`,
    or `stem (n)suffix` for the first n free; None when MAX_COPIES are taken."""
    stem, suffix = os.path.splitext(name)
    for number in range(1, MAX_COPIES + 1):
        target = folder / (name if number == 1 else f"{stem} ({number}){suffix}")
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return target
    return None


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
    """Copies each acceptable upload into `<store>/uploads/` under its cleaned name (`reserve`), atomically: a
    copy to a hidden temporary name, then a rename over the reserved file; the others come back with the reason."""
    folder = store_root / UPLOADS
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    saved = []
    for upload in uploads:
        reason = refusal(upload, max_bytes)
        target = None if reason is not None else reserve(folder, safe_name(upload.client_name))
        if target is None:
            saved.append(Saved(upload.client_name, reason=reason or f"{MAX_COPIES} uploads of that name are kept"))
            continue
        try:
            with durably_written(target, folder / f".{target.name}.part") as partial, \
                    open(upload.temp_path, "rb") as source, \
                    os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink:
                shutil.copyfileobj(source, sink)  # created 0600: only the user who runs the chat reads it
        except OSError as error:
            target.unlink(missing_ok=True)
            saved.append(Saved(upload.client_name, reason=f"could not be saved ({error.strerror or error})"))
            continue
        saved.append(Saved(upload.client_name, path=target))
    return saved
