"""Without a GPU the Triton kernels run under Triton's interpreter, which must be switched on
before triton (and so ``kernels``) is first imported: conftest runs before any test module."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
