"""Where these tests run the Triton kernels: the GPU when there is one, else the CPU under
Triton's interpreter (conftest switches it on when there is no GPU)."""

import torch

KERNEL_DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_INTERPRETER = KERNEL_DEVICE.type == "cpu"
