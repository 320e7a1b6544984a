"""When and how the Triton kernels may run: device checks, block sizes, RoPE arguments.

Triton decides at decoration time whether a kernel is compiled for the GPU or run by its
interpreter (``TRITON_INTERPRET=1``), so whether CPU tensors can go through a kernel is fixed when
this package is first imported: ``INTERPRETED`` records it.
"""

from __future__ import annotations

import math
import os

import torch

from kernels.rope import RoPE

INTERPRETED: bool = os.environ.get("TRITON_INTERPRET") == "1"
SUPPORTED_HEAD_DIMS: tuple[int, ...] = (64, 128)
LOG2_E: float = 1.0 / math.log(2.0)


def can_run_on(device: torch.device) -> bool:
    """CUDA tensors always; CPU tensors only under the interpreter."""
    return device.type == "cuda" or (device.type == "cpu" and INTERPRETED)


def check_triton_inputs(q: torch.Tensor) -> None:
    """Reject what the kernels cannot take, naming the argument."""
    if not can_run_on(q.device):
        raise ValueError(
            f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 set before kernels is imported), "
            f"but q is on {q.device}"
        )
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"q has head dim {q.shape[-1]}; the Triton kernels support {SUPPORTED_HEAD_DIMS}")
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        # The interpreter keeps bfloat16 as raw uint16 and tl.dot multiplies the bit patterns
        # (triton-lang/triton#11584): refuse rather than return garbage.
        raise ValueError("q is bfloat16, which the Triton interpreter cannot compute; use float16 or float32 on the CPU")


def check_block(name: str, value: int | None) -> None:
    """Block overrides (used by tests and tuning) must be powers of two of at least 16 (tl.dot's minimum)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 16 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 16, got {value!r}")


def precision(dtype: torch.dtype) -> str:
    """fp32 inputs get IEEE dots: on the GPU they would otherwise silently run as tf32."""
    return "ieee" if dtype == torch.float32 else "tf32"


def tile_ceiling(device: torch.device, dtype: torch.dtype) -> tuple[int, int]:
    """Largest ``(block_m, block_n)`` tiles for q's device and dtype.

    On the GPU, 128 x 64 as in the fused-attention tutorial for 16-bit inputs; fp32 tiles take
    twice the bytes, and compiled for sm_90 the D=128 kernels then need up to 352 KB of shared
    memory (H100 allows 227 KB), so fp32 gets 64 x 32 (at most 180 KB). The interpreter pays per
    program and per loop step far more than per element, so it gets 64 x 64.
    """
    if device.type != "cuda":
        return 64, 64
    return (64, 32) if dtype == torch.float32 else (128, 64)


def launch_options(device: torch.device, head_dim: int) -> dict[str, int]:
    """Warps and pipeline stages; the interpreter ignores them."""
    if device.type != "cuda":
        return {}
    return {"num_warps": 4 if head_dim <= 64 else 8, "num_stages": 3}


def rope_tables(rope: RoPE | None, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(cos, sin, row_stride, dim_stride)`` for the kernels; q stands in when there is no RoPE.

    The tables go in q's dtype, as Llama models apply them: compiled for sm_90, fp32 tables
    next to bf16 q/k take the D=128 kernel from 64 KB to 180 KB of shared memory (pipelined
    table loads), leaving room for one program per multiprocessor. The rotation itself runs
    in fp32.
    """
    if rope is None:
        return q, q, 0, 0
    cos = rope.cos.to(q.dtype).contiguous()
    sin = rope.sin.to(q.dtype).contiguous()
    return cos, sin, cos.stride(0), cos.stride(1)
