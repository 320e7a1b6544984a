"""Opt-in (KERNELS_COMPILE_CHECK=1, a few minutes): the kernels compile for an H100 and fit its
shared memory. The interpreter never compiles, so without a GPU this is the only check that what
a GPU run launches is accepted by the compiler and the hardware."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

H100_SHARED_BYTES = 227 * 1024  # opt-in maximum per block on sm_90

pytestmark = pytest.mark.skipif(
    os.environ.get("KERNELS_COMPILE_CHECK") != "1", reason="set KERNELS_COMPILE_CHECK=1 to compile for sm_90 (minutes)"
)


def test_every_dtype_and_head_dim_compiles_within_h100_shared_memory():
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("compile_sm90.py"))],
        env=env, capture_output=True, text=True, check=True,
    )
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert {(r["kernel"], r["dtype"], r["dim"]) for r in results} == {
        (kernel, dtype, dim) for kernel in ("dilated", "attend") for dtype in ("bf16", "fp16", "fp32") for dim in (64, 128)
    }
    too_big = [r for r in results if r["shared"] > H100_SHARED_BYTES]
    assert not too_big, too_big
