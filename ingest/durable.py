"""Writing a file so that a crash leaves either the old file or the whole new one, never a part.

The content goes to a temporary name beside the target, is fsynced, renamed over the target, and the
directory is fsynced so that the rename itself survives a power loss. Every file the project keeps
(the catalog being built, state files, the saved key index, the extracted model, caches) goes through here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sync_directory(folder: Path) -> None:
    """Makes the renames into `folder` durable."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def replace(partial: Path, target: Path, synced: bool = False) -> None:
    """Moves the finished `partial` over `target` durably (`synced`: its content is fsynced already)."""
    if not synced:
        sync_file(partial)
    os.replace(partial, target)
    sync_directory(target.parent)


@contextmanager
def written(target: Path, partial: Path | None = None) -> Iterator[Path]:
    """`with written(target) as partial:` write `partial`; on leaving, it replaces `target` durably.

    If the block raises, the partial file is removed and `target` is left as it was. `partial` defaults
    to `<target>.<pid>.part`, so that two processes writing the same target never share one.
    """
    partial = partial or target.with_name(f"{target.name}.{os.getpid()}.part")
    try:
        yield partial
        replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
