"""Gradients of gradients (``create_graph=True``) for ``fastrnn::rnn_forward``.

``fastrnn::rnn_backward`` is a fused kernel with no derivative of its own. When autograd
asks for a differentiable backward (grad mode is on inside a backward function exactly
when the caller passed ``create_graph=True``: gradient penalties, Hessian-vector
products), the backward of ``_op_glue.register_autograd`` comes here instead: the forward is recomputed with the
plain-PyTorch reference and differentiated by autograd, which keeps the graph. Slower
than the kernel, but exact, and only used when a second derivative was asked for.
Calling ``rnn_backward`` itself with inputs that require grad raises a clear error.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import reference


def differentiable_backward(
    grad_output: Tensor,  # [T, B, H]
    input: Tensor,  # [T, B, I]
    hx: Tensor,  # [B, H]
    weight_ih: Tensor,  # [H, I]
    weight_hh: Tensor,  # [H, H]
    bias_ih: Tensor | None,  # [H]
    bias_hh: Tensor | None,  # [H]
    lengths: Tensor | None,  # [B]
    reverse: bool,
    nonlinearity: str,
    needs_input_grad: tuple[bool, ...],
) -> tuple[Tensor | None, ...]:
    """The 9 gradients of rnn_forward's inputs, as differentiable functions of them."""
    args = (input, hx, weight_ih, weight_hh, bias_ih, bias_hh)
    wanted = [i for i, t in enumerate(args) if t is not None and needs_input_grad[i]]

    def forward(*chosen: Tensor) -> Tensor:  # [T, B, H]
        full = list(args)
        for i, t in zip(wanted, chosen):
            full[i] = t
        return reference.rnn_forward(*full, lengths, reverse, nonlinearity)

    # torch.func.vjp, not torch.autograd.grad: it keeps the graph for an outer autograd
    # (create_graph=True) and also works under torch.func transforms, whose tensors are
    # not leaves of the plain autograd graph.
    with torch.enable_grad():
        _, pullback = torch.func.vjp(forward, *(args[i] for i in wanted))
        grads = pullback(grad_output)
    out: list[Tensor | None] = [None] * 9
    for i, g in zip(wanted, grads):
        out[i] = g if g is not None else torch.zeros_like(args[i])
    return tuple(out)


def _no_grad_of_backward(ctx, *grads):
    raise RuntimeError(
        "fastrnn: rnn_backward has no derivative. For gradients of gradients, "
        "differentiate fastrnn.RNN / rnn_forward with create_graph=True (fastrnn then "
        "differentiates through fastrnn.reference), or use backend='reference'."
    )


def _setup_nothing(ctx, inputs, output):
    pass


def forbid(backward_op) -> None:
    """Makes a direct, differentiated call of a backward op fail loudly, not silently wrong."""
    torch.library.register_autograd(backward_op, _no_grad_of_backward, setup_context=_setup_nothing)
