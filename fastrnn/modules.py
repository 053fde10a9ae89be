"""``fastrnn.RNN`` and ``fastrnn.RNNCell``: drop-in replacements for their torch.nn namesakes.

Same constructor arguments, parameter names, shapes, registration order and default
initialization (so the same seed gives the same weights, and ``load_state_dict``
works in both directions); the same inputs, outputs and errors. Only the kernels differ.
"""
from __future__ import annotations

import contextlib
import math
import numbers
import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import PackedSequence

from . import _ops, _script, functional

_NONLINEARITIES = ("tanh", "relu")
# RNNCell backends whose one step is ATen's cell (RNNCell.forward): an explicit 'triton' or
# 'reference' runs that backend's rnn_forward for the step.
def _check_nonlinearity(nonlinearity) -> None:
    if nonlinearity not in _NONLINEARITIES:
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def _check_size(name: str, value) -> int:
    """An int (or numpy/other integral scalar) > 0; bool is refused as a likely mistake."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")
    return int(value)


_NOT_GIVEN = object()  # an argument's default that tells "not passed" from any value


def _check_input_dtype(input: Tensor, weight: Tensor, error=ValueError) -> None:
    # nn.RNN raises ValueError here and nn.RNNCell RuntimeError (from its matmul): match each.
    if not input.is_floating_point():
        raise error(
            f"fastrnn: input must be a floating point tensor of the weights' dtype ({weight.dtype}), "
            f"got dtype {input.dtype}"
        )
    if input.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
        raise error(
            f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
            f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
        )


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The autocast dtype when autocast is on for this device type, else None."""
    if device_type not in ("cpu", "cuda") or not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def _autocast(x: Tensor, tensors):
    """nn.RNN under autocast runs in the autocast dtype (rnn_tanh / rnn_relu are on autocast's
    lower-precision list). fastrnn's ops have no autocast kernel, so the cast happens here, and
    the ops then run with autocast off: they pick their own compute precision (rnn.h)."""
    dtype = _autocast_dtype(x.device.type)
    if dtype is None:
        return tensors, contextlib.nullcontext()
    cast = [t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors]
    return cast, torch.autocast(x.device.type, enabled=False)


def _check_hx_like(hx: Tensor, x: Tensor) -> None:
    if hx.dtype != x.dtype and _autocast_dtype(x.device.type) is None:
        raise RuntimeError(f"fastrnn: hx must have the dtype of input ({x.dtype}), got {hx.dtype}")
    if hx.device != x.device:
        raise RuntimeError(f"fastrnn: hx must be on the device of input ({x.device}), got {hx.device}")


def _check_same_device(x: Tensor, weight: Tensor) -> None:
    if x.device != weight.device:
        raise RuntimeError(
            f"fastrnn: input is on {x.device} but the parameters are on {weight.device}; "
            "move the module with .to(device) or the input with input.to(device)"
        )


