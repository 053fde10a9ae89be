"""Where Python meets the C++ ops: fake (meta) kernels and autograd for ``fastrnn::*``.

The schemas live in ``csrc/rnn_ops.cpp``; shapes and math in ``csrc/rnn.h``.
"""
from __future__ import annotations

import torch

from . import _C  # noqa: F401  (loading the library registers the ops)
from . import _double_backward, _op_glue

rnn_forward = torch.ops.fastrnn.rnn_forward
rnn_backward = torch.ops.fastrnn.rnn_backward


def _devices_with_kernels() -> frozenset[str]:
    keys = {"cpu": "CPU", "cuda": "CUDA"}
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    return frozenset(dev for dev, key in keys.items() if has("fastrnn::rnn_forward", key))


# Fixed once the library is loaded; a constant keeps torch.compile from tracing the query.
NATIVE_DEVICES = _devices_with_kernels()


def has_kernel(device_type: str) -> bool:
    """True when the native ops have a kernel for this device type ("cpu", "cuda")."""
    return device_type in NATIVE_DEVICES


torch.library.register_fake("fastrnn::rnn_forward")(_op_glue.fake_forward)
torch.library.register_fake("fastrnn::rnn_backward")(_op_glue.fake_backward)

rnn_stack = torch.ops.fastrnn._rnn_stack.default


@torch.library.register_fake("fastrnn::_rnn_stack")
def _fake_stack(input, hx, weights, num_layers, bidirectional, lengths, nonlinearity):
    from .functional import run_layers  # functional imports this module

    # The C++ kernel's checks (csrc/stack_ops.cpp), then the per-layer fake kernel's.
    D = 2 if bidirectional else 1
    if num_layers < 1:
        raise ValueError(f"fastrnn: num_layers must be >= 1, got {num_layers}")
    if len(weights) != 4 * num_layers * D:
        raise ValueError(f"fastrnn: weights must hold 4 entries (weight_ih, weight_hh, bias_ih, "
                         f"bias_hh) per layer and direction, {4 * num_layers * D} in all, got "
                         f"{len(weights)}")
    for i, w in enumerate(weights):
        if i % 4 < 2 and w is None:
            raise ValueError(f"fastrnn: weights[{i}] ({('weight_ih', 'weight_hh')[i % 4]}) must be a tensor")
    if input.dim() != 3:
        raise RuntimeError(f"fastrnn: input must be 3-D [T, B, I], got {input.dim()}-D with "
                           f"shape {tuple(input.shape)}")
    if hx is None:
        hx = input.new_zeros(num_layers * D, input.shape[1], weights[1].shape[0])  # [L * D, B, H]
    torch._check(hx.dim() == 3 and hx.shape[0] == num_layers * D,
                 lambda: f"fastrnn: hx must be [num_layers * num_directions = {num_layers * D}, B, H], "
                         f"got shape {list(hx.shape)}")
    groups = [weights[4 * k:4 * k + 4] for k in range(num_layers * D)]
    return run_layers(_op_glue.fake_forward, input, hx, groups, num_layers=num_layers,
                      bidirectional=bidirectional, nonlinearity=nonlinearity, dropout=0.0,
                      training=False, lengths=lengths)


# What functional.py calls: the op, differentiable under autograd and torch.func.
differentiable_rnn_forward = _op_glue.register_autograd("fastrnn::rnn_forward", rnn_backward)
_double_backward.forbid("fastrnn::rnn_backward")
