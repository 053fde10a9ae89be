"""Triton kernels for fastrnn (forward recurrence and BPTT). See fastrnn/triton/README.md."""
from __future__ import annotations


def is_available() -> bool:
    """True when triton imports (kernels run on CUDA, or on CPU under TRITON_INTERPRET=1)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def rnn_forward(*args, **kwargs):
    from .ops import rnn_forward as fwd

    return fwd(*args, **kwargs)
