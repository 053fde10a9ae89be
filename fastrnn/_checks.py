"""The op argument checks of ``csrc/rnn_ops.cpp``, for the fake (meta) kernels in ``_ops.py``.

Why a second copy: a call whose tensors include one on the ``meta`` device dispatches to
the fake kernel, not to the device kernel, so without these checks a mixed-device call
(or any malformed call under torch.compile's fake tensors) would silently return an
empty tensor instead of the error the real kernel raises. Messages and exception types
match the C++ checks (TORCH_CHECK -> RuntimeError, TORCH_CHECK_VALUE -> ValueError).
"""
from __future__ import annotations

import torch
from torch import Tensor


_SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _shape_is(t: Tensor, expected: tuple) -> bool:
    return t.dim() == len(expected) and all(a == b for a, b in zip(t.shape, expected))


def _check_shape(t: Tensor, expected: tuple, name: str) -> None:
    torch._check(
        _shape_is(t, expected),
        lambda: f"fastrnn: {name} must have shape {list(expected)}, got {list(t.shape)}",
    )


def _check_like(t: Tensor, input: Tensor, name: str) -> None:
    torch._check(
        t.dtype == input.dtype,
        lambda: f"fastrnn: {name} must have the dtype of input ({input.dtype}), got {t.dtype}",
    )
    torch._check(
        t.device == input.device,
        lambda: f"fastrnn: {name} must be on the device of input ({input.device}), got {t.device}",
    )


def check_nonlinearity(nonlinearity: str) -> None:
    torch._check_value(
        nonlinearity in ("tanh", "relu"),
        lambda: f"fastrnn: nonlinearity must be 'tanh' or 'relu', got '{nonlinearity}'",
    )


def check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths) -> None:
    torch._check(
        input.dim() == 3,
        lambda: f"fastrnn: input must be 3-D [T, B, I], got {input.dim()}-D with shape {list(input.shape)}",
    )
    torch._check_value(
        input.dtype in _SUPPORTED_DTYPES,
        lambda: f"fastrnn: input must be a floating point tensor (float32, float64, float16 or "
        f"bfloat16), got {input.dtype}",
    )
    T, B, I = input.shape
    torch._check(T > 0, lambda: f"fastrnn: input must have sequence length T > 0, got {list(input.shape)}")
    torch._check(
        weight_hh.dim() == 2,
        lambda: f"fastrnn: weight_hh must be 2-D [H, H], got {list(weight_hh.shape)}",
    )
    H = weight_hh.shape[0]
    _check_shape(weight_hh, (H, H), "weight_hh")
    _check_shape(weight_ih, (H, I), "weight_ih")
    _check_shape(hx, (B, H), "hx")
    _check_like(weight_ih, input, "weight_ih")
    _check_like(weight_hh, input, "weight_hh")
    _check_like(hx, input, "hx")
    torch._check(
        (bias_ih is None) == (bias_hh is None),
        lambda: "fastrnn: bias_ih and bias_hh must be given together",
    )
    if bias_ih is not None:
        _check_shape(bias_ih, (H,), "bias_ih")
        _check_shape(bias_hh, (H,), "bias_hh")
        _check_like(bias_ih, input, "bias_ih")
        _check_like(bias_hh, input, "bias_hh")
    if lengths is not None:
        _check_shape(lengths, (B,), "lengths")
        torch._check(
            lengths.dtype == torch.int64, lambda: f"fastrnn: lengths must be int64, got {lengths.dtype}"
        )
        torch._check(
            lengths.device == input.device,
            lambda: f"fastrnn: lengths must be on the device of input ({input.device}), got {lengths.device}",
        )


def check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths) -> None:
    check_forward_args(input, hx, weight_ih, weight_hh, None, None, lengths)
    y_shape = (input.shape[0], input.shape[1], weight_hh.shape[0])
    _check_shape(output, y_shape, "output")
    _check_shape(grad_output, y_shape, "grad_output")
    _check_like(output, input, "output")
    _check_like(grad_output, input, "grad_output")
