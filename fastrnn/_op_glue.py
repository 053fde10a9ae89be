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

import torch.autograd.forward_ad as _forward_ad

from . import _checks, _double_backward, reference

# backward(grad_output, input, hx, weight_ih, weight_hh, output, lengths, reverse,
#          nonlinearity, output_mask=[need_input, need_weights])  (fastrnn::rnn_backward's schema)
#   -> (grad_input, grad_hx, grad_weight_ih, grad_weight_hh, grad_bias)
BackwardCall = Callable[..., tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]


def fake_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
    # Also the kernel for any call with a 'meta' tensor among its arguments: check like the C++ op.
    _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    _checks.check_nonlinearity(nonlinearity)
    T, B, _ = input.shape
    return input.new_empty(T, B, weight_hh.shape[0])  # [T, B, H]


def fake_backward(grad_output, input, hx, weight_ih, weight_hh, output, lengths, reverse,
                  nonlinearity, output_mask):
    _checks.check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths)
    _checks.check_nonlinearity(nonlinearity)

    need_input, need_weights = output_mask

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


def _fold_vmap(op):
    """A vmap rule for ``op`` (rnn_forward's signature): rows are independent, so a vmapped
    input / hx / lengths with shared weights is one call on N*B rows instead of N calls.
    Batched weights (ensembles) run one call per slice."""

    def rule(info, in_dims, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
             nonlinearity):
        N = info.batch_size
        tensors = (input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
        x_dim, h_dim, *w_dims, len_dim = in_dims[:7]
        if any(d is not None for d in w_dims):
            outs = []
            for n in range(N):
                sliced = [t if d is None or t is None else t.select(d, n) for t, d in zip(tensors, in_dims)]
                outs.append(op(*sliced, reverse, nonlinearity))  # [T, B, H]
            return torch.stack(outs), 0

        def lead(t, d):  # [N, ...]: a batched tensor's vmap dim first, an unbatched one broadcast
            return t.movedim(d, 0) if d is not None else t.unsqueeze(0).expand(N, *t.shape)

        x = lead(input, x_dim)  # [N, T, B, I]
        _, T, B, I = x.shape
        H = weight_hh.shape[0]
        x = x.transpose(0, 1).reshape(T, N * B, I)  # [T, N*B, I]
        h = lead(hx, h_dim).reshape(N * B, H)  # [N*B, H]
        lens = None if lengths is None else lead(lengths, len_dim).reshape(N * B)  # [N*B]
        y = op(x, h, weight_ih, weight_hh, bias_ih, bias_hh, lens, reverse, nonlinearity)  # [T, N*B, H]
        return y.view(T, N, B, H), 1

    return rule


def register_autograd(forward_op, backward: BackwardCall) -> Callable[..., Tensor]:
    """Makes ``forward_op`` (a custom op with rnn_forward's signature) differentiable, and
    returns the differentiable entry point that functional.py calls.

    One backward, three ways in:
    * the op's own autograd (``torch.library.register_autograd``), used by torch.compile /
      torch.export, ``torch.jit.trace`` and anyone calling the op directly;
    * an ``autograd.Function`` with ``setup_context`` for torch.func transforms;
    * its twin in the ``forward(ctx, ...)`` form, whose forward calls the op below autograd,
      for plain eager calls (``_fast_eager``).
    Forward-mode AD (dual tensors, torch.func.jvp / jacfwd) runs the reference instead
    (``forward_mode_call``). The op's own registration cannot serve torch.func: torch.library builds an old-style Function (``forward(ctx, ...)``)
      that it applies *inside* the Autograd kernel, where functorch has already unwrapped
      its level, so ``torch.func.grad`` fails ("must override the setup_context
      staticmethod") for every Python-registered op autograd in this torch (2.14), its own
      ``custom_op`` included. Applied above the dispatcher, a Function is seen by functorch.
    Under torch.func the backward is differentiable (functorch always asks for
    ``create_graph``): ``_double_backward`` recomputes through the reference. vmap: the op's
    rule (``_fold_vmap``) folds the vmapped rows into the batch.
    """
    torch.library.register_autograd(forward_op, backward_fn := _make_backward(backward),
                                    setup_context=_setup_context)
    op = forward_op if isinstance(forward_op, torch._ops.OpOverload) else _resolve(forward_op)
    torch.library.register_vmap(forward_op, _fold_vmap(op))

    def forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
        return op(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity)

    def forward_below_autograd(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                               nonlinearity):
        with _below_autograd():
            return op(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity)

    function = type(f"RNNForward_{op.namespace}", (torch.autograd.Function,), {
        "forward": staticmethod(forward),
        "setup_context": staticmethod(_setup_context),
        "backward": staticmethod(backward_fn),
        "generate_vmap_rule": True,
    })

    def forward_with_ctx(ctx, *inputs):
        output = forward_below_autograd(*inputs)
        _setup_context(ctx, inputs, output)
        return output

    # Plain eager autograd (_fast_eager): the same forward, setup_context and backward, in the
    # forward(ctx, ...) form, because Function.apply binds a setup_context-style forward's
    # arguments with inspect.signature at every call (~60 us, as much as a T=4 recurrence).
    eager = type(f"RNNForwardEager_{op.namespace}", (torch.autograd.Function,), {
        "forward": staticmethod(forward_with_ctx),
        "backward": staticmethod(backward_fn),
    })

    def rnn_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
        # A constant under torch.compile (dynamo folds this query), so compiled graphs hold the op.
        out = forward_mode_call(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                                nonlinearity)
        if out is not None:
            return out
        if torch._C._are_functorch_transforms_active():
            return function.apply(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                                  nonlinearity)
        if _fast_eager(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths):
            if wants_grad(input, hx, weight_ih, weight_hh, bias_ih, bias_hh):
                return eager.apply(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                                   nonlinearity)
            return forward_below_autograd(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                                          reverse, nonlinearity)
        return op(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity)

    return rnn_forward


_below_autograd = torch._C._AutoDispatchBelowAutograd


def forward_mode_call(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                      nonlinearity) -> Tensor | None:
    """The layer's output through the reference when forward-mode AD is on for these
    arguments (``_forward_mode``), else None. Every differentiable entry point asks this
    first: the ops' own (``register_autograd``'s ``rnn_forward``) and the CUDA choice's."""
    if (_has_forward_tangent(input, hx, weight_ih, weight_hh, bias_ih, bias_hh)
            or (torch._C._are_functorch_transforms_active() and _under_functorch_jvp())):
        return _forward_mode(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                             nonlinearity)
    return None


def _forward_mode(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
    """Forward-mode AD (dual tensors, torch.func.jvp / jacfwd): no backend has a jvp, and a
    kernel would drop the tangent silently (nn.RNN supports forward AD), so these calls run
    the reference, plain torch ops that forward AD differentiates, after the op's checks."""
    _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    _checks.check_nonlinearity(nonlinearity)
    return reference.rnn_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                                 nonlinearity)


def _under_functorch_jvp() -> bool:
    """True inside a torch.func forward-mode transform (jvp, jacfwd, hessian's outer jacfwd)."""
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() == TransformType.Jvp for i in retrieve_all_functorch_interpreters())


