"""Where Python meets the C++ ops: fake (meta) kernels and autograd for ``fastrnn::*``.

The schemas live in ``csrc/rnn_ops.cpp``; shapes and math in ``csrc/rnn.h``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _C  # noqa: F401  (loading the library registers the ops)
from . import _checks, _double_backward

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


@torch.library.register_fake("fastrnn::rnn_forward")
def _rnn_forward_fake(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
    # Also the kernel for any call with a 'meta' tensor among its arguments: check like the C++ op.
    _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    _checks.check_nonlinearity(nonlinearity)
    T, B, _ = input.shape
    return input.new_empty(T, B, weight_hh.shape[0])  # [T, B, H]


@torch.library.register_fake("fastrnn::rnn_backward")
def _rnn_backward_fake(grad_output, input, hx, weight_ih, weight_hh, output, lengths, reverse,
                       nonlinearity, output_mask):
    _checks.check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths)
    _checks.check_nonlinearity(nonlinearity)
    need_input, need_weights = output_mask

    def maybe(needed, like, shape):  # a skipped gradient is a fresh [0] tensor (no aliasing)
        return like.new_empty(shape if needed else (0,))

    H = weight_hh.shape[0]
    return (
        maybe(need_input, input, input.shape),  # [T, B, I]
        hx.new_empty(hx.shape),  # [B, H]
        maybe(need_weights, input, weight_ih.shape),  # [H, I]
        maybe(need_weights, input, weight_hh.shape),  # [H, H]
        maybe(need_weights, input, (H,)),  # [H]
    )


def _setup_context(ctx, inputs, output):
    input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity = inputs
    # y alone gives act' (tanh' = 1 - y^2, relu' = [y > 0]) and every h_prev; the biases are
    # kept (no copy) only for a double backward, which recomputes the forward.
    ctx.save_for_backward(input, hx, weight_ih, weight_hh, output, lengths, bias_ih, bias_hh)
    ctx.has_bias = bias_ih is not None
    ctx.reverse = reverse
    ctx.nonlinearity = nonlinearity


def _backward(ctx, grad_output: Tensor):
    input, hx, weight_ih, weight_hh, output, lengths, bias_ih, bias_hh = ctx.saved_tensors
    needs = ctx.needs_input_grad
    if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
        return _double_backward.differentiable_backward(
            grad_output, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
            ctx.reverse, ctx.nonlinearity, needs)
    need_input = needs[0]
    need_weights = any(needs[2:6])
    gx, ghx, gw_ih, gw_hh, gb = rnn_backward(
        grad_output, input, hx, weight_ih, weight_hh, output, lengths,
        ctx.reverse, ctx.nonlinearity, [need_input, need_weights],
    )
    gb = gb if ctx.has_bias and need_weights else None
    return (
        gx if need_input else None,
        ghx if needs[1] else None,
        gw_ih if need_weights else None,
        gw_hh if need_weights else None,
        gb,
        # A separate tensor: the two .grad fields must not alias (in-place clipping).
        gb.clone() if gb is not None else None,
        None,
        None,
        None,
    )


torch.library.register_autograd("fastrnn::rnn_forward", _backward, setup_context=_setup_context)
_double_backward.register()
