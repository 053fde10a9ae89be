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
    ``project_first`` (the forward ran x W_ih^T + b as one GEMM before the steps), and
    ``active_rows`` (sorted lengths, e.g. a PackedSequence: each step computed only its
    active rows), and ``own_gemm`` (the batched GEMM of the call, the project-first
    projection or the backward's dx, ran on fastrnn's packed kernel rather than at::mm).
    """
    op, path, isa, threads, project_first, active_rows, own_gemm = \
        torch.ops.fastrnn._cpu_last_plan()
    if not op:
        return None
    return {"op": op, "path": path, "isa": isa, "threads": threads,
            "project_first": project_first, "active_rows": active_rows, "own_gemm": own_gemm}


def cpu_machine() -> dict:
    """The CPU parameters the CPU paths are chosen by (csrc/cpu/machine.h).

    Cache sizes as the OS reports them (``cache_source``: "sysfs" | "sysconf" | "default"),
    torch's thread count, the ISA in use (FASTRNN_CPU_ISA or the best supported), the
    register tile's panel width, and costs micro-measured once per process (per ISA and
    thread count): one core's multiply-adds per ns, packing ns per weight element, a
    stepwise step's library-call ns, a parallel region's and a spin barrier's ns, and how
    much faster fastrnn's packed GEMM ran than at::mm (> 1: the batched GEMMs use it).
    """
    keys = ("isa", "l1d_bytes", "l2_bytes", "l3_bytes", "cache_source", "threads", "panel_cols",
            "madd_per_ns", "pack_ns_per_element", "step_call_ns", "parallel_ns", "barrier_ns",
            "own_gemm_speedup")
    return dict(zip(keys, torch.ops.fastrnn._cpu_machine()))


def cpu_fma_peak(seconds: float = 0.2, threads: int | None = None) -> dict:
    """The FMA-throughput peak of the ISA in use, measured now: ``threads`` threads
    (default torch's) run a loop of independent vector FMAs for ``seconds``.
    ``wall_gflops``: all FLOPs / wall time; ``cpu_gflops``: the sum of each thread's FLOPs /
    its own CPU time (what the cores reach when the OS runs the threads; robust to load).
    """
    wall, cpu = torch.ops.fastrnn._cpu_fma_peak(seconds, threads or torch.get_num_threads())
    return {"wall_gflops": wall, "cpu_gflops": cpu, "threads": threads or torch.get_num_threads()}
