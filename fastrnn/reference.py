"""The executable spec: fastrnn's ops written as a plain PyTorch loop.

Every backend (CPU C++, CUDA, Triton) is tested against these functions and against
torch.nn.RNN. They follow the contract and the math in ``csrc/rnn.h``; autograd
provides the backward. Slow by design: clarity first.
"""
from __future__ import annotations

import torch
from torch import Tensor


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 / bfloat16 are computed in float32 (rounded once, at the end)."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def combined_bias(bias_ih: Tensor | None, bias_hh: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """b_ih + b_hh in ``dtype`` [H] (both enter every step together: rnn.h's z_t), or None.
    The Python twin of csrc's ``combined_bias``; every Python backend sums them here."""
    if bias_ih is None:
        return None
    return bias_ih.to(dtype) + bias_hh.to(dtype)


def rnn_forward(
    input: Tensor,  # [T, B, I]
    hx: Tensor,  # [B, H]
    weight_ih: Tensor,  # [H, I]
    weight_hh: Tensor,  # [H, H]
    bias_ih: Tensor | None,  # [H]
    bias_hh: Tensor | None,  # [H]
    lengths: Tensor | None,  # [B] int64
    reverse: bool,
    nonlinearity: str,
) -> Tensor:  # [T, B, H]
    """One layer, one direction. ``h_n`` is ``y[-1]`` (``y[0]`` when ``reverse``)."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"fastrnn: nonlinearity must be 'tanh' or 'relu', got '{nonlinearity}'")
    if (bias_ih is None) != (bias_hh is None):
        raise RuntimeError("fastrnn: bias_ih and bias_hh must be given together")
    act = torch.tanh if nonlinearity == "tanh" else torch.relu
    ct = compute_dtype(input.dtype)
    x, h, w_ih, w_hh = (t.to(ct) for t in (input, hx, weight_ih, weight_hh))
    pre = x @ w_ih.T  # [T, B, H]
    bias = combined_bias(bias_ih, bias_hh, ct)  # [H]
    if bias is not None:
        pre = pre + bias
    T = x.shape[0]
    ys: list[Tensor | None] = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        y = act(pre[t] + h @ w_hh.T)  # [B, H]
        if lengths is not None:
            y = torch.where((lengths > t).unsqueeze(1), y, h)  # inactive rows carry h
        ys[t] = y
        h = y
    return torch.stack(ys).to(input.dtype)
