"""The ``cuda_sim`` backend: the CUDA kernels executed by a SIMT simulation on CPU tensors.

``fastrnn_cuda_sim::rnn_forward`` / ``rnn_backward`` run the CUDA host code (launch plan,
GEMMs, persistent or per-step kernels: ``csrc/cuda/recurrence_host.h``) for a simulated
GPU (``FASTRNN_SIM_DEVICE``: ``h100`` by default, or ``a100``), and the kernels themselves
(the same source nvcc compiles, ``csrc/cuda/*_body.cuh``) on the CPU, every thread of every
block as a fiber, with bounds and race checks (``csrc/sim/``). ``FASTRNN_CUDA_PATH``
forces a path as on a GPU; ``fastrnn.backends.last_cuda_plan()`` tells which one ran.

A debugging and verification backend: thousands of times slower than the native CPU
kernels. Contract and math: ``csrc/rnn.h``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loading the library registers the ops)
from . import _double_backward, _op_glue

_backward_op = torch.ops.fastrnn_cuda_sim.rnn_backward

torch.library.register_fake("fastrnn_cuda_sim::rnn_forward")(_op_glue.fake_forward)
torch.library.register_fake("fastrnn_cuda_sim::rnn_backward")(_op_glue.fake_backward)

# The op, differentiable under autograd and torch.func (the native ops' glue, _ops.py).
_differentiable_forward = _op_glue.register_autograd("fastrnn_cuda_sim::rnn_forward", _backward_op)
_double_backward.forbid("fastrnn_cuda_sim::rnn_backward")


def check_device(device: torch.device) -> None:
    if device.type != "cpu":
        raise RuntimeError(
            "fastrnn: backend='cuda_sim' simulates the CUDA kernels on CPU tensors, got input on "
            f"'{device}'; move the model and input to the CPU, or use backend='auto' on a GPU"
        )


def rnn_forward(
    input: Tensor,  # [T, B, I]
    hx: Tensor,  # [B, H]
    weight_ih: Tensor,  # [H, I]
    weight_hh: Tensor,  # [H, H]
    bias_ih: Tensor | None,  # [H]
    bias_hh: Tensor | None,  # [H]
    lengths: Tensor | None,  # [B] int64
    reverse: bool,
    nonlinearity: str,
) -> Tensor:  # [T, B, H]
    """fastrnn::rnn_forward through the simulated CUDA kernels; differentiable."""
    check_device(input.device)
    return _differentiable_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                                   bool(reverse), nonlinearity)


def device() -> dict:
    """The simulated GPU's properties, as the launch plan sees them."""
    keys = ("sm_count", "smem_per_block", "smem_per_block_optin", "static_smem", "smem_per_sm",
            "regs_per_sm", "max_threads_per_sm", "max_blocks_per_sm", "cooperative_launch")
    props = dict(zip(keys, torch.ops.fastrnn_cuda_sim._device_properties()))
    props["cooperative_launch"] = bool(props["cooperative_launch"])
    props["name"] = torch.ops.fastrnn_cuda_sim._device_name()
    return props
