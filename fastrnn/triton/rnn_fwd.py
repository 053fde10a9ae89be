"""Forward recurrence kernels (math: csrc/rnn.h). Launch configuration lives in ops.py.

Both kernels take the input projection ``xw = x W_ih^T`` of all steps, computed before
the launch as one GEMM; they add the biases, the recurrent product and the activation.

* ``rnn_fwd_persistent``: the whole time loop in one launch. One program per block of
  BLOCK_B batch rows owns all H hidden units of those rows, so it has the full h_{t-1}
  it needs at every step without talking to other programs. W_hh^T is loaded once and
  stays on chip (registers / shared memory) for all T steps; h is carried in float32.
  Needs BLOCK_H = next_pow2(H) small enough to fit: see ops.MAX_ON_CHIP_H.
* ``rnn_fwd_step``: the fallback for larger H. One launch per time step, grid
  (batch blocks, hidden blocks); each program streams W_hh in BLOCK_K x BLOCK_N tiles and
  reads the previous step's full state from global memory, which the previous launch
  finished writing (the launch boundary is the grid-wide barrier Triton lacks).
"""
from __future__ import annotations

import triton
import triton.language as tl

from ._common import activation, matmul_f32


# Sizes equal to 1 must not become constexprs: `.to(tl.int64)` is called on them.
@triton.jit(do_not_specialize=["T", "B", "H"])
def rnn_fwd_persistent(
    xw_ptr,  # [T, B, H] float32: x_t W_ih^T, no bias
    h0_ptr,  # [B, H] input dtype
    w_ptr,  # [H, H] W_hh, input dtype
    bias_ptr,  # [H] float32: b_ih + b_hh (read only if HAS_BIAS)
    len_ptr,  # [B] int64 (read only if HAS_LENGTHS)
    y_ptr,  # [T, B, H] input dtype (out)
    T,
    B,
    H,
    HAS_BIAS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    REVERSE: tl.constexpr,
    RELU: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr,
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
    rh = tl.arange(0, BLOCK_H)  # [BLOCK_H]
    mb = rb < B
    mh = rh < H
    m2 = mb[:, None] & mh[None, :]  # [BLOCK_B, BLOCK_H]
    row = rb.to(tl.int64)[:, None] * H + rh[None, :]  # [BLOCK_B, BLOCK_H] offsets within a step

    # wt[k, n] = W_hh[n, k], upcast once: it stays on chip in float32 for all steps.
    # Zero padding keeps padded state columns out of z.
    wt = tl.load(w_ptr + rh[None, :] * H + rh[:, None], mask=mh[:, None] & mh[None, :], other=0.0)
    wt = wt.to(tl.float32)  # [BLOCK_H, BLOCK_H]
    h = tl.load(h0_ptr + row, mask=m2, other=0.0).to(tl.float32)  # [BLOCK_B, BLOCK_H]
    if HAS_BIAS:
        bias = tl.load(bias_ptr + rh, mask=mh, other=0.0)  # [BLOCK_H]
    if HAS_LENGTHS:
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)  # [BLOCK_B]

    step = B.to(tl.int64) * H
    for s in range(T):
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        off = t * step + row
        z = tl.load(xw_ptr + off, mask=m2, other=0.0) + matmul_f32(h, wt)
        if HAS_BIAS:
            z += bias[None, :]
        h_new = activation(z, RELU)
        if HAS_LENGTHS:
            h_new = tl.where((t < lengths)[:, None], h_new, h)  # inactive rows carry their state
        tl.store(y_ptr + off, h_new.to(y_ptr.dtype.element_ty), mask=m2)
        h = h_new


@triton.jit(do_not_specialize=["t", "t_prev", "B", "H"])
def rnn_fwd_step(
    xw_ptr,  # [T, B, H] float32: x_t W_ih^T, no bias
    h0_ptr,  # [B, H] float32
    w_ptr,  # [H, H] W_hh, input dtype
    bias_ptr,  # [H] float32 (read only if HAS_BIAS)
    len_ptr,  # [B] int64 (read only if HAS_LENGTHS)
    y_ptr,  # [T, B, H] float32: steps visited before t are read, step t is written
    t,  # the step this launch computes
    t_prev,  # the step visited before t, or -1 for the first (state = h0)
    B,
    H,
    HAS_BIAS: tl.constexpr,
    HAS_LENGTHS: tl.constexpr,
    RELU: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    rb = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)  # [BLOCK_B]
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BLOCK_N] output units
    rk = tl.arange(0, BLOCK_K)  # [BLOCK_K] reduction units
    mb = rb < B
    mn = rn < H
    m2 = mb[:, None] & mn[None, :]  # [BLOCK_B, BLOCK_N]
    rows = rb.to(tl.int64)[:, None] * H  # [BLOCK_B, 1]
    step = B.to(tl.int64) * H
    if t_prev < 0:
        prev_ptr = h0_ptr
    else:
        prev_ptr = y_ptr + t_prev * step

    acc = tl.load(xw_ptr + t * step + rows + rn[None, :], mask=m2, other=0.0)  # [BLOCK_B, BLOCK_N]
    for k0 in range(0, H, BLOCK_K):
        kk = k0 + rk
        mk = kk < H
        h = tl.load(prev_ptr + rows + kk[None, :], mask=mb[:, None] & mk[None, :], other=0.0)
        wt = tl.load(w_ptr + rn.to(tl.int64)[None, :] * H + kk[:, None], mask=mk[:, None] & mn[None, :], other=0.0)
        acc += matmul_f32(h, wt.to(tl.float32))  # [BLOCK_B, BLOCK_N]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn, mask=mn, other=0.0)[None, :]
    h_new = activation(acc, RELU)
    if HAS_LENGTHS:
        lengths = tl.load(len_ptr + rb, mask=mb, other=0)
        h_old = tl.load(prev_ptr + rows + rn[None, :], mask=m2, other=0.0)
        h_new = tl.where((t < lengths)[:, None], h_new, h_old)
    tl.store(y_ptr + t * step + rows + rn[None, :], h_new, mask=m2)
