// TORCH_LIBRARY_IMPL(fastrnn, CPU): forward recurrence and BPTT (math in ../rnn.h).
#include "../rnn.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/library.h>

namespace fastrnn {
namespace {

at::ScalarType compute_type(at::ScalarType t) {
  return (t == at::kHalf || t == at::kBFloat16) ? at::kFloat : t;
}

at::Tensor as_compute(const at::Tensor& t, at::ScalarType ct) {
  return t.to(ct).contiguous();
}

at::Tensor rnn_forward_cpu(const at::Tensor& input, const at::Tensor& hx,
                           const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                           const std::optional<at::Tensor>& bias_ih,
                           const std::optional<at::Tensor>& bias_hh,
                           const std::optional<at::Tensor>& lengths, bool reverse,
                           std::string_view nonlinearity) {
  check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths);
  const Activation act = parse_activation(nonlinearity);
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = weight_hh.size(0);

  const at::Tensor x = as_compute(input, ct);        // [T, B, I]
  const at::Tensor h0 = as_compute(hx, ct);          // [B, H]
  const at::Tensor w_ih = as_compute(weight_ih, ct); // [H, I]
  const at::Tensor w_hh = as_compute(weight_hh, ct); // [H, H]
  at::Tensor y = at::empty({T, B, H}, x.options());  // [T, B, H]
  at::Tensor y2d = y.view({T * B, H});
  // The input projection of all steps is one GEMM, written straight into y.
  if (bias_ih.has_value()) {
    at::addmm_out(y2d, (bias_ih->to(ct) + bias_hh->to(ct)), x.view({T * B, I}), w_ih.t());
  } else {
    at::mm_out(y2d, x.view({T * B, I}), w_ih.t());
  }
  at::Tensor h_prev = h0;
  for (int64_t s = 0; s < T; ++s) {
    const int64_t t = reverse ? T - 1 - s : s;
    at::Tensor y_t = y.select(0, t);  // [B, H]
    y_t.addmm_(h_prev, w_hh.t());
    if (act == Activation::Tanh) y_t.tanh_(); else y_t.relu_();
    if (lengths.has_value()) {
      const at::Tensor active = lengths->gt(t).unsqueeze(1);  // [B, 1]
      y_t.copy_(at::where(active, y_t, h_prev));
    }
    h_prev = y_t;
  }
  return ct == input.scalar_type() ? y : y.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rnn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hx,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const at::Tensor& output,
    const std::optional<at::Tensor>& lengths, bool reverse, std::string_view nonlinearity,
    std::array<bool, 2> output_mask) {
  check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths);
  const Activation act = parse_activation(nonlinearity);
  const auto in_type = input.scalar_type();
  const auto ct = compute_type(in_type);
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = weight_hh.size(0);

  const at::Tensor dy = as_compute(grad_output, ct);  // [T, B, H]
  const at::Tensor y = as_compute(output, ct);        // [T, B, H]
  const at::Tensor h0 = as_compute(hx, ct);           // [B, H]
  const at::Tensor w_hh = as_compute(weight_hh, ct);  // [H, H]
  at::Tensor dz = at::empty({T, B, H}, y.options());  // [T, B, H]
  at::Tensor carry = at::zeros({B, H}, y.options());  // [B, H]
  for (int64_t s = T - 1; s >= 0; --s) {
    const int64_t t = reverse ? T - 1 - s : s;
    const at::Tensor g = dy.select(0, t) + carry;
    const at::Tensor y_t = y.select(0, t);
    at::Tensor dz_t = dz.select(0, t);
    if (act == Activation::Tanh) {
      dz_t.copy_(g * (1 - y_t * y_t));
    } else {
      dz_t.copy_(g * y_t.gt(0).to(ct));
    }
    if (lengths.has_value()) {
      const at::Tensor active = lengths->gt(t).unsqueeze(1);  // [B, 1]
      dz_t.masked_fill_(active.logical_not(), 0);
      carry = at::mm(dz_t, w_hh) + at::where(active, at::zeros_like(g), g);
    } else {
      carry = at::mm(dz_t, w_hh);
    }
  }
  const auto back = [&](const at::Tensor& t) {
    return t.scalar_type() == in_type ? t : t.to(in_type);
  };
  at::Tensor grad_input = at::empty({0}, input.options());
  at::Tensor grad_w_ih = at::empty({0}, input.options());
  at::Tensor grad_w_hh = at::empty({0}, input.options());
  at::Tensor grad_bias = at::empty({0}, input.options());
  const at::Tensor dz2d = dz.view({T * B, H});
  if (output_mask[0]) {
    grad_input = back(at::mm(dz2d, as_compute(weight_ih, ct)).view({T, B, I}));
  }
  if (output_mask[1]) {
    const at::Tensor x = as_compute(input, ct);
    grad_w_ih = back(at::mm(dz2d.t(), x.view({T * B, I})));
    // h_prev(t) is y of the previously visited step; the first visited step uses h0.
    const int64_t first = reverse ? T - 1 : 0;
    at::Tensor g_hh = at::mm(dz.select(0, first).t(), h0);
    if (T > 1) {
      const at::Tensor dz_rest = reverse ? dz.narrow(0, 0, T - 1) : dz.narrow(0, 1, T - 1);
      const at::Tensor h_rest = reverse ? y.narrow(0, 1, T - 1) : y.narrow(0, 0, T - 1);
      g_hh.addmm_(dz_rest.reshape({(T - 1) * B, H}).t(), h_rest.reshape({(T - 1) * B, H}));
    }
    grad_w_hh = back(g_hh);
    grad_bias = back(dz2d.sum(0));
  }
  return {grad_input, back(carry), grad_w_ih, grad_w_hh, grad_bias};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn_forward", &rnn_forward_cpu);
  m.impl("rnn_backward", &rnn_backward_cpu);
}

}  // namespace fastrnn
