"""attend: a few query rows against long K/V, by the reference and by the split-K Triton kernel."""

import pytest
import torch
from dilated_oracle import dense, llama_tables
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_device import KERNEL_DEVICE

import kernels.reference as reference
from kernels.decode import attend_triton
from kernels.merge import merge_attention
from kernels.rope import RoPE

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16)")


def inputs(batch, rows, heads, kv_heads, keys, dim, seed, dtype=torch.float32, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, rows, heads, dim, generator=gen)
    k = torch.randn(batch, keys, kv_heads, dim, generator=gen)
    v = torch.randn(batch, keys, kv_heads, dim, generator=gen)
    return tuple(t.to(device=device, dtype=dtype) for t in (q, k, v))


@pytest.mark.parametrize(
    "rows, heads, kv_heads, keys, causal_offset, causal, rope_offset",
    [
        (1, 6, 2, 30, 29, True, None),  # a decode step: the new row is the last key
        (3, 4, 1, 25, 10, True, 4),  # rows before the end of the keys, GQA 4, RoPE
        (2, 3, 3, 12, 0, False, 0),  # non-causal, MHA, RoPE
        (4, 3, 1, 9, 20, True, None),  # rows past the last key see every key
    ],
)
def test_reference_matches_hand_built_dense_attention(rows, heads, kv_heads, keys, causal_offset, causal, rope_offset):
    q, k, v = inputs(2, rows, heads, kv_heads, keys, 8, seed=rows + keys)
    rope, oracle_rope = None, None
    if rope_offset is not None:
        cos, sin = llama_tables(rope_offset + max(keys, causal_offset + rows), 8)
        rope, oracle_rope = RoPE(cos.float(), sin.float(), offset=rope_offset), (cos, sin, rope_offset)
    out, lse = reference.attend(q, k, v, causal_offset=causal_offset, causal=causal, rope=rope)
    want_out, want_lse = dense(q, k, v, causal_offset, causal=causal, rope=oracle_rope)
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)


def test_attention_over_memory_and_context_merges_into_attention_over_both():
    """The answer path: attend to retrieved memory and to the local context separately, merge, and
    get attention over memory followed by context."""
    q, memory_k, memory_v = inputs(1, 2, 6, 2, 40, 8, seed=1)
    _, local_k, local_v = inputs(1, 2, 6, 2, 15, 8, seed=2)
    from_memory = reference.attend(q, memory_k, memory_v, causal_offset=0, causal=False)
    from_local = reference.attend(q, local_k, local_v, causal_offset=13)
    out, lse = merge_attention([from_memory, from_local])
    k, v = torch.cat((memory_k, local_k), dim=1), torch.cat((memory_v, local_v), dim=1)
    want_out, want_lse = dense(q, k, v, 40 + 13)
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)


def test_key_splits_that_hold_only_future_keys_drop_out_of_the_merge():
    """Row 0 at key 10 sees keys 0..10: three of the four 50-key splits see nothing."""
    q, k, v = inputs(1, 1, 2, 1, 200, 64, seed=3)
    out, lse = attend_triton(*(t.to(KERNEL_DEVICE) for t in (q, k, v)), causal_offset=10, num_splits=4, block_n=16)
    want_out, want_lse = dense(q, k, v, 10)
    out, lse = out.cpu(), lse.cpu()
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-5, rtol=1e-5)


@settings(max_examples=12, deadline=None)
@given(
    rows=st.integers(1, 6),
    kv_heads=st.integers(1, 2),
    ratio=st.sampled_from([1, 3, 4]),
    keys=st.integers(1, 400),
    dim=st.sampled_from([64, 64, 128]),
    offset_fraction=st.floats(0.0, 1.0),
    causal=st.booleans(),
    use_rope=st.booleans(),
    splits=st.sampled_from([None, 2, 3, 5]),
    block_n=st.sampled_from([None, 16, 32]),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_reference(rows, kv_heads, ratio, keys, dim, offset_fraction, causal, use_rope, splits, block_n, seed):
    q, k, v = inputs(1, rows, kv_heads * ratio, kv_heads, keys, dim, seed, device=KERNEL_DEVICE)
    causal_offset = int(offset_fraction * keys)
    rope = None
    if use_rope:
        cos, sin = llama_tables(3 + keys + rows, dim)
        rope = RoPE(cos.float().to(KERNEL_DEVICE), sin.float().to(KERNEL_DEVICE), offset=3)
    want_out, want_lse = reference.attend(q, k, v, causal_offset=causal_offset, causal=causal, rope=rope)
    out, lse = attend_triton(q, k, v, causal_offset=causal_offset, causal=causal, rope=rope, num_splits=splits, block_n=block_n)
    assert out.shape == q.shape and lse.shape == (1, kv_heads * ratio, rows)
    torch.testing.assert_close(out, want_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-4)


def test_many_query_rows_span_several_row_tiles():
    """40 rows x 4 heads per KV head is 160 tile rows: three tiles of 64."""
    q, k, v = inputs(2, 40, 8, 2, 100, 64, seed=4, device=KERNEL_DEVICE)
    want_out, want_lse = reference.attend(q, k, v, causal_offset=60)
    out, lse = attend_triton(q, k, v, causal_offset=60, num_splits=2)
    torch.testing.assert_close(out, want_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kwargs, name", [(dict(num_splits=0), "num_splits"), (dict(block_n=48), "block_n")])
def test_bad_kernel_options_are_refused_by_name(kwargs, name):
    q = torch.randn(1, 1, 1, 64, device=KERNEL_DEVICE)
    with pytest.raises(ValueError, match=name):
        attend_triton(q, q, q, causal_offset=0, **kwargs)


@needs_gpu
@pytest.mark.parametrize("keys, splits", [(100_000, None), (7777, 3)])
def test_bf16_kernel_on_gpu_is_within_2e2_of_fp32_reference(keys, splits):
    q, k, v = inputs(1, 4, 9, 3, keys, 64, seed=5, device="cuda")
    cos, sin = llama_tables(keys + 10, 64)
    rope = RoPE(cos.float().cuda(), sin.float().cuda(), offset=5)
    want_out, want_lse = reference.attend(q, k, v, causal_offset=keys - 4, rope=rope)
    out, lse = attend_triton(q.bfloat16(), k.bfloat16(), v.bfloat16(), causal_offset=keys - 4, rope=rope, num_splits=splits)
    torch.testing.assert_close(out.float(), want_out, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(lse, want_lse, atol=2e-2, rtol=2e-2)
