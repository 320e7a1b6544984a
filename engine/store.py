"""Where the user's store lives when no `--store` is given."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def default_store() -> Path:
    """`$ENGINE_STORE`, else one personal store in the user data dir."""
    return Path(os.environ.get("ENGINE_STORE") or Path(platformdirs.user_data_dir("wholecorpus")) / "store")
