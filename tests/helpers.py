"""Test helpers: twin models with identical weights, per-dtype tolerances, gradient comparison."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastrnn

# (rtol, atol) per dtype for comparisons with torch.nn.RNN and with the reference.
# float32: the issue asks for 1e-5 relative or better; atol covers values near zero.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 2e-5),
    # Reduced precision, against float32 results on the same rounded inputs: fastrnn computes
    # in float32 and rounds once, so a few ulps of the 11/8-bit mantissa plus accumulation.
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (4e-2, 4e-2),
}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GPU_DEVICES = ["cuda"] if torch.cuda.is_available() else []
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def triton_mode() -> str | None:
    """How fastrnn's Triton kernels run in this test process: "interpreter" (CPU tensors;
    TRITON_INTERPRET=1, which tests/conftest.py sets only where there is no GPU), "compiled"
    (CUDA tensors), or None (no triton, or compiled Triton without a GPU).

    Read once at import: Triton decides interpreted vs compiled when the kernels are
    decorated, so flipping the variable later changes nothing in this process. Whether
    Triton can run at all is fastrnn.backends.triton_status's answer (the one place).
    """
    if fastrnn.backends.triton_usable("cpu"):  # only under TRITON_INTERPRET=1
        return "interpreter"
    if torch.cuda.is_available() and fastrnn.backends.triton_usable("cuda"):
        return "compiled"
    return None


_NO_TRITON_INTERPRETER = (
    "Triton runs compiled in this process (a GPU is present); CPU tensors need the "
    "interpreter: test_triton.py::test_interpreter_suite_in_subprocess runs these with "
    "TRITON_INTERPRET=1 and no visible GPU")


def triton_devices(mode: str | None) -> list:
    """Device parameters for Triton tests: CPU tensors only under the interpreter, CUDA
    tensors only compiled. Both ids always exist, so a run says which half was skipped and why."""
    return [
        pytest.param("cpu", marks=pytest.mark.skipif(
            mode != "interpreter",
            reason=_NO_TRITON_INTERPRETER if mode == "compiled" else
            "Triton cannot run here: not installed, or TRITON_INTERPRET=0 without a GPU")),
        pytest.param("cuda", marks=pytest.mark.skipif(
            mode != "compiled", reason="needs a CUDA device and compiled Triton (TRITON_INTERPRET unset)")),
    ]


TRITON_MODE = triton_mode()
TRITON_DEVICES = triton_devices(TRITON_MODE)


def assert_close(actual, expected, dtype=None, name=""):
    rtol, atol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


def twin_rnn(*args, backend="auto", device="cpu", dtype=torch.float32, seed=0, **kwargs):
    """(torch.nn.RNN, fastrnn.RNN) with the same weights (fastrnn's loaded from nn.RNN's state_dict)."""
    torch.manual_seed(seed)
    ref = nn.RNN(*args, **kwargs).to(device=device, dtype=dtype)
    ours = fastrnn.RNN(*args, backend=backend, **kwargs).to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def grads_of(loss: torch.Tensor, tensors):
    """Gradients of loss w.r.t. tensors (None for a tensor that loss does not depend on)."""
    return torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)


def random_loss(outputs, seed=1):
    """A loss that weighs every output element differently (a plain sum hides transposes)."""
    gen = torch.Generator().manual_seed(seed)
    total = 0
    for out in outputs:
        w = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(out.device, out.dtype)
        total = total + (out * w).sum()
    return total
