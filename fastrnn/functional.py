"""Functional form of the Elman RNN: one layer/direction, a whole stack, packed sequences.

Data flows one way: modules -> functional -> a backend's ``rnn_forward`` -> the kernel.
Every backend's ``rnn_forward`` has the contract of ``fastrnn::rnn_forward``
(``csrc/rnn.h``) and is differentiable.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _op_glue, _ops, backends, cuda_sim, reference

BACKENDS = ("auto", "native", "triton", "reference", "cuda_sim")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Maps ``auto`` to the fastest backend present for ``device``; checks explicit choices."""
    if backend not in BACKENDS:
        raise ValueError(f"fastrnn: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        if _ops.has_kernel(device.type):
            return "native"
        if device.type == "cuda" and backends.triton_usable("cuda"):
            return "triton"
        return "reference"
    if backend == "native" and not _ops.has_kernel(device.type):
        raise RuntimeError(
            f"fastrnn: backend='native' has no kernel for device '{device.type}' "
            "(was fastrnn built with CUDA? see README, 'Install'); use backend='auto'"
        )
    if backend == "triton" and not backends.triton_usable(device.type):
        note = backends.triton_status(device.type)["note"]
        raise RuntimeError(f"fastrnn: backend='triton' cannot run on '{device.type}' here: {note}")
    if backend == "cuda_sim":
        cuda_sim.check_device(device)
    return backend


def forward_fn(backend: str) -> Callable[..., Tensor]:
    """The ``rnn_forward`` of a resolved backend name."""
    if backend == "native":
        return _ops.differentiable_rnn_forward
    if backend == "triton":
        from .triton import rnn_forward

        return rnn_forward
    if backend == "cuda_sim":
        return cuda_sim.rnn_forward
    return reference.rnn_forward


def rnn_layer(
    input: Tensor,  # [T, B, I]
    hx: Tensor,  # [B, H]
    weight_ih: Tensor,  # [H, I]
    weight_hh: Tensor,  # [H, H]
    bias_ih: Tensor | None = None,  # [H]
    bias_hh: Tensor | None = None,  # [H]
    *,
    lengths: Tensor | None = None,  # [B] int64
    reverse: bool = False,
    nonlinearity: str = "tanh",
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:  # y [T, B, H], h_n [B, H]
    """One layer, one direction."""
    fwd = _layer_forward(backend, input, weight_hh)
    y = _unshared(fwd(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity))
    return y, (y[0] if reverse else y[-1])


def _unshared(y: Tensor) -> Tensor:
    """A layer's output as the caller may change it in place. Where autograd recorded the
    layer, its backward saved this very tensor (tanh' = 1 - y^2, h_prev = y_{t-1}): an in-place
    change by the caller (``nn.ReLU(inplace=True)`` after the RNN, ``masked_fill_``) would fail
    that backward's version check, or through ``.data`` change its gradients. nn.RNN returns a
    copy of its states, which the caller owns; so does this, in that case only (one memcpy
    beside a recurrence of T steps)."""
    if not y.requires_grad or _op_glue.in_graph():
        # Graphs (compile / export functionalize in-place changes; a trace, checked again under
        # no_grad by torch.jit.trace, must not gain a clone that only grad mode adds) keep the op.
        return y
    return y.clone()


def _layer_forward(backend: str, input: Tensor, weight_hh: Tensor) -> Callable[..., Tensor]:
    """The ``rnn_forward`` that runs a layer of ``input`` [T, B, I] for the user's ``backend``
    (resolved once per call of rnn / rnn_layer: every layer of a stack has the same device, B, H)."""
    name = resolve_backend(backend, input.device)
    # The measured choice needs a shape to time; an empty batch or hidden size goes to the op.
    # Compiled graphs keep the op itself.
    if (backend == "auto" and name == "native" and input.is_cuda
            and input.shape[1] > 0 and weight_hh.shape[0] > 0 and not torch.compiler.is_compiling()):
        from . import _cuda_choice  # the measured choice: fastrnn's CUDA paths or cuDNN

        return _cuda_choice.rnn_forward
    return forward_fn(name)


def rnn(
    input: Tensor,  # [T, B, I], time-major, padded when lengths is given
    hx: Tensor | None,  # [L * D, B, H]; None: zeros
    weights: Sequence[Sequence[Tensor | None]],  # per layer and direction: (w_ih, w_hh, b_ih, b_hh)
    *,
    num_layers: int,
    bidirectional: bool,
    nonlinearity: str = "tanh",
    dropout: float = 0.0,
    training: bool = False,
    lengths: Tensor | None = None,  # [B] int64, on input's device
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:  # output [T, B, D * H], h_n [L * D, B, H]
    """A stack of layers; dropout between layers in training mode, as in nn.RNN."""
    D = 2 if bidirectional else 1
    if len(weights) != num_layers * D:
        raise ValueError(f"fastrnn: weights must hold one group per layer and direction, "
                         f"{num_layers * D} in all, got {len(weights)}")
    fwd = _layer_forward(backend, input, weights[0][1])
    weights = [w if len(w) == 4 else (*w, None, None) for w in weights]  # biases optional
    if (fwd is _ops.differentiable_rnn_forward and input.is_cpu
            and not (dropout > 0 and training and num_layers > 1)):
        flat = [w for group in weights for w in group]
        # Every tensor on the CPU (else the op's dispatch would pick another device's key,
        # which has no kernel, instead of the per-layer op's device error).
        if (all(w is None or w.is_cpu for w in flat) and (hx is None or hx.is_cpu)
                and _op_glue.plain_eager(input, hx, *flat)):
            # Nothing needs the layers one at a time: the whole stack in one native call
            # (csrc/stack_ops.cpp), the same per-layer ops without the Python around them;
            # a gradient is recorded by one C++ autograd node for the whole stack.
            return _ops.rnn_stack(input, hx, flat, num_layers, bidirectional, lengths, nonlinearity)
    if hx is None:
        hx = input.new_zeros(num_layers * D, input.shape[1], weights[0][1].shape[0])  # [L * D, B, H]
    output, h_n = run_layers(fwd, input, hx, weights, num_layers=num_layers,
                             bidirectional=bidirectional, nonlinearity=nonlinearity,
                             dropout=dropout, training=training, lengths=lengths)
    # The last layer's output goes to the caller (h_n and a bidirectional cat are fresh).
    return (output if bidirectional else _unshared(output)), h_n


def run_layers(fwd: Callable[..., Tensor], input: Tensor, hx: Tensor,
               weights: Sequence[Sequence[Tensor | None]], *, num_layers: int,
               bidirectional: bool, nonlinearity: str, dropout: float, training: bool,
               lengths: Tensor | None) -> tuple[Tensor, Tensor]:
    """rnn's loop over layers and directions, each a call of ``fwd`` (an ``rnn_forward``;
    weights: 4 per layer and direction). Also the shape function of the one-call stack
    (``_ops``' fake kernel runs it over the per-layer fake kernel)."""
    D = 2 if bidirectional else 1
    layer_input = input
    h_n: list[Tensor] = []
    for layer in range(num_layers):
        outs = []
        for direction in range(D):
            k = layer * D + direction
            reverse = direction == 1
            y = fwd(layer_input, hx[k], *weights[k], lengths, reverse, nonlinearity)  # [T, B, H]
            outs.append(y)
            h_n.append(y[0] if reverse else y[-1])
        layer_input = outs[0] if D == 1 else torch.cat(outs, dim=2)  # cat: a fresh tensor
        if dropout > 0 and training and layer < num_layers - 1:
            layer_input = F.dropout(layer_input, p=dropout, training=True)
    return layer_input, torch.stack(h_n)


def packed_to_padded(data: Tensor, batch_sizes: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    """PackedSequence data [N, I] -> (padded [T, B, I] in sorted order, lengths [B], index).

    Padding is zeros. ``padded_to_packed`` goes back. Eager CPU calls copy each step's rows
    in one pass into a cached buffer (``fastrnn::_packed_to_padded``; index None); traced,
    compiled or transformed code and other devices use index ops (``index`` maps each
    packed row to its flat position ``t * B + b`` in the padded tensor).
    """
    lengths = _active(batch_sizes).sum(0).to(device=data.device, dtype=torch.int64)  # [B]
    if _native_layout(data):
        return _PackedToPadded.apply(data, batch_sizes), lengths, None
    index = _padding_index(batch_sizes, data.device)  # [N]
    return _to_padded_by_index(data, batch_sizes, index), lengths, index


def padded_to_packed(padded: Tensor, index: Tensor | None, *,
                     batch_sizes: Tensor | None = None) -> Tensor:
    """padded [T, B, F] -> packed data [N, F] (inverse of packed_to_padded, given its index;
    where that was None, the PackedSequence's batch_sizes)."""
    if index is None:
        if batch_sizes is None:
            raise ValueError("fastrnn.functional.padded_to_packed: index is None (a native "
                             "packed_to_padded), so batch_sizes must be given")
        return _PaddedToPacked.apply(padded, batch_sizes)
    T, B, Fdim = padded.shape
    return padded.reshape(T * B, Fdim).index_select(0, index)


def _active(batch_sizes: Tensor) -> Tensor:  # -> [T, B] bool (CPU): row b active at step t
    return torch.arange(int(batch_sizes[0])).unsqueeze(0) < batch_sizes.unsqueeze(1)


def _padding_index(batch_sizes: Tensor, device: torch.device) -> Tensor:  # -> [N]
    """Each packed row's flat position t * B + b in the padded [T, B, ...] tensor."""
    return _active(batch_sizes).flatten().nonzero().squeeze(1).to(device)


def _to_padded_by_index(data: Tensor, batch_sizes: Tensor, index: Tensor) -> Tensor:
    T, B = batch_sizes.numel(), int(batch_sizes[0])
    # In place into fresh zeros: out-of-place index_copy clones the zeros first, which cost
    # 10x the copy itself (6.8 vs 0.6 ms at T=100, B=64, I=128 on one thread).
    padded = data.new_zeros(T * B, data.shape[1]).index_copy_(0, index, data)  # [T*B, I]
    return padded.view(T, B, data.shape[1])


def _native_layout(data: Tensor) -> bool:
    """True for plain eager CPU calls on plain tensors: the native conversions have no fake
    kernel and no ONNX form, so nothing that traces, compiles, transforms (torch.func) or
    intercepts (dispatch modes, tensor subclasses) may see them."""
    return (type(data) is torch.Tensor and data.device.type == "cpu" and _ops.has_kernel("cpu")
            and _op_glue._fast_eager(data) and torch._C._len_torch_dispatch_stack() == 0
            and not torch._C._are_functorch_transforms_active())


class _PackedToPadded(torch.autograd.Function):
    """fastrnn::_packed_to_padded. Linear: its jvp is itself on the tangent, its gradient
    _padded_to_packed (each is the other's adjoint), differentiable through _PaddedToPacked."""

    @staticmethod
    def forward(ctx, data, batch_sizes):
        ctx.batch_sizes = batch_sizes  # int64 [T], never differentiated
        return torch.ops.fastrnn._packed_to_padded(data, batch_sizes)  # [T, B, F]

    @staticmethod
    def backward(ctx, grad):  # grad [T, B, F]
        return _to_packed(grad, ctx.batch_sizes), None

    @staticmethod
    def jvp(ctx, tangent, _):  # tangent [N, F]
        return _to_padded(tangent, ctx.batch_sizes)


class _PaddedToPacked(torch.autograd.Function):
    """fastrnn::_padded_to_packed; its gradient is _packed_to_padded (zeros at the padding)."""

    @staticmethod
    def forward(ctx, padded, batch_sizes):
        if padded.shape[1] != int(batch_sizes[0]):  # the gradient is [T, batch_sizes[0], F]
            raise ValueError(f"fastrnn: padded has {padded.shape[1]} rows, the PackedSequence "
                             f"{int(batch_sizes[0])}")
        ctx.batch_sizes = batch_sizes
        return torch.ops.fastrnn._padded_to_packed(padded, batch_sizes)  # [N, F]

    @staticmethod
    def backward(ctx, grad):  # grad [N, F]
        return _to_padded(grad, ctx.batch_sizes), None

    @staticmethod
    def jvp(ctx, tangent, _):  # tangent [T, B, F]
        return _to_packed(tangent, ctx.batch_sizes)


# The gradients and tangents of the two: natively where _native_layout allows (a backward
# traced by compiled autograd, or a tensor subclass, takes the index ops).
def _to_padded(data: Tensor, batch_sizes: Tensor) -> Tensor:  # [N, F] -> [T, B, F]
    if _native_layout(data):
        return _PackedToPadded.apply(data, batch_sizes)
    return _to_padded_by_index(data, batch_sizes, _padding_index(batch_sizes, data.device))


def _to_packed(padded: Tensor, batch_sizes: Tensor) -> Tensor:  # [T, B, F] -> [N, F]
    if _native_layout(padded):
        return _PaddedToPacked.apply(padded, batch_sizes)
    return padded_to_packed(padded, _padding_index(batch_sizes, padded.device))
