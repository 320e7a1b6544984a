"""Bad input gets a ValueError that names the argument, from every backend."""

import math

import pytest
import torch
from dilated_oracle import llama_tables
from kernel_device import KERNEL_DEVICE, ON_INTERPRETER

import kernels
from kernels import RoPE

BACKENDS = ["reference", "triton"]


def qkv(batch=1, seq=16, heads=4, kv_heads=2, dim=64, dtype=torch.float32):
    return (
        torch.randn(batch, seq, heads, dim, dtype=dtype),
        torch.randn(batch, seq, kv_heads, dim, dtype=dtype),
        torch.randn(batch, seq, kv_heads, dim, dtype=dtype),
    )


def tables(positions, dim=64, mode="true", offset=0):
    cos, sin = llama_tables(positions, dim)
    return RoPE(cos.float(), sin.float(), mode=mode, offset=offset)


q, k, v = qkv()
GOOD = dict(segment_lengths=[8], dilation_rates=[2])

DILATED_CASES = {
    "q not a tensor": ((q.tolist(), k, v), GOOD, "q"),
    "q 3-D": ((q[0], k, v), GOOD, "q"),
    "q integer": ((q.int(), k, v), GOOD, "q"),
    "q empty": ((q[:, :0], k[:, :0], v[:, :0]), GOOD, "q"),
    "k dtype": ((q, k.double(), v), GOOD, "k"),
    "v dtype": ((q, k, v.half()), GOOD, "v"),
    "k on another device": ((q, k.to("meta"), v), GOOD, "k"),
    "v shape": ((q, k, v[:, :, :1]), GOOD, "v"),
    "k batch": ((q, torch.cat((k, k)), torch.cat((v, v))), GOOD, "k"),
    "k length": ((q, k[:, :8], v[:, :8]), GOOD, "k"),
    "k head dim": ((q, k[..., :32], v[..., :32]), GOOD, "k"),
    "heads not a multiple of kv heads": ((q[:, :, :3], k, v), GOOD, "k"),
    "no segment lengths": ((q, k, v), dict(segment_lengths=[], dilation_rates=[]), "segment_lengths"),
    "no dilation rates": ((q, k, v), dict(segment_lengths=[8], dilation_rates=[]), "dilation_rates"),
    "lists of different lengths": ((q, k, v), dict(segment_lengths=[8, 16], dilation_rates=[1]), "dilation_rates"),
    "w not a multiple of r": ((q, k, v), dict(segment_lengths=[8, 10], dilation_rates=[1, 4]), "segment_lengths"),
    "zero w": ((q, k, v), dict(segment_lengths=[0], dilation_rates=[1]), "segment_lengths"),
    "negative r": ((q, k, v), dict(segment_lengths=[8], dilation_rates=[-2]), "dilation_rates"),
    "zero r": ((q, k, v), dict(segment_lengths=[8], dilation_rates=[0]), "dilation_rates"),
    "float w": ((q, k, v), dict(segment_lengths=[8.0], dilation_rates=[1]), "segment_lengths"),
    "bool r": ((q, k, v), dict(segment_lengths=[8], dilation_rates=[True]), "dilation_rates"),
    "w as a bare int": ((q, k, v), dict(segment_lengths=8, dilation_rates=[1]), "segment_lengths"),
    "zero scale": ((q, k, v), dict(GOOD, scale=0.0), "scale"),
    "nan scale": ((q, k, v), dict(GOOD, scale=math.nan), "scale"),
    "causal not a bool": ((q, k, v), dict(GOOD, causal="yes"), "causal"),
    "rope not a RoPE": ((q, k, v), dict(GOOD, rope=llama_tables(16, 64)), "rope"),
    "rope dim": ((q, k, v), dict(GOOD, rope=tables(16, dim=32)), "rope"),
    "rope too short for true positions": ((q, k, v), dict(GOOD, rope=tables(15)), "rope"),
    "rope too short with its offset": ((q, k, v), dict(GOOD, rope=tables(16, offset=1)), "rope"),
    "rope too short for compressed positions": ((q, k, v), dict(GOOD, rope=tables(3, mode="compressed")), "rope"),
    "unknown backend": ((q, k, v), dict(GOOD, backend="cuda"), "backend"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args, kwargs, name", DILATED_CASES.values(), ids=DILATED_CASES.keys())
def test_dilated_attention_refuses_bad_input_by_name(backend, args, kwargs, name):
    kwargs = dict(kwargs)
    kwargs.setdefault("backend", backend)
    with pytest.raises(ValueError, match=name):
        kernels.dilated_attention(*args, **kwargs)


def test_compressed_tables_need_only_reach_the_kept_rows():
    """16 rows, w = 8, r = 2: a segment keeps 4 rows, so positions 0..3 suffice."""
    out, _ = kernels.dilated_attention(q, k, v, **GOOD, rope=tables(4, mode="compressed"))
    assert torch.isfinite(out).all()


ATTEND_CASES = {
    "negative causal_offset": ((q[:, :2], k, v), dict(causal_offset=-1), "causal_offset"),
    "causal_offset not an int": ((q[:, :2], k, v), dict(causal_offset=2.0), "causal_offset"),
    "k batch": ((q[:, :2], torch.cat((k, k)), torch.cat((v, v))), dict(causal_offset=0), "k"),
    "heads not a multiple of kv heads": ((q[:, :2, :3], k, v), dict(causal_offset=0), "k"),
    "compressed rope": ((q[:, :2], k, v), dict(causal_offset=0, rope=tables(32, mode="compressed")), "rope"),
    "rope too short for the queries": ((q[:, :2], k, v), dict(causal_offset=15, rope=tables(16)), "rope"),
    "unknown backend": ((q[:, :2], k, v), dict(causal_offset=0, backend="gpu"), "backend"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("args, kwargs, name", ATTEND_CASES.values(), ids=ATTEND_CASES.keys())
def test_attend_refuses_bad_input_by_name(backend, args, kwargs, name):
    kwargs = dict(kwargs)
    kwargs.setdefault("backend", backend)
    with pytest.raises(ValueError, match=name):
        kernels.attend(*args, **kwargs)


@pytest.mark.parametrize(
    "inputs, reason",
    [
        (qkv(dim=32), "head dim"),
        pytest.param(
            qkv(dtype=torch.bfloat16), "bfloat16",
            marks=pytest.mark.skipif(not ON_INTERPRETER, reason="only the interpreter cannot compute bfloat16"),
        ),
    ],
)
def test_triton_backend_refuses_what_the_kernel_cannot_take(inputs, reason):
    inputs = tuple(t.to(KERNEL_DEVICE) for t in inputs)
    with pytest.raises(ValueError, match=rf"^q .*{reason}"):
        kernels.dilated_attention(*inputs, **GOOD, backend="triton")
    with pytest.raises(ValueError, match=rf"^q .*{reason}"):
        kernels.attend(inputs[0][:, :1], *inputs[1:], causal_offset=0, backend="triton")
