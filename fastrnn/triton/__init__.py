"""Triton kernels for fastrnn (forward recurrence and BPTT). See fastrnn/triton/README.md."""
from __future__ import annotations


def is_available(device_type: str = "cuda") -> bool:
    """True when the Triton kernels can run on ``device_type`` here (fastrnn.backends decides)."""
    from ..backends import triton_usable

    return triton_usable(device_type)


def rnn_forward(*args, **kwargs):
    from .ops import rnn_forward as fwd

    return fwd(*args, **kwargs)
