"""What can run here and what ran last: the one place backend questions are answered.

Every "is backend X usable on this device?" decision, and every record of which kernel
path the last call on this thread took (for tests that must prove coverage, and for
``python -m fastrnn``), lives in this module. Callers ask here; they do not re-derive it.
"""
from __future__ import annotations

import torch

from . import _ops  # noqa: F401  (loads the library that defines fastrnn::_cpu_last_plan)


# ---- CPU kernels: the path the last call took ----------------------------------------------

def last_cpu_plan() -> dict | None:
    """What the last CPU ``rnn_forward`` / ``rnn_backward`` call on this thread ran, or None.

    Keys: ``op`` ("forward" | "backward"), ``path`` ("rows": threads split the batch;
    "columns": threads split the weight panels and meet once per step; "stepwise": ATen
    GEMMs one step at a time), ``isa`` ("portable" | "avx2" | "avx512"), ``threads``, and
    ``project_first`` (the forward ran x W_ih^T + b as one GEMM before the steps).
    """
    op, path, isa, threads, project_first = torch.ops.fastrnn._cpu_last_plan()
    if not op:
        return None
    return {"op": op, "path": path, "isa": isa, "threads": threads, "project_first": project_first}
