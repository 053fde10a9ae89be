// Host code every device's implementation shares (declared in rnn.h): the compute type
// and, after the reverse-time loop of BPTT, the batched GEMMs over all T*B rows.
#include "rnn.h"

#include "cpu/block_cache.h"

#include <ATen/ops/add.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>

namespace fastrnn {

at::Tensor new_buffer(at::IntArrayRef sizes, const at::Tensor& like,
                      std::optional<at::ScalarType> dtype) {
  const at::ScalarType type = dtype.value_or(like.scalar_type());
  if (like.device().is_cpu()) return cpu::cached_empty(sizes, type);
  return at::empty(sizes, like.options().dtype(type));
}

at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

at::Tensor as_compute(const at::Tensor& t, at::ScalarType ct) {
  // The common case (already right) skips two dispatcher round trips.
  if (t.scalar_type() == ct && t.is_contiguous()) return t;
  // A copy as large as the input (an expanded grad_output, a half-precision input): a buffer.
  return new_buffer(t.sizes(), t, ct).copy_(t);
}

at::Tensor combined_bias(const std::optional<at::Tensor>& bias_ih,
                         const std::optional<at::Tensor>& bias_hh, at::ScalarType ct) {
  if (!bias_ih.has_value()) return at::Tensor();
  return at::add(bias_ih->to(ct), bias_hh->to(ct)).contiguous();  // [H]
}

namespace {

// dW_hh = sum_t dz_t^T h_prev_t, h_prev = y of the previously visited step (h0 for the
// first visited one), in dz's (the compute) type.
at::Tensor grad_weight_hh(const at::Tensor& dz, const at::Tensor& y, const at::Tensor& hx,
                          bool reverse) {
  const int64_t T = y.size(0), B = y.size(1), H = y.size(2);
  const at::Tensor h0 = as_compute(hx, y.scalar_type());  // [B, H]
  const int64_t first = reverse ? T - 1 : 0;              // the step h0 feeds
  // Few rows (T*B <= H, e.g. batch 1): one GEMM over h_prev gathered into a [T*B, H] copy,
  // rather than a rank-B product plus a second full pass over the [H, H] result. Otherwise
  // the copy (as large as y) would cost more than that pass: the two GEMMs on views.
  if (T == 1 || T * B <= H) {
    at::Tensor h_prev = h0.unsqueeze(0);  // [T, B, H]
    if (T > 1) {
      h_prev = new_buffer({T, B, H}, y);
      h_prev.narrow(0, reverse ? T - 1 : 0, 1).copy_(h0.unsqueeze(0));
      h_prev.narrow(0, reverse ? 0 : 1, T - 1).copy_(y.narrow(0, reverse ? 1 : 0, T - 1));
    }
    at::Tensor g = new_buffer({H, H}, dz);
    return at::mm_out(g, dz.view({T * B, H}).t(), h_prev.reshape({T * B, H}));
  }
  at::Tensor g = new_buffer({H, H}, dz);
  at::mm_out(g, dz.select(0, first).t(), h0);  // [H, H]
  const at::Tensor dz_rest = dz.narrow(0, reverse ? 0 : 1, T - 1).reshape({(T - 1) * B, H});
  const at::Tensor h_rest = y.narrow(0, reverse ? 1 : 0, T - 1).reshape({(T - 1) * B, H});
  return g.addmm_(dz_rest.t(), h_rest);
}

}  // namespace

Grads backward_gemms(const at::Tensor& dz, const at::Tensor& grad_hx, const at::Tensor& input,
                     const at::Tensor& hx, const at::Tensor& weight_ih, const at::Tensor& y,
                     bool reverse, std::array<bool, 2> output_mask) {
  const auto in_type = input.scalar_type();
  const auto ct = dz.scalar_type();
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = dz.size(2);
  const auto back = [&](const at::Tensor& t) {
    return t.scalar_type() == in_type ? t : t.to(in_type);
  };
  at::Tensor grad_input = at::empty({0}, input.options());
  at::Tensor grad_w_ih = at::empty({0}, input.options());
  at::Tensor grad_w_hh = at::empty({0}, input.options());
  at::Tensor grad_bias = at::empty({0}, input.options());
  const at::Tensor dz2d = dz.view({T * B, H});  // [T*B, H]
  if (output_mask[0]) {
    at::Tensor dx = new_buffer({T * B, I}, dz);  // [T*B, I]
    grad_input = back(at::mm_out(dx, dz2d, as_compute(weight_ih, ct)).view({T, B, I}));
  }
  if (output_mask[1]) {
    const at::Tensor x = as_compute(input, ct);  // [T, B, I]
    at::Tensor dw = new_buffer({H, I}, dz);
    grad_w_ih = back(at::mm_out(dw, dz2d.t(), x.view({T * B, I})));  // [H, I]
    grad_w_hh = back(grad_weight_hh(dz, y, hx, reverse));  // [H, H]
    grad_bias = back(at::sum(dz2d, {0}));  // [H]
  }
  return {grad_input, back(grad_hx), grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace fastrnn