class RNN(nn.Module):
    r"""Multi-layer Elman RNN, :math:`h_t = \mathrm{act}(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})`.

    A drop-in for :class:`torch.nn.RNN`: see its documentation for the arguments,
    inputs and outputs. The one addition is the keyword ``backend``:

    * ``"auto"`` (default): the fused native kernel for the device (C++ on CPU, CUDA on
      GPU when built with CUDA), else Triton on GPU, else the reference loop;
    * ``"native"``, ``"triton"``, ``"reference"``: that backend, or an error if it cannot run
      (``fastrnn.backends.triton_status`` says why Triton cannot);
    * ``"cuda_sim"``: the CUDA kernels executed by a SIMT simulation on CPU tensors (slow; for
      debugging and verification, see ``fastrnn.cuda_sim``).

    One documented rule: the Triton kernels compute float32, float16 and bfloat16; with
    ``backend="triton"``, float64 runs the reference loop (the same contract, in float64).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
        proj_size=_NOT_GIVEN,
    ) -> None:
        super().__init__()
        if proj_size is not _NOT_GIVEN:  # nn.RNN refuses the argument whatever its value
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        input_size = _check_size("input_size", input_size)
        hidden_size = _check_size("hidden_size", hidden_size)
        num_layers = _check_size("num_layers", num_layers)
        _check_nonlinearity(nonlinearity)
        if not isinstance(dropout, numbers.Number) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an "
                f"element being zeroed, got {dropout!r}"
            )
        for name, flag in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} should be of type bool, got: {type(flag).__name__}")
        if backend not in functional.BACKENDS:
            raise ValueError(f"fastrnn: backend must be one of {functional.BACKENDS}, got {backend!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={dropout} and num_layers={num_layers}",
                stacklevel=2,
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.nonlinearity = nonlinearity
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.backend = backend

        factory = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                suffix = f"_l{layer}" + ("_reverse" if direction == 1 else "")
                shapes = [("weight_ih", (hidden_size, layer_in)), ("weight_hh", (hidden_size, hidden_size))]
                if bias:
                    shapes += [("bias_ih", (hidden_size,)), ("bias_hh", (hidden_size,))]
                for kind, shape in shapes:
                    self.register_parameter(kind + suffix, nn.Parameter(torch.empty(shape, **factory)))
                    self._flat_weights_names.append(kind + suffix)
        self._weight_groups = self._weight_name_groups()
        self.reset_parameters()

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    def reset_parameters(self) -> None:
        """nn.RNN's initialization, drawn in the same order: U(-1/sqrt(H), 1/sqrt(H))."""
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        per = 4 if self.bias else 2
        names = self._flat_weights_names
        return [[getattr(self, n) for n in names[i : i + per]] for i in range(0, len(names), per)]

    proj_size = 0  # nn.RNN's attribute (code shared with LSTMs reads it); a class attribute,
    # so that a module pickled before it existed has it too

    @property
    def _all_weights(self) -> list[list[str]]:
        """nn.RNN's attribute: the weight names per layer and direction."""
        return [list(group) for group in self._weight_name_groups()]

    @property
    def _flat_weights(self) -> list[Tensor | None]:
        """nn.RNN's attribute: the weights in _flat_weights_names order, as they are now (None
        for one that is deleted at the moment, as nn.RNN holds)."""
        return [getattr(self, name, None) for name in self._flat_weights_names]

    @_flat_weights.setter
    def _flat_weights(self, value) -> None:
        """Ignored: weight-drop code written for nn.RNN assigns the list after replacing
        weights; fastrnn reads every weight by name at each call, so there is nothing to set."""

    def _layer_weights(self) -> list[tuple[Tensor, Tensor, Tensor | None, Tensor | None]]:
        """Per layer and direction (w_ih, w_hh, b_ih, b_hh), read at every call (a
        parametrization or pruning hook recomputes them; nothing is cached)."""
        params = self._parameters
        out = []
        for group in self._weight_name_groups():
            # _parameters directly: nn.Module.__getattr__ is a Python call per weight. A
            # weight that is not there (parametrized, pruned) is whatever getattr says.
            ws = [params.get(name) for name in group]
            ws = [w if w is not None else getattr(self, name) for w, name in zip(ws, group)]
            out.append((ws[0], ws[1], None, None) if len(ws) == 2 else tuple(ws))
        return out

    def _weight_name_groups(self) -> tuple[tuple[str, ...], ...]:
        """_flat_weights_names per layer and direction: set once in __init__ (names never
        change); recomputed, not stored, for a module pickled before it existed (a forward
        under torch.compile must not mutate the module)."""
        groups = self.__dict__.get("_weight_groups")
        if groups is None:
            per = 4 if self.bias else 2
            names = self._flat_weights_names
            groups = tuple(tuple(names[i : i + per]) for i in range(0, len(names), per))
        return groups

    def flatten_parameters(self) -> None:
        """No-op, for code written for cuDNN's nn.RNN: fastrnn needs no flat weight buffer."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first is not False:
            s += f", batch_first={self.batch_first}"
        if self.dropout != 0:
            s += f", dropout={self.dropout}"
        if self.bidirectional is not False:
            s += f", bidirectional={self.bidirectional}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def forward(self, input, hx: Tensor | None = None):
        weights = self._layer_weights()
        weight0 = weights[0][0]
        if isinstance(input, PackedSequence):
            return self._forward_packed(input, hx, weights)
        if not isinstance(input, Tensor):
            raise TypeError(f"fastrnn.RNN: input must be a Tensor or PackedSequence, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"RNN: Expected input to be 2D or 3D, got {input.dim()}D tensor instead")
        _check_input_dtype(input, weight0)
        batched = input.dim() == 3
        if batched:
            if hx is not None and hx.dim() != 3:
                raise RuntimeError(f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            x = input.transpose(0, 1) if self.batch_first else input  # [T, B, I]
        else:
            if hx is not None and hx.dim() != 2:
                raise RuntimeError(f"For unbatched 2-D input, hx should also be 2-D but got {hx.dim()}-D tensor")
            x = input.unsqueeze(1)  # [T, 1, I]
            hx = hx.unsqueeze(1) if hx is not None else None
        self._check_input(x)
        hx = self._initial_state(x, hx, x.shape[1])
        out, h_n = self._run(x, hx, weights, lengths=None)
        if not batched:
            return out.squeeze(1), h_n.squeeze(1)
        return (out.transpose(0, 1) if self.batch_first else out), h_n

    def _forward_packed(self, input: PackedSequence, hx: Tensor | None, weights):
        data, batch_sizes, sorted_indices, unsorted_indices = input
        _check_input_dtype(data, weights[0][0])
        if data.dim() != 2:
            raise RuntimeError(f"input must have 2 dimensions, got {data.dim()}")
        padded, lengths, index = functional.packed_to_padded(data, batch_sizes)  # [T, B, I]
        self._check_input(padded)
        given = hx is not None
        hx = self._initial_state(padded, hx, padded.shape[1])
        if given and sorted_indices is not None:  # the user's batch order -> sorted order
            hx = hx.index_select(1, sorted_indices)
        out, h_n = self._run(padded, hx, weights, lengths=lengths)
        if unsorted_indices is not None:
            h_n = h_n.index_select(1, unsorted_indices)
        packed = PackedSequence(functional.padded_to_packed(out, index, batch_sizes=batch_sizes),
                                batch_sizes, sorted_indices, unsorted_indices)
        return packed, h_n

    def _check_input(self, x: Tensor) -> None:  # x [T, B, I]
        if x.shape[-1] != self.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {self.input_size}, got {x.shape[-1]}"
            )
        if x.shape[0] == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

    def _initial_state(self, x: Tensor, hx: Tensor | None, batch: int) -> Tensor | None:
        """hx [L * D, B, H] checked, or None (zeros: functional.rnn makes them where needed)."""
        if hx is None:
            return None
        expected = (self.num_layers * self.num_directions, batch, self.hidden_size)
        if tuple(hx.shape) != expected:
            raise RuntimeError(f"Expected hidden size {expected}, got {list(hx.shape)}")
        _check_hx_like(hx, x)
        return hx

    def _run(self, x: Tensor, hx: Tensor, weights, lengths: Tensor | None) -> tuple[Tensor, Tensor]:
        _check_same_device(x, weights[0][0])
        no_autocast = contextlib.nullcontext()
        if torch._C._is_any_autocast_enabled():
            flat, no_autocast = _autocast(x, [x, hx, *(w for layer in weights for w in layer)])
            x, hx = flat[0], flat[1]
            weights = [tuple(flat[2 + 4 * k : 6 + 4 * k]) for k in range(len(weights))]
        # An empty batch goes through the reference (its empty GEMMs are free), not a kernel
        # that may not launch on zero rows; autograd then gives nn.RNN's zero-filled gradients.
        with no_autocast:
            return functional.rnn(
                x, hx, weights,
                num_layers=self.num_layers, bidirectional=self.bidirectional,
                nonlinearity=self.nonlinearity, dropout=self.dropout, training=self.training,
                lengths=lengths, backend="reference" if x.shape[1] == 0 else self.backend,
            )

    def __prepare_scriptable__(self) -> nn.Module:
        """torch.jit.script compiles a twin with the same Parameters (fastrnn/_script.py)."""
        return _script.ScriptRNN(self)

    @classmethod
    def from_torch(cls, module: nn.RNN, *, backend: str = "auto") -> "RNN":
        """A fastrnn.RNN that shares ``module``'s Parameter objects (so optimizers keep working)."""
        if not isinstance(module, nn.RNN):
            raise TypeError(f"fastrnn.RNN.from_torch expects a torch.nn.RNN, got {type(module).__name__}")
        if getattr(module, "proj_size", 0):
            raise ValueError("fastrnn.RNN.from_torch: proj_size is not supported by nn.RNN either")
        new = cls(
            module.input_size, module.hidden_size, module.num_layers, module.nonlinearity,
            module.bias, module.batch_first, module.dropout, module.bidirectional,
            device="meta", backend=backend,
        )
        return _adopt_state(new, module, new._flat_weights_names)


