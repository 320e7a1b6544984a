"""Compile the Triton kernels for sm_90 (H100) without a GPU; print each one's shared memory as JSON.

Run in a process without TRITON_INTERPRET (under the interpreter the kernels are not compilable
objects). Tiles, warps and stages come from the launchers' own choices, so what is checked is
what a GPU run would launch. Triton ships ptxas, so this needs no CUDA installation.
"""

from __future__ import annotations

import json

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from kernels.decode import _attend_fwd
from kernels.dilated_attention import _dilated_fwd
from kernels.triton_launch import SUPPORTED_HEAD_DIMS, launch_options, precision, tile_ceiling

TARGET = GPUTarget("cuda", 90, 32)
CUDA = torch.device("cuda")
TRITON_TYPES = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}


def signature(fn, pointers: dict[str, str], constexprs: dict) -> dict[str, str]:
    """Pointers as given, the softmax scale as fp32, every other runtime argument as i32."""
    def kind(name: str) -> str:
        if name in constexprs:
            return "constexpr"
        return pointers.get(name, "fp32" if name == "qk_scale" else "i32")

    return {name: kind(name) for name in fn.arg_names}


def compile_one(fn, pointers, constexprs, dim) -> int:
    source = ASTSource(fn, signature(fn, pointers, constexprs), constexprs=constexprs)
    return triton.compile(source, target=TARGET, options=launch_options(CUDA, dim)).metadata.shared


def main() -> None:
    results = []
    for dtype, name in TRITON_TYPES.items():
        block_m, block_n = tile_ceiling(CUDA, dtype)
        for dim in SUPPORTED_HEAD_DIMS:
            for causal, rope, merge in ((True, True, True), (False, False, False)):
                pointers = dict(Q=f"*{name}", K=f"*{name}", V=f"*{name}", COS=f"*{name}", SIN=f"*{name}",
                                OUT="*fp32" if merge else f"*{name}", LSE="*fp32")
                constexprs = dict(HEAD_DIM=dim, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal, ROPE=rope,
                                  ROPE_COMPRESSED=False, MERGE=merge, PRECISION=precision(dtype))
                shared = compile_one(_dilated_fwd, pointers, constexprs, dim)
                results.append(dict(kernel="dilated", dtype=name, dim=dim, rope=rope, merge=merge, shared=shared))
            pointers = dict(Q=f"*{name}", K=f"*{name}", V=f"*{name}", COS=f"*{name}", SIN=f"*{name}", OUT="*fp32", LSE="*fp32")
            constexprs = dict(HEAD_DIM=dim, BLOCK_M=64, BLOCK_N=block_n, CAUSAL=True, ROPE=True, PRECISION=precision(dtype))
            shared = compile_one(_attend_fwd, pointers, constexprs, dim)
            results.append(dict(kernel="attend", dtype=name, dim=dim, rope=True, merge=False, shared=shared))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
