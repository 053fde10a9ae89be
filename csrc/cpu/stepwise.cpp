// One step at a time through ATen's GEMMs: see stepwise.h for when this path runs.
#include "stepwise.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/where.h>

namespace fastrnn::cpu {

void forward_stepwise(const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
                      const at::Tensor& bias, const at::Tensor& h0, at::Tensor& y,
                      const at::Tensor& lengths, bool reverse, Activation act) {
  const int64_t T = y.size(0), B = y.size(1), I = x.size(2), H = y.size(2);
  at::Tensor y2d = y.view({T * B, H});  // [T*B, H]
  // The input projection of every step in one GEMM, written straight into y.
  if (bias.defined()) {
    at::addmm_out(y2d, bias, x.view({T * B, I}), w_ih.t());
  } else {
    at::mm_out(y2d, x.view({T * B, I}), w_ih.t());
  }
  at::Tensor h_prev = h0;  // [B, H]
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    at::Tensor y_t = y.select(0, t);  // [B, H]: holds x_t W_ih^T + b; += h_prev W_hh^T
    y_t.addmm_(h_prev, w_hh.t());
    if (act == Activation::Tanh) y_t.tanh_(); else y_t.relu_();
    if (lengths.defined()) {  // inactive rows carry their state
      y_t.copy_(at::where(lengths.gt(t).unsqueeze(1), y_t, h_prev));
    }
    h_prev = y_t;
  }
}

void backward_stepwise(const at::Tensor& w_hh, const at::Tensor& dy, const at::Tensor& y,
                       at::Tensor& dz, at::Tensor& carry, const at::Tensor& lengths,
                       bool reverse, Activation act) {
  const int64_t T = y.size(0);
  carry.zero_();
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const at::Tensor g = dy.select(0, t) + carry;  // [B, H]
    const at::Tensor y_t = y.select(0, t);         // [B, H]
    at::Tensor dz_t = dz.select(0, t);             // [B, H]
    if (act == Activation::Tanh) {
      at::mul_out(dz_t, g, 1 - y_t * y_t);
    } else {
      // g where the unit is on, else 0: a select, not a product with a 0/1 mask, which
      // would turn an infinite g of an off unit into NaN (the kernels' relu_grad selects).
      dz_t.copy_(at::where(y_t.gt(0), g, 0));
    }
    if (lengths.defined()) {  // inactive rows: no dz, and g passes through to h_prev
      const at::Tensor active = lengths.gt(t).unsqueeze(1);  // [B, 1]
      dz_t.masked_fill_(active.logical_not(), 0);
      carry.copy_(at::where(active, at::mm(dz_t, w_hh), g));
    } else {
      at::mm_out(carry, dz_t, w_hh);
    }
  }
}

}  // namespace fastrnn::cpu