class RNNCell(nn.Module):
    r"""Elman RNN cell, :math:`h' = \mathrm{act}(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})`.

    A drop-in for :class:`torch.nn.RNNCell` (one time step of :class:`RNN`), plus ``backend``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
        *,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        input_size = _check_size("input_size", input_size)
        hidden_size = _check_size("hidden_size", hidden_size)
        _check_nonlinearity(nonlinearity)
        if not isinstance(bias, bool):
            raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
        if backend not in functional.BACKENDS:
            raise ValueError(f"fastrnn: backend must be one of {functional.BACKENDS}, got {backend!r}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.nonlinearity = nonlinearity
        self.backend = backend
        factory = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty((hidden_size, input_size), **factory))
        self.weight_hh = nn.Parameter(torch.empty((hidden_size, hidden_size), **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        # One step is two small GEMMs and a tanh: a fused kernel cannot beat ATen's cell here,
        # and the per-call Python and dispatch overhead decides the speed (benchmarks/README.md,
        # "RNNCell"). So the common case calls ATen's step directly, as nn.RNNCell does, with
        # no more Python around it than nn.RNNCell has. Anything unusual (1-D input, autocast,
        # an explicit backend, a call ATen rejects) takes the checked path below, whose errors
        # are fastrnn's.
        if (input.dim() == 2 and (hx is None or hx.dim() == 2)
                and (self.backend == "auto" or (self.backend == "native" and _ops.has_kernel(input.device.type)))
                and not torch._C._is_any_autocast_enabled()):
            if hx is None:
                hx = torch.zeros(input.shape[0], self.hidden_size, dtype=input.dtype, device=input.device)
            step = torch.rnn_tanh_cell if self.nonlinearity == "tanh" else torch.rnn_relu_cell
            try:
                return step(input, hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)  # [B, H]
            except (RuntimeError, TypeError):
                pass  # the checked path raises the clear error
        return self._checked_forward(input, hx)

    def _checked_forward(self, input: Tensor, hx: Tensor | None) -> Tensor:
        if input.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(f"RNNCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        _check_input_dtype(input, self.weight_ih, error=RuntimeError)
        _check_same_device(input, self.weight_ih)
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)  # [B, I]
        if hx is None:
            h = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            h = hx if batched else hx.unsqueeze(0)  # [B, H]
        if x.shape[1] != self.input_size:
            raise RuntimeError(
                f"input has inconsistent input_size: got {x.shape[1]} expected {self.input_size}"
            )
        if tuple(h.shape) != (x.shape[0], self.hidden_size):
            raise RuntimeError(
                f"Expected hidden size {(x.shape[0], self.hidden_size)}, got {list(h.shape)}"
            )
        _check_hx_like(h, x)
        # Empty batch: the reference, as in RNN._run (nn.RNNCell's zero gradients included).
        (x, h, *weights), no_autocast = _autocast(
            x, [x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh])
        with no_autocast:
            out, _ = functional.rnn_layer(
                x.unsqueeze(0), h, *weights,
                nonlinearity=self.nonlinearity, backend="reference" if x.shape[0] == 0 else self.backend,
            )
        out = out[0]  # [B, H]
        return out if batched else out.squeeze(0)

    def __prepare_scriptable__(self) -> nn.Module:
        """torch.jit.script compiles a twin with the same Parameters (fastrnn/_script.py)."""
        return _script.ScriptRNNCell(self)

    @classmethod
    def from_torch(cls, module: nn.RNNCell, *, backend: str = "auto") -> "RNNCell":
        """A fastrnn.RNNCell that shares ``module``'s Parameter objects."""
        if not isinstance(module, nn.RNNCell):
            raise TypeError(f"fastrnn.RNNCell.from_torch expects a torch.nn.RNNCell, got {type(module).__name__}")
        new = cls(module.input_size, module.hidden_size, module.bias, module.nonlinearity,
                  device="meta", backend=backend)
        return _adopt_state(new, module, ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))


