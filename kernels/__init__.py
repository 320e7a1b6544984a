"""Compute kernels: LongNet dilated attention (Triton, with a PyTorch reference), decode-time
attention against long K/V, and the log-sum-exp merge that combines their results."""

from kernels.dispatch import Backend, attend, dilated_attention
from kernels.flops import dense_attention_flops, dilated_attention_flops
from kernels.merge import merge_attention
from kernels.rope import RoPE

__all__ = [
    "Backend",
    "RoPE",
    "attend",
    "dense_attention_flops",
    "dilated_attention",
    "dilated_attention_flops",
    "merge_attention",
]
