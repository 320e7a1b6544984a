"""Loading a model for use: files resolved and read, weights placed on the chosen device."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.model.files import ModelError, resolve_model_path
from engine.model.llama import Llama, build_model
from engine.model.tokenizer import ChatTokenizer
from engine.model.weights import ModelConfig, load_model_files


@dataclass
class Runtime:
    model: Llama
    tokenizer: ChatTokenizer
    config: ModelConfig
    device: torch.device
    source: Path
    digest: str
    load_seconds: float


def choose_device(name: str | None) -> torch.device:
    """`cpu`, `cuda` or `cuda:N`; by default the GPU when there is one."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ModelError(f"unknown device {name!r} (use cpu, cuda or cuda:N)") from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {name!r} asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are present")
    elif device.type != "cpu":
        raise ModelError(f"unsupported device {name!r} (use cpu, cuda or cuda:N)")
    return device


def default_dtype(device: torch.device) -> torch.dtype:
    """fp32 on the CPU (exact, and CPU bf16 matmuls are slow); bf16 on GPUs."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_runtime(model: str | None = None, device: str | None = None, dtype: torch.dtype | None = None) -> Runtime:
    started = time.perf_counter()
    path = resolve_model_path(model)
    target = choose_device(device)
    files = load_model_files(path)
    llama = build_model(files.config, files.weights, target, dtype or default_dtype(target))
    return Runtime(llama, files.tokenizer, files.config, target, path, files.digest, time.perf_counter() - started)
