"""BPTT kernels: the reverse-time loop that produces dz (math: csrc/rnn.h, 'Backward').

They produce the pre-activation gradients dz [T, B, H] (float32) and d_hx [B, H]; the
weight, bias and input gradients are then batched GEMMs over all T*B rows (ops.py).
Each output element is written by exactly one program with a fixed summation order:
no atomics, so results are bitwise reproducible.

* ``rnn_bwd_persistent``: one launch, one program per block of batch rows, owning all H
  units; W_hh stays on chip for the whole loop, the carried gradient in float32 registers.
* ``rnn_bwd_step``: the fallback for larger H, one launch per step over (batch blocks,
  hidden blocks), streaming W_hh tiles; the carry is rebuilt from the previous launch's dz.
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import activation_grad, matmul_f32


@triton.jit(do_not_specialize=["T", "B", "H"])
def rnn_bwd_persistent(
    dy_ptr,  # [T, B, H] input dtype: dLoss/dy, h_n's gradient already added in
    y_ptr,  # [T, B, H] input dtype: the forward output
    w_ptr,  # [H, H] W_hh, input dtype
    len_ptr,  # [B] int64 (read only if HAS_LENGTHS)
    dz_ptr,  # [T, B, H] float32 (out)
    dh0_ptr,  # [B, H] float32 (out): dLoss/dh0
    T,
    B,
    H,
    HAS_LENGTHS: tl.constexpr,
    REVERSE: tl.constexpr,  # the forward's direction; this loop runs the other way
    RELU: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
    rh = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    mb = rb < B
    mh = rh < H
    m2 = mb[:, None] & mh[None, :]  # [BLOCK_B, BLOCK_H]
    row = rb.to(tl.int64)[:, None] * H + rh[None, :]  # [BLOCK_B, BLOCK_H]

    # carry = dz W_hh: w[j, k] = W_hh[j, k] as stored; zero padding keeps padded units at 0.
    w = tl.load(w_ptr + rh[:, None] * H + rh[None, :], mask=mh[:, None] & mh[None, :], other=0.0)
    w = w.to(tl.float32)  # [BLOCK_H, BLOCK_H], upcast once, on chip for all steps
    if HAS_LENGTHS:
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)  # [BLOCK_B]
    carry = tl.zeros([BLOCK_B, BLOCK_H], dtype=tl.float32)

    step = B.to(tl.int64) * H
    for s in range(T):
        if REVERSE:
            t = s
        else:
            t = T - 1 - s
        off = t * step + row
        g = tl.load(dy_ptr + off, mask=m2, other=0.0).to(tl.float32) + carry
        y = tl.load(y_ptr + off, mask=m2, other=0.0).to(tl.float32)
        dz = g * activation_grad(y, RELU)
        if HAS_LENGTHS:
            active = (t < lengths)[:, None]
            dz = tl.where(active, dz, 0.0)
            carry = tl.where(active, matmul_f32(dz, w), g)
        else:
            carry = matmul_f32(dz, w)
        tl.store(dz_ptr + off, dz, mask=m2)
    tl.store(dh0_ptr + row, carry, mask=m2)


@triton.jit(do_not_specialize=["t", "t_prev", "B", "H"])
def rnn_bwd_step(
    dy_ptr,  # [T, B, H] input dtype
    y_ptr,  # [T, B, H] input dtype
    w_ptr,  # [H, H] W_hh, input dtype
    len_ptr,  # [B] int64 (read only if HAS_LENGTHS)
    dz_ptr,  # [T, B, H] float32: step t_prev is read, step t written
    g_ptr,  # [B, H] float32: g of step t_prev in, g of step t out (each program its own tile)
    dh0_ptr,  # [B, H] float32 (out, only if FINAL)
    t,  # the step this launch computes (ignored if FINAL)
    t_prev,  # the step visited before t (in backward order), or -1 for the first
    B,
    H,
    HAS_LENGTHS: tl.constexpr,
    RELU: tl.constexpr,
    FINAL: tl.constexpr,  # write carry = dLoss/dh0 instead of computing a step
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N] units of the carry
    rk = tl.arange(0, BLOCK_K)  # [BLOCK_K] reduction units
    mb = rb < B
    mn = rn < H
    m2 = mb[:, None] & mn[None, :]  # [BLOCK_B, BLOCK_N]
    rows = rb.to(tl.int64)[:, None] * H  # [BLOCK_B, 1]
    step = B.to(tl.int64) * H
    if HAS_LENGTHS:
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)  # [BLOCK_B]

    # carry = dLoss/dh_{t_prev}'s input state = dz_{t_prev} W_hh + (inactive at t_prev ? g_{t_prev} : 0)
    carry = tl.zeros([BLOCK_B, BLOCK_N], dtype=tl.float32)
    if t_prev >= 0:
        for k0 in range(0, H, BLOCK_K):
            kk = k0 + rk
            mk = kk < H
            dz = tl.load(dz_ptr + t_prev * step + rows + kk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
            w = tl.load(w_ptr + kk.to(tl.int64)[:, None] * H + rn[None, :], mask=mk[:, None] & mn[None, :], other=0.0)
            carry += matmul_f32(dz, w.to(tl.float32))
        if HAS_LENGTHS:
            g_prev = tl.load(g_ptr + rows + rn[None, :], mask=m2, other=0.0)
            carry = tl.where((t_prev < lengths)[:, None], carry, g_prev)
    if FINAL:
        tl.store(dh0_ptr + rows + rn[None, :], carry, mask=m2)
    else:
        off = t * step + rows + rn[None, :]
        g = tl.load(dy_ptr + off, mask=m2, other=0.0).to(tl.float32) + carry
        y = tl.load(y_ptr + off, mask=m2, other=0.0).to(tl.float32)
        dz = g * activation_grad(y, RELU)
        if HAS_LENGTHS:
            dz = tl.where((t < lengths)[:, None], dz, 0.0)
            tl.store(g_ptr + rows + rn[None, :], g, mask=m2)
        tl.store(dz_ptr + off, dz, mask=m2)
