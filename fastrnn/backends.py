"""What can run here and what ran last: the one place backend questions are answered.

Every "is backend X usable on this device?" decision, and every record of which kernel
path the last call on this thread took (for tests that must prove coverage, and for
``python -m fastrnn``), lives in this module. Callers ask here; they do not re-derive it.
"""
from __future__ import annotations

import importlib.util
import os

# ----------------------------------------------------------------------------- Triton availability

# Installed or not is fixed for the process; whether the kernels load is asked once they are needed.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_status(device_type: str) -> dict:
    """Can fastrnn's Triton kernels run on tensors of ``device_type`` here, and how?

    ``{"name": "triton", "available": bool, "mode": "GPU" | "interpreter" | None, "note": str}``;
    ``note`` says why not (or that the interpreter is slow). The one place this is decided:
    functional.resolve_backend, ``python -m fastrnn`` and the tests all ask here.
    """
    status = {"name": "triton", "available": False, "mode": None, "note": ""}
    interpret = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if device_type == "cpu" and not interpret:
        status["note"] = "needs a CUDA device (or TRITON_INTERPRET=1 for Triton's slow CPU interpreter)"
        return status
    if device_type not in ("cpu", "cuda"):
        status["note"] = f"no Triton kernels for device '{device_type}'"
        return status
    if not _TRITON_INSTALLED:
        status["note"] = "triton is not installed (pip install triton)"
        return status
    try:
        import fastrnn.triton.ops  # noqa: F401  (the kernels; importing decorates them)
    except Exception as exc:  # an ImportError, or a Triton that fails to load: say which
        status["note"] = f"fastrnn.triton failed to load: {type(exc).__name__}: {exc}"
        return status
    status["available"] = True
    # TRITON_INTERPRET=1 interprets every kernel, on a GPU machine too.
    status["mode"] = "interpreter" if interpret else "GPU"
    if interpret:
        status["note"] = "TRITON_INTERPRET=1: kernels run in Triton's interpreter (very slow)"
    return status


def triton_usable(device_type: str) -> bool:
    """``triton_status(device_type)["available"]``, for routing calls."""
    return triton_status(device_type)["available"]
