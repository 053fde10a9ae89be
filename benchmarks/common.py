"""Shared by the CPU benchmarks: the table's shapes, twin models, FLOP counts, and the
machine record every results JSON carries (machine_metadata)."""
from __future__ import annotations

import datetime
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import fastrnn  # noqa: E402  (the checkout's fastrnn, next to benchmarks/)

# (T, B, I, H) -> (inference target, training target): speedup over torch.nn.RNN (issue 3)
TARGETS = {
    (128, 8, 64, 64): (5.0, 10.0),
    (64, 32, 128, 128): (4.0, 8.0),
    (2048, 4, 32, 32): (5.0, 20.0),
    (256, 32, 256, 256): (2.0, 3.0),
    (128, 64, 1024, 1024): (2.0, 2.5),
}
SHAPES = list(TARGETS)


def shape_id(shape) -> str:
    T, B, I, H = shape
    return f"T{T}-B{B}-I{I}-H{H}"


def twins(shape, seed=0):
    """(torch.nn.RNN, fastrnn.RNN) with identical weights, fp32, tanh, one layer, and the input."""
    T, B, I, H = shape
    torch.manual_seed(seed)
    ref = torch.nn.RNN(I, H)
    ours = fastrnn.RNN(I, H)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)  # [T, B, I]
    return ref, ours, x


def forward_flops(shape) -> int:
    """Multiply-adds x 2 of x W_ih^T over all steps plus h W_hh^T per step."""
    T, B, I, H = shape
    return 2 * T * B * (I * H + H * H)


def training_flops(shape) -> int:
    """Forward + BPTT: the backward has twice the forward's GEMM work (dx, dW_ih, carry, dW_hh)."""
    return 3 * forward_flops(shape)


def inference_step(model, x):
    """One forward pass without autograd."""
    def step():
        with torch.no_grad():
            model(x)
    return step


def training_step(model, x):
    """Forward + backward w.r.t. the input and every parameter, with a fixed output gradient."""
    x = x.detach().clone().requires_grad_()
    with torch.no_grad():
        y, _ = model(x)
    dy = torch.randn_like(y)

    def step():
        model.zero_grad(set_to_none=True)
        x.grad = None
        y, _ = model(x)
        y.backward(dy)
    return step


def cpu_model() -> str:
    """The CPU's model name (fastrnn's own reader, so every report names the CPU alike)."""
    from fastrnn._report import cpu_model as read

    return read()


def _commit() -> dict:
    """The checkout's commit, and whether the working tree had changes (results of a dirty
    tree are not reproducible from the commit alone)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def kernel_isa() -> str:
    """The ISA fastrnn's CPU kernels run with here (FASTRNN_CPU_ISA, else the widest the CPU
    has), read from the plan of one tiny call (fastrnn.backends.last_cpu_plan)."""
    x = torch.zeros(1, 1, 1)
    torch.ops.fastrnn.rnn_forward(x, torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1),
                                  None, None, None, False, "tanh")
    return fastrnn.backends.last_cpu_plan()["isa"]


def machine_metadata(fma_peak_gflops: float | None = None) -> dict:
    """What a benchmark result needs beside its numbers to be read: the CPU, the ISA the
    kernels used, the thread count, the FMA peak (GFLOP/s of the threads used, measured by
    the caller; None when not measured) and the commit."""
    return {
        "cpu_model": cpu_model(),
        "isa": kernel_isa(),
        "threads": torch.get_num_threads(),
        "fma_peak_gflops": fma_peak_gflops,
        "torch": torch.__version__,
        **_commit(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
