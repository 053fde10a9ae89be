"""The Triton backend's ops: argument checks, launch configuration, autograd, torch.compile.

``rnn_forward`` / ``rnn_backward`` (namespace ``fastrnn_triton``) launch their kernels
through ``wrap_triton``. With compiled Triton they are ``torch.library.triton_op``s, so
torch.compile traces into them and Inductor sees the kernels. Under TRITON_INTERPRET=1 they
are ``torch.library.custom_op``s instead: the interpreter's kernels cannot be traced
(``wrap_triton`` hands them back unwrapped, and a traced launch would run on fake tensors),
so compile treats the op as opaque and calls it. Both carry the same fake kernels and
autograd. Contract and math: csrc/rnn.h.
"""
from __future__ import annotations

import torch
import triton
from torch import Tensor
from torch.library import triton_op, wrap_triton

from .. import _checks, _double_backward, _op_glue, reference
from .rnn_bwd import rnn_bwd_persistent, rnn_bwd_step
from .rnn_fwd import rnn_fwd_persistent, rnn_fwd_step

# Largest H whose W_hh the persistent kernels keep on chip. Triton stages the loop-invariant
# W_hh^T tile (next_pow2(H) squared, upcast once to float32 for every dtype, since all math
# is float32: rnn.h) in shared memory before the time loop and feeds the dot from there.
# Compiled here for sm_90 (triton 3.8, BLOCK_B = 16; see README), the kernels use
#   BLOCK_H   warps   forward smem   backward smem   registers / spills
#      32       4        6 KiB          14 KiB          126 / none
#      64       8       20 KiB          36 KiB          178 / none
#     128      32       72 KiB         104 KiB           61 / none
#     256      32      272 KiB         272 KiB          spills; exceeds every GPU's shared memory
# so 128 is the limit for all dtypes, and on a device it also has to fit the per-block
# shared memory (smem_bytes below; e.g. a 100 KiB consumer GPU runs H = 128 tiled).
# Beyond it the tiled per-step kernels run: correct at any H, one launch per step.
# Tests lower these to exercise the fallback at small H.
MAX_ON_CHIP_H = {torch.float32: 128, torch.float16: 128, torch.bfloat16: 128}
BLOCK_B = 16  # batch rows per program; tl.dot needs at least 16
STEP_BLOCK_N = 64  # tiled fallback: hidden units per program
STEP_BLOCK_K = 32  # tiled fallback: reduction chunk streamed from W_hh
STEP_WARPS = 8  # 64 x 32 tiles at 8 warps: at most 174 registers, no spills (sm_80)


def _num_warps(block_h: int) -> int:
    # Fewer warps spill at 128 (16 warps: 1 KiB of stack per thread); see the table above.
    return 4 if block_h <= 32 else (8 if block_h <= 64 else 32)


def smem_bytes(block_h: int) -> int:
    """Shared memory the persistent backward kernel (the larger of the two) needs: the
    float32 W_hh tile plus its staging buffers (fits the measurements above), plus margin."""
    return 4 * block_h * (block_h + 5 * BLOCK_B) + 8192


def uses_persistent(hidden_size: int, dtype: torch.dtype, device: torch.device | None = None) -> bool:
    """True when the persistent (W_hh on chip) kernels run for this H, dtype and device."""
    if hidden_size > MAX_ON_CHIP_H[dtype]:
        return False
    if device is not None and device.type == "cuda":
        limit = torch.cuda.get_device_properties(device).shared_memory_per_block_optin
        return smem_bytes(_pow2(hidden_size)) <= limit
    return True


def _pow2(n: int, lo: int = 16) -> int:
    return max(lo, triton.next_power_of_2(n))


def _interpreted() -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(rnn_fwd_persistent, InterpretedFunction)


def _define_op(name: str):
    """triton_op when the kernels are compiled, custom_op under the interpreter (module doc)."""
    if _interpreted():
        return torch.library.custom_op(name, mutates_args=())
    return triton_op(name, mutates_args=())


