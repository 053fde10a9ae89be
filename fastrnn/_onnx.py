"""ONNX export of ``fastrnn::rnn_forward``: the standard ONNX ``RNN`` operator, for both exporters.

Registered when fastrnn is imported, so ``torch.onnx.export(model, ...)`` of a model holding
fastrnn.RNN / RNNCell just works:

* the TorchScript exporter (``dynamo=False``): a symbolic, ``torch.onnx.register_custom_op_symbolic``;
* the dynamo exporter (``dynamo=True``, the default): an onnxscript function in onnxscript's
  torchlib registry, which the exporter reads at every export. onnxscript takes seconds to
  import, so it is registered when onnxscript's registry module is first imported (by the
  exporter), or at once if it already is; without onnxscript there is nothing to register.

One graph, written once (``_rnn_graph``) against a tiny emitter interface that each exporter
implements. The contract (csrc/rnn.h) differs from ONNX's in one place: at an inactive step
(t >= L_b) fastrnn's y carries the state (forward: the row's final state; reverse: h0), ONNX's Y
is zero there. The graph selects with a mask, so h_n = y[-1] / y[0] stays right downstream.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

import torch

_OP = "fastrnn::rnn_forward"
_OPSET = 14  # ONNX RNN as of opset 14; Unsqueeze/Squeeze take axes as an input from 13
_INT32 = 6  # onnx.TensorProto.INT32: RNN's sequence_lens type


def _rnn_graph(e, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse: bool,
               nonlinearity: str, hidden_size: int):
    """fastrnn::rnn_forward as ONNX ops. ``e`` emits: e.op(name, *inputs, outputs=1, **attrs),
    e.ints(values) (an int64 1-D constant), e.none() (an omitted optional input)."""
    zero, one, two = e.ints([0]), e.ints([1]), e.ints([2])
    W = e.op("Unsqueeze", weight_ih, zero)  # [1, H, I]
    R = e.op("Unsqueeze", weight_hh, zero)  # [1, H, H]
    # ONNX wants Wb ++ Rb and sums them itself; fastrnn's b_ih + b_hh is the same thing.
    B = e.none() if bias_ih is None else e.op("Unsqueeze", e.op("Concat", bias_ih, bias_hh, axis=0), zero)  # [1, 2H]
    h0 = e.op("Unsqueeze", hx, zero)  # [1, B, H]
    T = e.op("Shape", input, start=0, end=1)  # [1]
    seq = e.none()
    if lengths is not None:
        # ONNX Runtime requires 1 <= L_b <= T; fastrnn accepts any L_b (rnn.h). The mask
        # below restores fastrnn's meaning for L_b <= 0 (the row never updates).
        seq = e.op("Cast", e.op("Max", e.op("Min", lengths, T), one), to=_INT32)  # [B] int32
    Y, Y_h = e.op("RNN", input, W, R, B, seq, h0, outputs=2, hidden_size=hidden_size,
                  activations=["Tanh" if nonlinearity == "tanh" else "Relu"],
                  direction="reverse" if reverse else "forward")
    y = e.op("Squeeze", Y, one)  # [T, B, H]  (Y: [T, directions=1, B, H])
    if lengths is None:
        return y
    steps = e.op("Range", e.op("Squeeze", zero, zero), e.op("Squeeze", T, zero), e.op("Squeeze", one, zero))  # [T]
    active = e.op("Less", e.op("Unsqueeze", steps, one), e.op("Unsqueeze", lengths, zero))  # [T, B]
    active = e.op("Unsqueeze", active, two)  # [T, B, 1]
    if reverse:  # steps t >= L_b come first in reverse and carry h0
        carry = hx  # [B, H]
    else:  # after its last step a row carries its final state (h0 if it never started)
        started = e.op("Unsqueeze", e.op("Greater", lengths, e.op("Squeeze", zero, zero)), one)  # [B, 1]
        carry = e.op("Where", started, e.op("Squeeze", Y_h, zero), hx)  # [B, H]
    return e.op("Where", active, y, carry)  # [T, B, H]


# ----------------------------------------------------------------------------- TorchScript exporter


class _TorchScriptEmitter:
    _SUFFIX = {int: "_i", str: "_s", float: "_f"}

    def __init__(self, g):
        self.g = g

    def op(self, name, *inputs, outputs=1, **attrs):
        typed = {}
        for key, value in attrs.items():
            kind = type(value[0]) if isinstance(value, list) else type(value)
            typed[key + self._SUFFIX[kind]] = value
        return self.g.op(name, *inputs, outputs=outputs, **typed)

    def ints(self, values):
        return self.g.op("Constant", value_t=torch.tensor(values, dtype=torch.int64))

    def none(self):
        n = self.g.op("prim::Constant")
        n.setType(torch._C.OptionalType.ofTensor())
        return n


def _torchscript_symbolic(g, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse,
                          nonlinearity):
    from torch.onnx import symbolic_helper as sh

    def optional(v):
        return None if sh._is_none(v) else v

    H = sh._get_tensor_sizes(weight_hh)[0]
    if H is None:
        raise RuntimeError("fastrnn ONNX export: weight_hh needs a static shape [H, H]")
    return _rnn_graph(_TorchScriptEmitter(g), input, hx, weight_ih, weight_hh, optional(bias_ih),
                      optional(bias_hh), optional(lengths), bool(sh._maybe_get_const(reverse, "b")),
                      sh._maybe_get_const(nonlinearity, "s"), H)


# ----------------------------------------------------------------------------- dynamo exporter


class _OnnxscriptEmitter:
    def __init__(self, op):
        self._op = op

    def op(self, name, *inputs, outputs=1, **attrs):
        result = getattr(self._op, name)(*inputs, **attrs)
        if outputs == 1 and isinstance(result, tuple):
            return result[0]
        return result

    def ints(self, values):
        return self._op.Constant(value_ints=values)

    def none(self):
        return None


def _register_onnxscript() -> None:
    from onnxscript import FLOAT, DOUBLE, FLOAT16, INT64, opset18
    from onnxscript.function_libs.torch_lib.registration import torch_op

    del FLOAT, DOUBLE, FLOAT16, INT64  # the types ONNX RNN computes; the exporter checks them

    @torch_op(_OP, trace_only=True)
    def fastrnn_rnn_forward(input, hx, weight_ih, weight_hh, bias_ih=None, bias_hh=None,
                            lengths=None, reverse: bool = False, nonlinearity: str = "tanh"):
        H = weight_hh.shape[0]
        return _rnn_graph(_OnnxscriptEmitter(opset18), input, hx, weight_ih, weight_hh, bias_ih,
                          bias_hh, lengths, reverse, nonlinearity, H)


_ONNXSCRIPT_REGISTRY = "onnxscript.function_libs.torch_lib.registration"


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Runs _register_onnxscript right after onnxscript's torchlib registry module is imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _ONNXSCRIPT_REGISTRY:
            return None
        sys.meta_path.remove(self)  # one shot; the real finders locate the module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register_onnxscript()

        spec.loader.exec_module = exec_then_register
        return spec


def register() -> None:
    """Called once by ``import fastrnn``."""
    torch.onnx.register_custom_op_symbolic(_OP, _torchscript_symbolic, _OPSET)
    if _ONNXSCRIPT_REGISTRY in sys.modules:
        _register_onnxscript()
    else:
        sys.meta_path.insert(0, _RegisterAfterImport())
