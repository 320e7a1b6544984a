"""The cache of dequantised weights: a cache cut short or garbled is noticed on load and rebuilt, and the
next command works; a whole cache is used as it is."""

from __future__ import annotations

import os

import pytest
import torch

from engine.model.files import cache_dir
from engine.model.weights import load_model_files, load_model_tokenizer
from tests.engine.test_cli import run_engine, tiny_gguf  # noqa: F401  (the fixture)

pytest.importorskip("transformers")


def cache_files() -> tuple:
    folder = cache_dir() / "weights"
    return next(folder.glob("*.safetensors")), next(folder.glob("*.json"))


def damage(case: str) -> None:
    tensors, sidecar = cache_files()
    if case == "tensors truncated":
        os.truncate(tensors, tensors.stat().st_size - 100)
    elif case == "tensors cut to its header":
        os.truncate(tensors, 8)
    elif case == "tensors garbage":
        tensors.write_bytes(b"\xff" * 4096)
    elif case == "sidecar truncated":
        os.truncate(sidecar, sidecar.stat().st_size // 2)
    else:
        tensors.unlink()


CASES = ["tensors truncated", "tensors cut to its header", "tensors garbage", "sidecar truncated", "tensors deleted"]


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_cache_is_rebuilt_and_gives_the_same_weights(tiny_gguf, case):  # noqa: F811
    reference = load_model_files(tiny_gguf, use_cache=False)
    load_model_files(tiny_gguf)  # writes the cache
    tensors, _ = cache_files()
    whole_size = tensors.stat().st_size
    damage(case)
    rebuilt = load_model_files(tiny_gguf)
    assert set(rebuilt.weights) == set(reference.weights)
    assert all(torch.equal(rebuilt.weights[name], reference.weights[name]) for name in reference.weights)
    assert cache_files()[0].stat().st_size == whole_size  # the cache is whole again
    assert load_model_tokenizer(tiny_gguf).encode("hello world") == reference.tokenizer.encode("hello world")


def test_after_a_truncated_cache_the_next_command_works(tiny_gguf, tmp_path):  # noqa: F811
    cache = tmp_path / "cache"
    first = run_engine("generate", "hello", "--max-new-tokens", "4", "--model", str(tiny_gguf), "--device", "cpu",
                       env_cache=cache)
    assert first.returncode == 0, first.stderr
    tensors = next((cache / "weights").glob("*.safetensors"))
    whole_size = tensors.stat().st_size
    os.truncate(tensors, whole_size - 100)
    second = run_engine("generate", "hello", "--max-new-tokens", "4", "--model", str(tiny_gguf), "--device", "cpu",
                        env_cache=cache)
    assert second.returncode == 0 and "Traceback" not in second.stderr, second.stderr
    assert second.stdout == first.stdout  # greedy: the same words from the same weights
    assert tensors.stat().st_size == whole_size