# The hook tables of nn.Module (shared, not copied: a RemovableHandle the user holds keeps working).
_HOOK_DICTS = (
    "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs", "_forward_hooks",
    "_forward_hooks_with_kwargs", "_forward_hooks_always_called", "_backward_pre_hooks",
    "_backward_hooks", "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _adopt_state(new: nn.Module, module: nn.Module, weight_names) -> nn.Module:
    """Moves everything a user may have put on ``module`` onto ``new`` (built on 'meta'), so the
    converted model computes exactly what the original did, with the same objects:

    * the weights' Parameter objects (optimizers keep their state), with their requires_grad,
      device and dtype; any other Parameter / buffer (pruning's ``*_orig`` and ``*_mask``,
      the old hook-based weight_norm's ``*_g`` / ``*_v``);
    * parametrizations (``torch.nn.utils.parametrize``: weight_norm, spectral_norm, custom):
      the ParametrizationList modules themselves move, originals and buffers included;
    * a weight that a pre-forward hook recomputes as a plain attribute (pruning);
    * forward / pre-forward / backward / state_dict hooks; training mode.
    """
    parametrized = set(module.parametrizations) if parametrize.is_parametrized(module) else set()
    for name in weight_names:
        del new._parameters[name]  # the 'meta' placeholder
        if name in parametrized:
            continue
        if name in module._parameters:
            new._parameters[name] = module._parameters[name]
        else:  # a plain tensor that a hook recomputes (pruning, hook-based weight_norm)
            new.__dict__[name] = module.__dict__[name]
    for name, param in module._parameters.items():
        new._parameters.setdefault(name, param)
    new._buffers.update(module._buffers)
    new._non_persistent_buffers_set |= module._non_persistent_buffers_set
    if parametrized:
        # What register_parametrization does, minus re-running right_inverse (it would make new
        # Parameters) and the consistency check (spectral_norm would take a power-iteration
        # step on the placeholder).
        parametrize._inject_new_class(new)
        new.parametrizations = module.parametrizations
        for name in module.parametrizations:
            parametrize._inject_property(new, name)
    for hooks in _HOOK_DICTS:
        setattr(new, hooks, getattr(module, hooks))
    new._is_full_backward_hook = module._is_full_backward_hook
    new.train(module.training)
    return new


def convert(model: nn.Module, *, backend: str = "auto") -> nn.Module:
    """Replaces every torch.nn.RNN / nn.RNNCell inside ``model`` (in place) by its fastrnn twin.

    The replacements share the original Parameter objects, so weights, device, dtype,
    gradients and optimizer state are kept; parametrizations (weight_norm, spectral_norm,
    ``torch.nn.utils.parametrize``), pruning masks and hooks move with them (``_adopt_state``).
    A subclass with its own ``forward`` is left as it is, with a warning (the twin would drop
    that forward); one without is replaced. Returns ``model`` (or its replacement, if
    ``model`` itself is an nn.RNN / nn.RNNCell).
    """
    for torch_cls, ours in ((nn.RNN, RNN), (nn.RNNCell, RNNCell)):
        if isinstance(model, torch_cls):
            if type(model).forward is not torch_cls.forward:  # the twin would drop that forward
                warnings.warn(f"fastrnn.convert: {type(model).__name__} subclasses "
                              f"torch.nn.{torch_cls.__name__} with its own forward; left as it is",
                              stacklevel=2)
                return model
            return ours.from_torch(model, backend=backend)
    for name, child in model.named_children():
        new = convert(child, backend=backend)
        if new is not child:
            setattr(model, name, new)
    return model
