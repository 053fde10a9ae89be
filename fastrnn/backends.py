"""What can run here and what ran last: the one place backend questions are answered.

Every "is backend X usable on this device?" decision, and every record of which kernel
path the last call on this thread took (for tests that must prove coverage, and for
``python -m fastrnn``), lives in this module. Callers ask here; they do not re-derive it.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from . import _ops  # noqa: F401  (loads the library: fastrnn::_cpu_last_plan, _last_cuda_plan)


# ---- CPU kernels: the path the last call took ----------------------------------------------

def last_cpu_plan() -> dict | None:
    """What the last CPU ``rnn_forward`` / ``rnn_backward`` call on this thread ran, or None.

    Keys: ``op`` ("forward" | "backward"), ``path`` ("rows": threads split the batch;
    "gemv": threads split the output columns, reading the weights unpacked, and meet once per
    step; "columns": the same split on packed weight panels (forced only); "stepwise": ATen
    GEMMs one step at a time), ``isa`` ("portable" | "avx2" | "avx512" | "avx512sim"),
    ``threads``, and ``project_first`` (the forward ran x W_ih^T + b as one GEMM before the
    steps), and ``active_rows`` (sorted lengths, e.g. a PackedSequence: each step computed only its
    active rows), and ``own_gemm`` (the batched GEMM of the call, the project-first
    projection or the backward's dx, ran on fastrnn's packed kernel rather than at::mm), and
    ``own_weight_grads`` (backward: dW_ih, dW_hh and the bias gradient ran on fastrnn's
    kernel, dz read in place, rather than at::mm).
    """
    op, path, isa, threads, project_first, active_rows, own_gemm, own_weight_grads = \
        torch.ops.fastrnn._cpu_last_plan()
    if not op:
        return None
    return {"op": op, "path": path, "isa": isa, "threads": threads,
            "project_first": project_first, "active_rows": active_rows, "own_gemm": own_gemm,
            "own_weight_grads": own_weight_grads}


def cpu_machine() -> dict:
    """The CPU parameters the CPU paths are chosen by (csrc/cpu/machine.h).

    Cache sizes as the OS reports them (``cache_source``: "sysfs" | "sysconf" | "default"),
    torch's thread count, the ISA in use (FASTRNN_CPU_ISA or the best supported), the
    register tile's panel width, and costs micro-measured once per process (per ISA and
    thread count): one core's multiply-adds per ns, packing ns per weight element, a
    stepwise step's library-call ns, a parallel region's and a spin barrier's ns, and how
    much faster fastrnn's packed GEMM ran than at::mm (> 1: the batched GEMMs use it), and
    the bytes per ns one core's gemv kernel streams a weight larger than its L2 at, and that
    kernel's multiply-adds per ns where the weight is in L2 (its compute-bound rate).
    """
    keys = ("isa", "l1d_bytes", "l2_bytes", "l3_bytes", "cache_source", "threads", "panel_cols",
            "madd_per_ns", "pack_ns_per_element", "step_call_ns", "parallel_ns", "barrier_ns",
            "own_gemm_speedup", "stream_bytes_per_ns", "gemv_madd_per_ns")
    return dict(zip(keys, torch.ops.fastrnn._cpu_machine()))


def cpu_carry_stream_bytes_per_ns(rows: int) -> float:
    """Bytes per ns one core's in-place BPTT carry (W_hh read unpacked, ``rows`` rows of
    dz) streams a weight twice its L2 at, for the ISA in use: measured once per process
    and row count (capped at 16) at first use. The backward weighs it against packing
    W_hh (csrc/cpu/machine.h ``carry_stream_bytes_per_ns``)."""
    return torch.ops.fastrnn._cpu_carry_stream(rows)


def cpu_step_costs(backward: bool, rows: int, input_size: int, k: int, hidden_size: int) -> dict:
    """What the CPU path choice compares for a short sequence (csrc/cpu/machine.h), measured
    once per process and size at first use, ns: ``fused_step_ns``, one step of the fused
    rows kernel on ``rows`` rows of a packed [k, hidden_size] weight (the forward's k =
    input_size + hidden_size, or hidden_size), on one thread; and the stepwise path's
    (library GEMMs) call on ``rows`` rows, ``stepwise_fixed_ns`` + T * ``stepwise_step_ns``
    for T steps, on torch's threads."""
    keys = ("fused_step_ns", "stepwise_fixed_ns", "stepwise_step_ns")
    return dict(zip(keys, torch.ops.fastrnn._cpu_step_costs(backward, rows, input_size, k,
                                                             hidden_size)))


def cpu_buffer_cache() -> dict:
    """The CPU ops' buffer cache (csrc/cpu/block_cache.h): ``cached_bytes`` of free blocks
    held now, ``limit_bytes``, and since start the ``hits`` (requests served by a freed
    block) and ``misses`` (requests that allocated). The large outputs and temporaries of
    fastrnn's CPU ops (256 KiB and up) are kept for reuse when freed: glibc would give the
    freed top of its heap back to the OS and page-fault the next call's buffers in again."""
    keys = ("cached_bytes", "limit_bytes", "hits", "misses")
    return dict(zip(keys, torch.ops.fastrnn._cpu_block_cache()))


