"""torch.jit.script support: scriptable twins of fastrnn.RNN and fastrnn.RNNCell.

The eager modules are written for Python (PackedSequence, autocast, backend choice, getattr by
name); TorchScript cannot compile them. ``torch.jit.script`` calls ``__prepare_scriptable__``
on every module first, and fastrnn's modules answer with these twins: the same Parameter
objects under the same names (state_dict is unchanged), and a TorchScript forward modelled on
nn.RNN's scripted one that calls the native op ``fastrnn::rnn_forward`` / ATen's cell.

Scripted: tensor input (batched or not), optional hx, batch_first, layers, bidirectional,
dropout, both nonlinearities, bias or not. Not scripted: backends other than the native one
(an error naming the alternatives), PackedSequence input (TorchScript refuses it at the
``input: Tensor`` argument; README, "Deploying", names the alternatives: trace or export).

torch.jit.script swaps the prepared twin into the *eager* model too (torch replaces children
with what __prepare_scriptable__ returns, even when scripting then fails), so a twin called
eagerly hands the call back to the original module, which keeps all of its behaviour there,
and the attributes a twin lacks are the original's (``_Twin``).
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_ALTERNATIVES = "use torch.jit.trace, torch.export.export or torch.compile instead"


def check_scriptable(module: nn.Module, weight_names) -> None:
    name = type(module).__name__
    if module.backend not in ("auto", "native"):
        raise RuntimeError(
            f"fastrnn: torch.jit.script runs the native kernels; {name} with "
            f"backend={module.backend!r} cannot be scripted ({_ALTERNATIVES})"
        )
    computed = [w for w in weight_names if w not in module._parameters]
    if computed:  # parametrizations (which torch cannot script either) or pruning's hooks
        raise RuntimeError(
            f"fastrnn: {name} computes {computed} from other tensors (a parametrization or a "
            f"pruning hook), which torch.jit.script cannot compile; {_ALTERNATIVES}"
        )


def _eager_with_twin_state(twin: nn.Module) -> nn.Module:
    """The original module, given the twin's state: torch.jit.script put the twin in the eager
    model, so .train()/.eval() and .to() reach the twin, not the original (which is no
    submodule); its mode and current Parameters are handed over first."""
    eager = twin.__dict__["_eager"][0]
    eager.train(twin.training)
    for name, param in twin._parameters.items():
        eager._parameters[name] = param
    return eager


def _holder(original: nn.Module) -> tuple:
    """How a twin holds its original module: in a 1-tuple, not as a Module attribute, which
    torch.jit.script's preparation would visit (and replace with the twin itself, from its
    memo) and which would be a submodule. Set last in __init__: from then on the names the
    twin lacks are looked up on the original (_Twin), register_parameter's check included."""
    return (original,)


class _Twin(nn.Module):
    """What the twins share in the eager model: a call runs the original module's forward, and
    every attribute the twin does not have is the original's (flatten_parameters, all_weights,
    reset_parameters, backend, ...: code written for nn.RNN keeps working after scripting,
    whether scripting succeeded or not). The scripted forward never reaches these."""

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("__") or "_eager" not in self.__dict__:
                raise
            return getattr(_eager_with_twin_state(self), name)

    def extra_repr(self) -> str:
        return self.__dict__["_eager"][0].extra_repr()


class ScriptRNN(_Twin):
    __constants__ = ["input_size", "hidden_size", "num_layers", "nonlinearity", "bias",
                     "batch_first", "dropout", "bidirectional", "num_directions", "per_direction"]

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        check_scriptable(rnn, rnn._flat_weights_names)
        for name in ("input_size", "hidden_size", "num_layers", "nonlinearity", "bias",
                     "batch_first", "dropout", "bidirectional", "num_directions"):
            setattr(self, name, getattr(rnn, name))
        self.per_direction = 4 if rnn.bias else 2
        for name in rnn._flat_weights_names:
            self.register_parameter(name, rnn._parameters[name])
        # The same tensors, in layer/direction order, for the compiled loop (no getattr by name).
        self._flat_weights: List[Tensor] = [rnn._parameters[n] for n in rnn._flat_weights_names]
        self.train(rnn.training)
        self.__dict__["_eager"] = _holder(rnn)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        # Tensor input only: TorchScript rejects a PackedSequence at this argument ("Expected a
        # value of type 'Tensor' for argument 'input'"); the README says to trace or export.
        if not torch.jit.is_scripting():
            return _eager_with_twin_state(self)(input, hx)
        return self._forward_tensor(input, hx)

    def _forward_tensor(self, input: Tensor, hx: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        if input.dim() != 2 and input.dim() != 3:
            raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
        batched = input.dim() == 3
        if batched:
            if hx is not None and hx.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            x = input.transpose(0, 1) if self.batch_first else input  # [T, B, I]
        else:
            if hx is not None and hx.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
            x = input.unsqueeze(1)  # [T, 1, I]
            if hx is not None:
                hx = hx.unsqueeze(1)
        if x.size(2) != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.size(2)}")
        if x.size(0) == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        D = self.num_directions
        expected = [self.num_layers * D, x.size(1), self.hidden_size]
        if hx is None:
            h0 = torch.zeros(expected, dtype=x.dtype, device=x.device)  # [L * D, B, H]
        else:
            if hx.size() != expected:
                raise RuntimeError(f"Expected hidden size {expected}, got {hx.size()}")
            h0 = hx
        layer_input = x
        h_n: List[Tensor] = []
        for layer in range(self.num_layers):
            outs: List[Tensor] = []
            for direction in range(D):
                k = (layer * D + direction) * self.per_direction
                b_ih: Optional[Tensor] = None
                b_hh: Optional[Tensor] = None
                if self.bias:
                    b_ih = self._flat_weights[k + 2]
                    b_hh = self._flat_weights[k + 3]
                y = torch.ops.fastrnn.rnn_forward(
                    layer_input, h0[layer * D + direction], self._flat_weights[k], self._flat_weights[k + 1],
                    b_ih, b_hh, None, direction == 1, self.nonlinearity)  # [T, B, H]
                outs.append(y)
                h_n.append(y[0] if direction == 1 else y[-1])
            layer_input = outs[0] if D == 1 else torch.cat(outs, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, p=self.dropout, training=True)
        out, h = layer_input, torch.stack(h_n)
        if not batched:
            return out.squeeze(1), h.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h


class ScriptRNNCell(_Twin):
    __constants__ = ["input_size", "hidden_size", "nonlinearity"]

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        check_scriptable(cell, ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.nonlinearity = cell.nonlinearity
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            self.register_parameter(name, cell._parameters[name])
        self.train(cell.training)
        self.__dict__["_eager"] = _holder(cell)

    def forward(self, input: Tensor, hx: Optional[Tensor] = None) -> Tensor:
        if not torch.jit.is_scripting():
            return _eager_with_twin_state(self)(input, hx)
        if input.dim() != 1 and input.dim() != 2:
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() != 1 and hx.dim() != 2:
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # [B, I]
        if hx is None:
            h = torch.zeros(x.size(0), self.hidden_size, dtype=x.dtype, device=x.device)  # [B, H]
        else:
            h = hx if batched else hx.unsqueeze(0)
        if self.nonlinearity == "tanh":
            out = torch.rnn_tanh_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        else:
            out = torch.rnn_relu_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return out if batched else out.squeeze(0)
