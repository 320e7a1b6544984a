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
    reading_dtype: torch.dtype | None = None  # what the engine's pass over the corpus computes in (`reading_dtype`)


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


def reading_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """The lower precision the engine's pass over the corpus computes in, under `torch.autocast` (None: the
    weights' own dtype): bf16 for fp32 weights on a CPU with bf16 instructions (AVX512-BF16, which every CPU
    with AMX also has).

    Only the pass, where the tokens are many and what is kept is an int8 key. Measured beside fp32 on such a
    CPU, 2 shared cores (bench/bench_cpu_pass.py, docs/benchmarks.md): 1.5-1.6x the tokens a second at the
    `fast` setting, keys within 4 int8 steps of fp32's (90% of values equal, every token's cosine >= 0.997),
    and on the QA train split the same hit@4 for the heads and the same hit@1/@4 for the fusion. Questions,
    answers and generation keep the fp32 weights as they are. A GPU's weights are bf16 already; a CPU without
    those instructions keeps fp32 (there bf16 products are emulated)."""
    # torch.cpu._is_avx512_bf16_supported is private, but present in the torch versions declared;
    # torch.cpu.get_capabilities, its public successor, only in later ones.
    if device.type == "cpu" and dtype == torch.float32 and torch.cpu._is_avx512_bf16_supported():
        return torch.bfloat16
    return None


def load_runtime(model: str | None = None, device: str | None = None, dtype: torch.dtype | None = None) -> Runtime:
    started = time.perf_counter()
    path = resolve_model_path(model)
    target = choose_device(device)
    files = load_model_files(path)
    weights_dtype = dtype or default_dtype(target)
    llama = build_model(files.config, files.weights, target, weights_dtype)
    return Runtime(llama, files.tokenizer, files.config, target, path, files.digest, time.perf_counter() - started,
                   reading_dtype(target, weights_dtype))