def check_device(input: Tensor) -> None:
    if input.device.type == "cuda":
        return
    if input.device.type == "cpu" and _interpreted():
        return
    raise RuntimeError(
        f"fastrnn: the Triton backend runs on CUDA tensors (or on CPU tensors when "
        f"TRITON_INTERPRET=1 is set before fastrnn is imported), got input on '{input.device}'; "
        "use backend='auto'"
    )


# ----------------------------------------------------------------------------- forward


@_define_op("fastrnn_triton::rnn_forward")
def _rnn_forward_op(
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
    # The op checks its own arguments: a direct call must not launch on a malformed tensor.
    _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
    _checks.check_nonlinearity(nonlinearity)
    T, B, I = input.shape
    H = weight_hh.shape[0]
    y = input.new_empty(T, B, H)  # [T, B, H]
    if B == 0 or H == 0:
        return y
    # The input projection of every step in one GEMM, in float32 (rnn.h: reduced precision).
    xw = (input.reshape(T * B, I).float() @ weight_ih.float().t()).view(T, B, H)  # [T, B, H]
    bias = reference.combined_bias(bias_ih, bias_hh, torch.float32)  # [H] or None
    w_hh = weight_hh.contiguous()  # [H, H]
    lens = lengths.contiguous() if lengths is not None else None  # [B]
    flags = dict(
        HAS_BIAS=bias is not None,
        HAS_LENGTHS=lens is not None,
        RELU=nonlinearity == "relu",
    )
    n_b = triton.cdiv(B, BLOCK_B)
    if uses_persistent(H, input.dtype, input.device):
        block_h = _pow2(H)
        wrap_triton(rnn_fwd_persistent)[(n_b,)](
            xw, hx.contiguous(), w_hh, bias, lens, y, T, B, H,
            REVERSE=reverse, BLOCK_B=BLOCK_B, BLOCK_H=block_h, num_warps=_num_warps(block_h), **flags,
        )
        return y
    # Tiled fallback: the state goes through global memory in float32, one launch per step.
    y32 = y if input.dtype == torch.float32 else torch.empty_like(xw)  # [T, B, H]
    block_n = min(STEP_BLOCK_N, _pow2(H))
    block_k = min(STEP_BLOCK_K, _pow2(H))
    grid = (n_b, triton.cdiv(H, block_n))
    h0 = hx.float().contiguous()  # [B, H]
    order = range(T - 1, -1, -1) if reverse else range(T)
    t_prev = -1
    for t in order:
        wrap_triton(rnn_fwd_step)[grid](
            xw, h0, w_hh, bias, lens, y32, t, t_prev, B, H,
            BLOCK_B=BLOCK_B, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=STEP_WARPS, **flags,
        )
        t_prev = t
    if y32 is not y:
        y.copy_(y32)
    return y


_rnn_forward_op.register_fake(_op_glue.fake_forward)


# ----------------------------------------------------------------------------- backward


@_define_op("fastrnn_triton::rnn_backward")
def _rnn_backward_op(
    grad_output: Tensor,  # [T, B, H]
    input: Tensor,  # [T, B, I]
    hx: Tensor,  # [B, H]
    weight_ih: Tensor,  # [H, I]
    weight_hh: Tensor,  # [H, H]
    output: Tensor,  # [T, B, H]
    lengths: Tensor | None,  # [B] int64
    reverse: bool,
    nonlinearity: str,
    output_mask: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(grad_input [T,B,I], grad_hx [B,H], grad_weight_ih [H,I], grad_weight_hh [H,H],
    grad_bias [H]); output_mask = [need_input, need_weights], as in fastrnn::rnn_backward:
    entries not asked for are empty."""
    need_input, need_weights = output_mask
    _checks.check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths)
    _checks.check_nonlinearity(nonlinearity)
    T, B, I = input.shape
    H = weight_hh.shape[0]
    dtype = input.dtype
    dz = grad_output.new_empty(T, B, H, dtype=torch.float32)  # [T, B, H]
    dh0 = grad_output.new_empty(B, H, dtype=torch.float32)  # [B, H]
    if B > 0 and H > 0:
        dy = grad_output.contiguous()  # [T, B, H]
        y = output.contiguous()  # [T, B, H]
        w_hh = weight_hh.contiguous()  # [H, H]
        lens = lengths.contiguous() if lengths is not None else None  # [B]
        flags = dict(
            HAS_LENGTHS=lens is not None,
            RELU=nonlinearity == "relu",
        )
        n_b = triton.cdiv(B, BLOCK_B)
        if uses_persistent(H, dtype, input.device):
            block_h = _pow2(H)
            wrap_triton(rnn_bwd_persistent)[(n_b,)](
                dy, y, w_hh, lens, dz, dh0, T, B, H,
                REVERSE=reverse, BLOCK_B=BLOCK_B, BLOCK_H=block_h, num_warps=_num_warps(block_h), **flags,
            )
        else:
            block_n = min(STEP_BLOCK_N, _pow2(H))
            block_k = min(STEP_BLOCK_K, _pow2(H))
            grid = (n_b, triton.cdiv(H, block_n))
            g = torch.empty_like(dh0)  # [B, H] the previous step's g, per program tile
            order = range(T) if reverse else range(T - 1, -1, -1)
            t_prev = -1
            for t in order:
                wrap_triton(rnn_bwd_step)[grid](
                    dy, y, w_hh, lens, dz, g, dh0, t, t_prev, B, H, FINAL=False,
                    BLOCK_B=BLOCK_B, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=STEP_WARPS, **flags,
                )
                t_prev = t
            wrap_triton(rnn_bwd_step)[grid](
                dy, y, w_hh, lens, dz, g, dh0, 0, t_prev, B, H, FINAL=True,
                BLOCK_B=BLOCK_B, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=STEP_WARPS, **flags,
            )
    else:
        dz.zero_()
        dh0.zero_()

    # Everything else is batched GEMMs over all T*B rows (rnn.h), in float32.
    dz2 = dz.view(T * B, H)  # [T*B, H]
    def skipped():  # a fresh [0] tensor per skipped gradient: outputs must not alias
        return input.new_empty(0)

    grad_input = (dz2 @ weight_ih.float()).view(T, B, I).to(dtype) if need_input else skipped()  # [T, B, I]
    if need_weights:
        x2 = input.reshape(T * B, I).float()  # [T*B, I]
        h0 = hx.float().unsqueeze(0)  # [1, B, H]
        y32 = output.float()  # [T, B, H]
        # h_prev(t): the state each step started from (rnn.h)
        h_prev = torch.cat([y32[1:], h0]) if reverse else torch.cat([h0, y32[:-1]])  # [T, B, H]
        grad_w_ih = (dz2.t() @ x2).to(dtype)  # [H, I]
        grad_w_hh = (dz2.t() @ h_prev.view(T * B, H)).to(dtype)  # [H, H]
        grad_bias = dz2.sum(0).to(dtype)  # [H]
    else:
        grad_w_ih, grad_w_hh, grad_bias = skipped(), skipped(), skipped()
    return grad_input, dh0.to(dtype), grad_w_ih, grad_w_hh, grad_bias


_rnn_backward_op.register_fake(_op_glue.fake_backward)

# Autograd, saved tensors, torch.func and double backward: the same glue as the native ops.
_differentiable_forward = _op_glue.register_autograd(_rnn_forward_op, torch.ops.fastrnn_triton.rnn_backward)
_double_backward.forbid(_rnn_backward_op)


# ----------------------------------------------------------------------------- entry point


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
    """fastrnn::rnn_forward on Triton kernels; differentiable. Same contract as
    ``fastrnn.reference.rnn_forward``. float64 (which the kernels do not cover) runs the
    reference loop instead."""
    if input.dtype not in MAX_ON_CHIP_H:  # the ops check their own arguments; this path too
        _checks.check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths)
        _checks.check_nonlinearity(nonlinearity)
        return reference.rnn_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                                     reverse, nonlinearity)
    check_device(input)
    return _differentiable_forward(
        input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, bool(reverse), nonlinearity
    )
