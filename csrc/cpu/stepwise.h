// The CPU recurrences one step at a time through ATen's GEMMs (math in ../rnn.h).
//
// The fused kernels (kernels.h) pack the weights into column panels once per call, which
// costs about one pass over them, and run each thread on its own batch rows (or, with
// fewer rows than threads, its own columns). For short sequences (an RNNCell is T = 1)
// the packing is not paid back, and when a thread's share of the weights exceeds a core's
// L2 it would stream them at every step; then stepping with the BLAS GEMMs (all
// threads, weights read in place) is faster.
#pragma once

#include <ATen/core/Tensor.h>

#include "../rnn.h"

namespace fastrnn::cpu {

// All tensors contiguous, in the compute type; bias = b_ih + b_hh [H] or undefined;
// lengths [B] int64 or undefined.
//   y [T, B, H] out. x [T, B, I], h0 [B, H], w_ih [H, I], w_hh [H, H].
void forward_stepwise(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                      const at::Tensor& bias, const at::Tensor& h0, at::Tensor& y,
                      const at::Tensor& lengths, bool reverse, Activation act);

//   dz [T, B, H] out, carry [B, H] out (= d_hx). dy, y [T, B, H], w_hh [H, H].
void backward_stepwise(const at::Tensor& w_hh, const at::Tensor& dy, const at::Tensor& y,
                       at::Tensor& dz, at::Tensor& carry, const at::Tensor& lengths,
                       bool reverse, Activation act);

}  // namespace fastrnn::cpu
