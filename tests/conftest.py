"""Shared pytest setup.

Without a GPU, Triton kernels run on CPU tensors in Triton's interpreter; the variable
must be set before any kernel is decorated, i.e. before fastrnn.triton is imported.
With a GPU it is left unset: Triton runs compiled on CUDA tensors, and the CPU-tensor
(interpreter) variants are skipped in this process with a reason and run in a child
process instead (tests/helpers.py TRITON_DEVICES, tests/test_triton.py).
"""
import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Poison fresh allocations (at::empty, torch.empty) with NaN, so that a kernel that reads
# memory it never wrote fails parity instead of passing by luck. warn_only: no op refuses.
torch.use_deterministic_algorithms(True, warn_only=True)
torch.utils.deterministic.fill_uninitialized_memory = True