def set_cpu_buffer_cache_limit(limit_bytes: int) -> int:
    """Sets how many bytes of free blocks the CPU buffer cache may hold (0 turns it off:
    buffers then come from torch's CPU allocator) and returns the previous limit. The
    default is FASTRNN_CPU_CACHE_MB (MiB) when set, else 512 MiB."""
    return torch.ops.fastrnn._cpu_block_cache_limit(limit_bytes)


def empty_cpu_buffer_cache() -> None:
    """Returns every free block of the CPU buffer cache to the system."""
    torch.ops.fastrnn._cpu_block_cache_release()


def cpu_fma_peak(seconds: float = 0.2, threads: int | None = None) -> dict:
    """The FMA-throughput peak of the ISA in use, measured now: ``threads`` threads
    (default torch's) run a loop of independent vector FMAs for ``seconds``.
    ``wall_gflops``: all FLOPs / wall time; ``cpu_gflops``: the sum of each thread's FLOPs /
    its own CPU time (what the cores reach when the OS runs the threads; robust to load).
    """
    wall, cpu = torch.ops.fastrnn._cpu_fma_peak(seconds, threads or torch.get_num_threads())
    return {"wall_gflops": wall, "cpu_gflops": cpu, "threads": threads or torch.get_num_threads()}


# ---- CUDA kernels (on a GPU or in the cuda_sim simulation): the last launch -------------

_CUDA_PATHS = ("resident", "single", "grid", "gemm", "tiled")
# The order of fastrnn::_last_cuda_plan's fields (csrc/cuda/last_plan.h, LaunchRecord).
_CUDA_PLAN_FIELDS = ("target", "direction", "path", "blocks", "threads_per_block",
                     "tiles_per_step", "kpt", "ks", "rows_per_tile", "smem_bytes", "launches",
                     "steps", "batch", "hidden", "compute_dtype", "tile_cols", "micro_r",
                     "micro_c", "grid_barrier", "mma")


def last_cuda_plan() -> dict | None:
    """How the last CUDA (or ``cuda_sim``) recurrence on this thread was launched, or None.

    Keys: ``target`` ("cuda" or "cuda_sim"), ``direction`` ("fwd" or "bwd"), ``path``
    ("resident": one block keeping the state in shared memory; "single": one block staging
    the state per tile; "grid": a cooperative grid; "gemm": per-step GEMM + pointwise
    kernel; "tiled": batch x hidden tiles over the grid), ``blocks`` and
    ``threads_per_block`` of a launch, ``tiles_per_step`` (batch tiles a block stages per
    step), ``kpt`` / ``ks`` / ``rows_per_tile`` / ``smem_bytes``
    (the persistent kernel's template and shape; 0 on "gemm"), ``launches`` (kernel launches
    of the recurrence), ``steps`` / ``batch`` / ``hidden`` of the call and its
    ``compute_dtype``; on "tiled", ``rows_per_tile`` x ``tile_cols`` is a block's tile,
    ``micro_r`` x ``micro_c`` its kernel instantiation (a lane's micro tile) and
    ``grid_barrier`` True when the step ends in a grid.sync() (several column tiles), False
    when blocks only split the batch; ``mma``: the 16-bit operand type when the step runs on
    tensor cores (``micro_r`` x ``micro_c`` then count 16 x 16 fragments), else None. A
    forward and its backward are two records: the later one wins.
    """
    fields = torch.ops.fastrnn._last_cuda_plan()
    if not fields:
        return None
    plan = dict(zip(_CUDA_PLAN_FIELDS, fields))
    plan["target"] = ("cuda", "cuda_sim")[plan["target"]]
    plan["direction"] = ("fwd", "bwd")[plan["direction"]]
    plan["path"] = _CUDA_PATHS[plan["path"]]
    plan["grid_barrier"] = bool(plan["grid_barrier"])
    plan["mma"] = (None, torch.float16, torch.bfloat16)[plan["mma"]]
    plan["compute_dtype"] = torch.float64 if plan["compute_dtype"] == 8 else torch.float32
    return plan


# ---- CUDA: the measured choice per layer shape (fastrnn/_cuda_choice.py) ------------------

def cuda_choice() -> dict[str, dict]:
    """The choices the CUDA layers made in this process, by key text (device | dtype | shape
    bucket | direction | packed | training): ``candidate`` ("single", "grid", "gemm" or
    "cudnn"), ``source`` ("measured", "disk", "model" or "deterministic"), ``ranking``,
    ``seconds`` (measured per call), ``predicted_ns_per_step`` (cost model), ``refused``."""
    import dataclasses

    from . import _cuda_choice

    return {key.text(): dataclasses.asdict(choice)
            for key, choice in list(_cuda_choice.default_chooser.choices.items())}


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
