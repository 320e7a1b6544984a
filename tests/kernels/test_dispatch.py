"""Which backend a public call runs on."""

import pytest
import torch
from dilated_oracle import dilated
from kernel_device import KERNEL_DEVICE

import kernels
import kernels.dispatch as dispatch
import kernels.triton_launch as triton_launch

PATTERNS = dict(segment_lengths=[16, 32], dilation_rates=[1, 2])


def inputs(device="cpu"):
    gen = torch.Generator().manual_seed(0)
    return tuple(torch.randn(1, 40, heads, 64, generator=gen).to(device) for heads in (6, 2, 2))


def record_calls(monkeypatch, target, name):
    """Replace ``target.name`` by a wrapper that logs its calls and still runs it."""
    calls = []
    original = getattr(target, name)

    def recorded(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, recorded)
    return calls


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_cpu_tensors_go_to_the_reference(monkeypatch, backend):
    reference_calls = record_calls(monkeypatch, dispatch.reference, "dilated_attention")
    kernel_calls = record_calls(monkeypatch, dispatch, "dilated_attention_triton")
    kernels.dilated_attention(*inputs(), **PATTERNS, backend=backend)
    assert reference_calls == ["dilated_attention"] and kernel_calls == []


def test_triton_backend_runs_the_kernel(monkeypatch):
    reference_calls = record_calls(monkeypatch, dispatch.reference, "dilated_attention")
    kernel_calls = record_calls(monkeypatch, dispatch, "dilated_attention_triton")
    q, k, v = inputs()
    out, lse = kernels.dilated_attention(*(t.to(KERNEL_DEVICE) for t in (q, k, v)), **PATTERNS, backend="triton")
    out, lse = out.cpu(), lse.cpu()
    assert kernel_calls == ["dilated_attention_triton"] and reference_calls == []
    want_out, want_lse = dilated(q, k, v, **PATTERNS)
    torch.testing.assert_close(out.double(), want_out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lse.double(), want_lse, atol=1e-4, rtol=1e-4)


def test_attend_dispatches_the_same_way(monkeypatch):
    reference_calls = record_calls(monkeypatch, dispatch.reference, "attend")
    kernel_calls = record_calls(monkeypatch, dispatch, "attend_triton")
    q, k, v = inputs()
    on_cpu = kernels.attend(q[:, :2], k, v, causal_offset=38)
    forced = kernels.attend(*(t.to(KERNEL_DEVICE) for t in (q[:, :2], k, v)), causal_offset=38, backend="triton")
    assert reference_calls == ["attend"] and kernel_calls == ["attend_triton"]
    torch.testing.assert_close(tuple(t.cpu() for t in forced), on_cpu, atol=1e-4, rtol=1e-4)


def test_triton_backend_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(triton_launch, "INTERPRETED", False)
    with pytest.raises(ValueError, match="backend 'triton'.*TRITON_INTERPRET"):
        kernels.dilated_attention(*inputs(), **PATTERNS, backend="triton")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_tensors_go_to_the_kernel(monkeypatch):
    kernel_calls = record_calls(monkeypatch, dispatch, "dilated_attention_triton")
    kernels.dilated_attention(*inputs("cuda"), **PATTERNS)
    assert kernel_calls == ["dilated_attention_triton"]
