// fastrnn::_rnn_stack_inference on the CPU: a whole stack of layers (and directions) in
// one call, for eager calls that autograd does not record (functional.py decides when).
//
// Why a second loop over the layers beside functional.rnn's: at small sizes the Python
// around a layer (its per-layer wrappers, hx[k], y[-1], torch.stack, each a Python-level
// tensor call) cost as much as the recurrence itself (T=1, B=8, H=64, one thread, Zen 3:
// fastrnn.RNN 62 us against 13 us for the op). functional.rnn stays the one loop that
// autograd, graphs (compile / export / trace), torch.func, dropout and the other backends
// go through; this one is what it calls when none of them is involved, and runs exactly
// the same per-layer op, so the results are the same bits.
#include "rnn_cpu.h"

#include <ATen/core/LegacyTypeDispatch.h>  // AutoDispatchBelowADInplaceOrView
#include <ATen/core/List.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

namespace fastrnn {
namespace {

// input [T, B, I] time-major (padded when lengths is given); hx [L * D, B, H] (None:
// zeros); weights:
// 4 per layer and direction in nn.RNN's order (weight_ih, weight_hh, bias_ih, bias_hh;
// the biases None when the model has none). Returns (output [T, B, D * H], h_n [L * D, B, H]).
std::tuple<at::Tensor, at::Tensor> rnn_stack_inference_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& hx_given,
    const c10::List<std::optional<at::Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const std::optional<at::Tensor>& lengths, std::string_view nonlinearity) {
  const int64_t D = bidirectional ? 2 : 1;
  TORCH_CHECK_VALUE(num_layers >= 1, "fastrnn: num_layers must be >= 1, got ", num_layers);
  TORCH_CHECK_VALUE(int64_t(weights.size()) == 4 * num_layers * D,
                    "fastrnn: weights must hold 4 entries (weight_ih, weight_hh, bias_ih, "
                    "bias_hh) per layer and direction, ", 4 * num_layers * D, " in all, got ",
                    weights.size());
  const auto weight = [&](int64_t i, const char* name) -> at::Tensor {
    const std::optional<at::Tensor> w = weights.get(i);
    TORCH_CHECK_VALUE(w.has_value(), "fastrnn: weights[", i, "] (", name, ") must be a tensor");
    return *w;
  };
  TORCH_CHECK(input.dim() == 3, "fastrnn: input must be 3-D [T, B, I], got ", input.dim(),
              "-D with shape ", input.sizes());
  const at::Tensor hx = hx_given.has_value()
                            ? *hx_given
                            : at::zeros({num_layers * D, input.size(1), weight(1, "weight_hh").size(0)},
                                        input.options());  // [L * D, B, H]
  TORCH_CHECK(hx.dim() == 3 && hx.size(0) == num_layers * D,
              "fastrnn: hx must be [num_layers * num_directions = ", num_layers * D,
              ", B, H], got shape ", hx.sizes());
  at::Tensor layer_input = input;
  std::vector<at::Tensor> h_n;
  h_n.reserve(num_layers * D);
  for (int64_t layer = 0; layer < num_layers; ++layer) {
    std::vector<at::Tensor> outs;
    for (int64_t direction = 0; direction < D; ++direction) {
      const int64_t k = layer * D + direction;
      const bool reverse = direction == 1;
      at::Tensor y = rnn_forward_cpu(layer_input, hx.select(0, k), weight(4 * k, "weight_ih"),
                                     weight(4 * k + 1, "weight_hh"), weights.get(4 * k + 2),
                                     weights.get(4 * k + 3), lengths, reverse, nonlinearity);
      h_n.push_back(y.select(0, reverse ? 0 : y.size(0) - 1));  // [B, H]
      outs.push_back(std::move(y));                              // [T, B, H]
    }
    layer_input = D == 1 ? outs[0] : at::cat(outs, 2);  // [T, B, D * H]
  }
  return {layer_input, at::stack(h_n)};
}

// The Autograd kernel: the op has no derivative, and autograd's generic fallback for that
// does not look inside a Tensor?[] argument, so weights that require grad would get no
// gradient without a word (and a tangent would be dropped). Refused up front instead;
// otherwise the call goes below autograd.
std::tuple<at::Tensor, at::Tensor> rnn_stack_inference_autograd(
    const at::Tensor& input, const std::optional<at::Tensor>& hx,
    const c10::List<std::optional<at::Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const std::optional<at::Tensor>& lengths, std::string_view nonlinearity) {
  // A gradient wanted (grad mode on and an argument requiring one), or a forward-mode
  // tangent on an argument (dual tensors: forward AD runs whatever grad mode says).
  const bool grad_mode = at::GradMode::is_enabled();
  const auto differentiated = [grad_mode](const at::Tensor& t) {
    return t.defined() && ((grad_mode && t.requires_grad()) || t._fw_grad(/*level=*/0).defined());
  };
  bool any = differentiated(input) || (hx.has_value() && differentiated(*hx));
  for (const std::optional<at::Tensor>& w : weights) {
    any = any || (w.has_value() && differentiated(*w));
  }
  TORCH_CHECK(!any,
              "fastrnn::_rnn_stack_inference is not differentiable (it serves calls that need no "
              "gradient) but an argument requires grad or carries a forward-mode tangent: call "
              "fastrnn.functional.rnn, which records the layers one at a time");
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastrnn::_rnn_stack_inference", "")
          .typed<decltype(rnn_stack_inference_cpu)>();
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(input, hx, weights, num_layers, bidirectional, lengths, nonlinearity);
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("_rnn_stack_inference", &fastrnn::rnn_stack_inference_cpu);
}

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("_rnn_stack_inference", &fastrnn::rnn_stack_inference_autograd);
}