def _has_forward_tangent(*tensors) -> bool:
    """True when forward-mode AD is on and some argument is a dual tensor (carries a tangent)."""
    if _forward_ad._current_level < 0:  # no dual level entered: the common case, one int compare
        return False
    return any(t is not None and _forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _fast_eager(*tensors) -> bool:
    """True where the op's own autograd registration can be skipped with the same result: plain
    eager calls. The op's autograd kernel (torch.library's, Python) costs tens of microseconds
    per call, as much as a whole small recurrence (benchmarks/README.md, "Small shapes"):
    without a gradient to record it only redispatches below autograd, and with one it wraps
    the same setup_context / backward in a Function that ``eager`` applies directly.
    Not taken where the op itself must appear: torch.compile / export graphs, a
    ``torch.jit.trace`` (the ONNX exporter's symbolic matches the op), and tensors with
    ``__torch_function__`` overrides (they must see the op).
    """
    # (None entries are skipped by the torch-function query)
    return not in_graph() and not torch._C._has_torch_function(tensors)


def plain_eager(*tensors) -> bool:
    """True for a plain eager call (``_fast_eager``) that only reverse-mode autograd may
    record: no torch.func transform and no forward-mode tangent. None entries are skipped."""
    return (_fast_eager(*tensors) and not torch._C._are_functorch_transforms_active()
            and not _has_forward_tangent(*tensors))


def wants_grad(*tensors) -> bool:
    """True when autograd would record a call on these tensors: grad mode on and one of them
    requires grad (None entries are skipped)."""
    return torch.is_grad_enabled() and torch._C._any_requires_grad(*tensors)


def in_graph() -> bool:
    """True while a graph is being recorded: torch.compile / torch.export (dynamo) or
    torch.jit.trace (the ONNX exporter's TorchScript path)."""
    return torch.compiler.is_compiling() or torch._C._get_tracing_state() is not None


def _resolve(forward_op) -> torch._ops.OpOverload:
    """The OpOverload of a qualified name ("ns::op") or of a torch.library.custom_op."""
    if isinstance(forward_op, str):
        namespace, name = forward_op.split("::")
        return getattr(getattr(torch.ops, namespace), name).default
    return forward_op._opoverload


def _make_backward(backward: BackwardCall):
    def _backward(ctx, grad_output: Tensor):
        input, hx, weight_ih, weight_hh, output, lengths, bias_ih, bias_hh = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward
            return _double_backward.differentiable_backward(
                grad_output, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                ctx.reverse, ctx.nonlinearity, needs)
        need_input = needs[0]
        need_weights = any(needs[2:6])
        # Grad is off here, so the backward op's autograd kernel would only forbid double
        # backward (handled above): call the op below it.
        with _below_autograd():
            gx, ghx, gw_ih, gw_hh, gb = backward(
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

    return _backward
