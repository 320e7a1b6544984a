"""The fused Triton kernel against the PyTorch reference.

On a GPU these run the compiled kernel; without one they run under Triton's interpreter
(conftest sets TRITON_INTERPRET=1), in fp32 and fp16: the interpreter cannot compute bfloat16
(triton-lang/triton#11584), so bf16 is checked only on a GPU.
"""

import pytest
import torch
from dilated_cases import Case, cases
from hypothesis import HealthCheck, given, settings
from kernel_device import KERNEL_DEVICE

import kernels.reference as reference
from kernels.dilated_attention import dilated_attention_triton

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 and long sequences)")


def check_against_reference(case: Case, dtype=torch.float32, tol=1e-4, device=KERNEL_DEVICE, **kernel_kwargs):
    q, k, v = case.tensors(dtype, device)
    kwargs = case.kwargs(device)
    want_out, want_lse = reference.dilated_attention(q.float(), k.float(), v.float(), **kwargs)
    out, lse = dilated_attention_triton(q, k, v, **kwargs, **kernel_kwargs)
    assert out.shape == q.shape and out.dtype == dtype
    assert lse.shape == (case.batch, case.heads, case.seq) and lse.dtype == torch.float32
    torch.testing.assert_close(out.float(), want_out, atol=tol, rtol=tol)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(want_lse))
    seen = ~torch.isneginf(want_lse)
    torch.testing.assert_close(lse[seen], want_lse[seen], atol=tol, rtol=tol)


EXPLICIT = {
    # ragged tail, r = 4 does not divide 3 heads, GQA 3, several row and key tiles per segment
    "ragged-gqa3-small-tiles": (Case(1, 150, 3, 1, 64, (32, 64), (1, 4), True, None, 0, 11), dict(block_m=16, block_n=16)),
    # GQA 4, r = 5 does not divide 8 heads, true RoPE with an offset, non-causal
    "gqa4-true-rope-noncausal": (Case(1, 200, 8, 2, 64, (100, 200), (2, 5), False, "true", 5, 12), {}),
    # head dim 128, compressed RoPE, causal, w longer than the sequence
    "mha-d128-compressed-rope": (Case(1, 130, 2, 2, 128, (64, 256), (2, 4), True, "compressed", 3, 13), {}),
    # one long segment (r = 1) over many tiles: the unmasked below-diagonal loop runs
    "window-multi-tile": (Case(1, 260, 1, 1, 64, (256,), (1,), True, None, 0, 14), dict(block_m=32, block_n=16)),
    # batch 2, non-causal, compressed RoPE, tiles where block_m > block_n
    "batch2-noncausal-compressed": (Case(2, 90, 3, 3, 64, (48,), (3,), False, "compressed", 0, 15), dict(block_m=32, block_n=16)),
    # per-pattern buffers merged afterwards instead of merging inside the kernel
    "separate-merge": (Case(1, 100, 4, 1, 64, (20, 40, 100), (1, 2, 4), True, "true", 0, 16), dict(merge="separate")),
}


@pytest.mark.parametrize("case, kernel_kwargs", EXPLICIT.values(), ids=EXPLICIT.keys())
def test_kernel_matches_reference(case, kernel_kwargs):
    check_against_reference(case, **kernel_kwargs)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(cases(max_seq=300, dims=(64, 64, 64, 128), max_batch=1, max_segments=4, max_programs=40))
def test_kernel_matches_reference_on_random_cases(case):
    check_against_reference(case)


def test_fp16_inputs_match_the_fp32_reference():
    check_against_reference(Case(1, 120, 6, 2, 64, (40, 120), (1, 3), True, "true", 0, 17), dtype=torch.float16, tol=1e-2)


def test_strided_inputs_are_read_through_their_strides():
    """q and k/v as non-contiguous views (every other head, a transposed layout)."""
    case = Case(1, 70, 4, 2, 64, (32,), (2,), True, "true", 0, 18)
    q, k, v = case.tensors(device=KERNEL_DEVICE)
    q_wide = torch.stack((q, torch.full_like(q, 9.0)), dim=3).flatten(2, 3)  # heads interleaved with junk
    q_view = q_wide[:, :, ::2]
    k_view = k.transpose(1, 2).contiguous().transpose(1, 2)
    assert not q_view.is_contiguous() and not k_view.is_contiguous()
    out, lse = dilated_attention_triton(q_view, k_view, v, **case.kwargs(KERNEL_DEVICE))
    want_out, want_lse = reference.dilated_attention(q, k, v, **case.kwargs(KERNEL_DEVICE))
    torch.testing.assert_close(out, want_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lse, want_lse, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(block_m=24), "block_m"),
        (dict(block_n=8), "block_n"),
        (dict(block_m=16, block_n=32), "block_m"),
        (dict(merge="later"), "merge"),
    ],
)
def test_bad_kernel_options_are_refused_by_name(kwargs, name):
    q = torch.randn(1, 8, 1, 64, device=KERNEL_DEVICE)
    with pytest.raises(ValueError, match=name):
        dilated_attention_triton(q, q, q, segment_lengths=[4], dilation_rates=[1], **kwargs)


GPU_CASES = {
    "longnet-like-gqa3": Case(1, 5000, 9, 3, 64, (512, 1024, 2048), (1, 2, 4), True, None, 0, 21),
    "d128-true-rope": Case(2, 3000, 16, 16, 128, (1024, 2048), (1, 2), True, "true", 100, 22),
    "gqa4-compressed-noncausal": Case(1, 4100, 8, 2, 64, (2048, 4096), (2, 4), False, "compressed", 0, 23),
}


@needs_gpu
@pytest.mark.parametrize("case", GPU_CASES.values(), ids=GPU_CASES.keys())
def test_bf16_kernel_on_gpu_is_within_2e2_of_fp32_reference(case):
    check_against_reference(case, dtype=torch.bfloat16, tol=2e-2, device="cuda")


@needs_gpu
@pytest.mark.parametrize("case", GPU_CASES.values(), ids=GPU_CASES.keys())
def test_fp32_kernel_on_gpu_is_within_1e4_of_reference(case):
    check_against_reference(case, device="cuda")
