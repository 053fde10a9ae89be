"""What every backend's op pair shares on the Python side: fake kernels and autograd.

A backend provides ``rnn_forward`` (contract: csrc/rnn.h) and a backward op; the native
C++/CUDA ops (``fastrnn::*``, glued in ``_ops.py``) and the Triton ops
(``fastrnn_triton::*``, in ``triton/ops.py``) both register these same functions, so the
checks, saved tensors and gradient plumbing are written once.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from . import _checks, _double_backward

# backward(grad_output, input, hx, weight_ih, weight_hh, output, lengths, reverse,
#          nonlinearity, need_input, need_weights)
#   -> (grad_input, grad_hx, grad_weight_ih, grad_weight_hh, grad_bias)
BackwardCall = Callable[..., tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]


def fake_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
    # Also the kernel for any call with a 'meta' tensor among its arguments: check like the C++ op.
    _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    _checks.check_nonlinearity(nonlinearity)
    T, B, _ = input.shape
    return input.new_empty(T, B, weight_hh.shape[0])  # [T, B, H]


def fake_backward(grad_output, input, hx, weight_ih, weight_hh, output, lengths, reverse,
                  nonlinearity, need_input: bool, need_weights: bool):
    _checks.check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths)
    _checks.check_nonlinearity(nonlinearity)

    def maybe(needed, shape):  # a skipped gradient is a fresh [0] tensor (no aliasing)
        return input.new_empty(shape if needed else (0,))

    H = weight_hh.shape[0]
    return (
        maybe(need_input, input.shape),  # [T, B, I]
        hx.new_empty(hx.shape),  # [B, H]
        maybe(need_weights, weight_ih.shape),  # [H, I]
        maybe(need_weights, weight_hh.shape),  # [H, H]
        maybe(need_weights, (H,)),  # [H]
    )


def _setup_context(ctx, inputs, output):
    input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity = inputs
    # y alone gives act' (tanh' = 1 - y^2, relu' = [y > 0]) and every h_prev; the biases are
    # kept (no copy) only for a double backward, which recomputes the forward.
    ctx.save_for_backward(input, hx, weight_ih, weight_hh, output, lengths, bias_ih, bias_hh)
    ctx.has_bias = bias_ih is not None
    ctx.reverse = reverse
    ctx.nonlinearity = nonlinearity


def register_autograd(forward_op, backward: BackwardCall) -> None:
    """Makes ``forward_op`` (a custom op with rnn_forward's signature) differentiable."""

    def _backward(ctx, grad_output: Tensor):
        input, hx, weight_ih, weight_hh, output, lengths, bias_ih, bias_hh = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return _double_backward.differentiable_backward(
                grad_output, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                ctx.reverse, ctx.nonlinearity, needs)
        need_input = needs[0]
        need_weights = any(needs[2:6])
        gx, ghx, gw_ih, gw_hh, gb = backward(
            grad_output, input, hx, weight_ih, weight_hh, output, lengths,
            ctx.reverse, ctx.nonlinearity, need_input, need_weights,
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

    torch.library.register_autograd(forward_op, _backward, setup_context=_setup_context)
