// fastrnn::_rnn_stack: a whole stack of layers (and directions) of fastrnn::rnn_forward in
// one call, differentiable through a C++ autograd node whose backward runs the stack of
// fastrnn::rnn_backward. For plain eager calls only (functional.rnn decides when).
//
// Why a second loop over the layers beside functional.rnn's: at small sizes the Python
// around a layer cost as much as the recurrence itself.
//   * Inference (T=1, B=8, H=64, one thread, Zen 3): fastrnn.RNN 62 us against 13 us for
//     the op; the per-layer wrappers, hx[k], y[-1] and torch.stack are each a Python-level
//     tensor call.
//   * Training (T=128, B=8, H=64, two threads): zero_grad + forward + backward 710 us
//     against 450 us for the two ops. The Python autograd.Function's forward, setup_context
//     and backward, and the glue between them, took the rest.
// functional.rnn stays the one loop that graphs (compile / export / trace), torch.func,
// forward-mode AD, dropout and the other backends go through; this one runs exactly the
// same per-layer ops (through the dispatcher, so dispatch modes still see each layer), so
// its outputs and gradients are the same bits.
//
// Gradients of gradients (create_graph=True): the node's backward then recomputes the stack
// through the per-layer op with autograd recording (its own registration, _op_glue.py,
// whose backward is differentiable) and differentiates that, keeping the graph.
#include "rnn.h"

#include <ATen/core/LegacyTypeDispatch.h>  // AutoDispatchBelowADInplaceOrView
#include <ATen/core/List.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <string>
#include <vector>

namespace fastrnn {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using LayerForward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&, const std::optional<at::Tensor>&,
                                const std::optional<at::Tensor>&,
                                const std::optional<at::Tensor>&, bool, c10::string_view);
using LayerBackward = Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const at::Tensor&, const at::Tensor&, const at::Tensor&,
                            const std::optional<at::Tensor>&, bool, c10::string_view,
                            std::array<bool, 2>);

const c10::TypedOperatorHandle<LayerForward>& layer_forward() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::rnn_forward", "")
                             .typed<LayerForward>();
  return op;
}

const c10::TypedOperatorHandle<LayerBackward>& layer_backward() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::rnn_backward", "")
                             .typed<LayerBackward>();
  return op;
}

// The op's arguments, checked: weights holds 4 entries per layer and direction in nn.RNN's
// order (weight_ih, weight_hh, bias_ih, bias_hh; a bias undefined when absent).
struct Stack {
  int64_t num_layers = 0;
  int64_t D = 1;  // directions
  std::vector<at::Tensor> weights;
  std::optional<at::Tensor> lengths;
  std::string nonlinearity;

  int64_t groups() const { return num_layers * D; }
  const at::Tensor& w(int64_t k, int64_t j) const { return weights[4 * k + j]; }
  std::optional<at::Tensor> bias(int64_t k, int64_t j) const {
    const at::Tensor& b = w(k, j);
    return b.defined() ? std::optional<at::Tensor>(b) : std::nullopt;
  }
};

Stack checked_stack(const at::Tensor& input, const c10::List<std::optional<at::Tensor>>& weights,
                    int64_t num_layers, bool bidirectional,
                    const std::optional<at::Tensor>& lengths, std::string_view nonlinearity) {
  Stack s;
  s.num_layers = num_layers;
  s.D = bidirectional ? 2 : 1;
  s.lengths = lengths;
  s.nonlinearity = std::string(nonlinearity);
  TORCH_CHECK_VALUE(num_layers >= 1, "fastrnn: num_layers must be >= 1, got ", num_layers);
  TORCH_CHECK_VALUE(int64_t(weights.size()) == 4 * s.groups(),
                    "fastrnn: weights must hold 4 entries (weight_ih, weight_hh, bias_ih, "
                    "bias_hh) per layer and direction, ", 4 * s.groups(), " in all, got ",
                    weights.size());
  s.weights.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::optional<at::Tensor> w = weights.get(i);
    TORCH_CHECK_VALUE(i % 4 >= 2 || w.has_value(), "fastrnn: weights[", i, "] (",
                      i % 4 == 0 ? "weight_ih" : "weight_hh", ") must be a tensor");
    s.weights.push_back(w.value_or(at::Tensor()));
  }
  TORCH_CHECK(input.dim() == 3, "fastrnn: input must be 3-D [T, B, I], got ", input.dim(),
              "-D with shape ", input.sizes());
  return s;
}

// hx as given, or zeros [L * D, B, H]; checked against the stack.
at::Tensor initial_state(const at::Tensor& input, const std::optional<at::Tensor>& hx,
                         const Stack& s) {
  const at::Tensor h = hx.has_value() ? *hx
                                      : at::zeros({s.groups(), input.size(1), s.w(0, 1).size(0)},
                                                  input.options());  // [L * D, B, H]
  TORCH_CHECK(h.dim() == 3 && h.size(0) == s.groups(),
              "fastrnn: hx must be [num_layers * num_directions = ", s.groups(),
              ", B, H], got shape ", h.sizes());
  return h;
}

// What the backward needs of the forward: each group's output and each layer's input.
struct Activations {
  std::vector<at::Tensor> y;             // [T, B, H] per group
  std::vector<at::Tensor> layer_input;   // [T, B, I or D * H] per layer
};

// The stack's forward: rnn.h's layers, one call of fastrnn::rnn_forward per group, whatever
// the caller's dispatch state makes of it (below autograd, or recorded for a double
// backward). Returns (output [T, B, D * H], h_n [L * D, B, H]); `keep` gets the activations.
std::tuple<at::Tensor, at::Tensor> run_stack(const at::Tensor& input, const at::Tensor& hx,
                                             const Stack& s, Activations* keep) {
  at::Tensor layer_input = input;
  std::vector<at::Tensor> h_n;
  h_n.reserve(s.groups());
  for (int64_t layer = 0; layer < s.num_layers; ++layer) {
    if (keep != nullptr) keep->layer_input.push_back(layer_input);
    std::vector<at::Tensor> outs;
    for (int64_t direction = 0; direction < s.D; ++direction) {
      const int64_t k = layer * s.D + direction;
      const bool reverse = direction == 1;
      at::Tensor y = layer_forward().call(layer_input, hx.select(0, k), s.w(k, 0), s.w(k, 1),
                                          s.bias(k, 2), s.bias(k, 3), s.lengths, reverse,
                                          s.nonlinearity);  // [T, B, H]
      h_n.push_back(y.select(0, reverse ? 0 : y.size(0) - 1));  // [B, H]
      if (keep != nullptr) keep->y.push_back(y);
      outs.push_back(std::move(y));
    }
    layer_input = s.D == 1 ? outs[0] : at::cat(outs, 2);  // [T, B, D * H]
  }
  return {layer_input, at::stack(h_n)};
}

// The CPU kernel: the forward alone, for calls autograd does not record (reached below
// autograd, so the per-layer calls go straight to their CPU kernel).
std::tuple<at::Tensor, at::Tensor> rnn_stack_cpu(
    const at::Tensor& input, const std::optional<at::Tensor>& hx,
    const c10::List<std::optional<at::Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const std::optional<at::Tensor>& lengths, std::string_view nonlinearity) {
  const Stack s = checked_stack(input, weights, num_layers, bidirectional, lengths, nonlinearity);
  return run_stack(input, initial_state(input, hx, s), s, nullptr);
}

// The autograd node. Its inputs (graph edges) are input, hx when given, and the defined
// weights, in that order; `Stack` rides along as a non-tensor argument.
struct RNNForwardStack : torch::autograd::Function<RNNForwardStack> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input,
                               const std::optional<at::Tensor>& hx, at::TensorList defined,
                               const Stack& s) {
    ctx->set_materialize_grads(false);  // an unused output's gradient stays undefined
    const at::Tensor h0 = initial_state(input, hx, s);  // [L * D, B, H]
    Activations keep;
    at::Tensor output, h_n;
    {
      const at::AutoDispatchBelowADInplaceOrView below_autograd;  // each layer: its kernel
      std::tie(output, h_n) = run_stack(input, h0, s, &keep);
    }
    // The caller owns the output (and may change it in place, as nn.RNN's): a copy, where
    // it would otherwise be the last layer's saved activation.
    if (s.D == 1) output = output.clone();
    // Saved: input, h0, the weights (all checked against in-place changes at backward), the
    // lengths, then every group's y and the input of each layer above the first.
    variable_list saved{input, h0};
    saved.insert(saved.end(), s.weights.begin(), s.weights.end());
    saved.push_back(s.lengths.value_or(at::Tensor()));
    saved.insert(saved.end(), keep.y.begin(), keep.y.end());
    saved.insert(saved.end(), keep.layer_input.begin() + 1, keep.layer_input.end());
    ctx->save_for_backward(std::move(saved));
    ctx->saved_data["num_layers"] = s.num_layers;
    ctx->saved_data["D"] = s.D;
    ctx->saved_data["nonlinearity"] = s.nonlinearity;
    ctx->saved_data["hx_given"] = hx.has_value();
    (void)defined;  // the edges; the weights are read from `s`, with their slots
    return {output, h_n};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    Stack s;
    s.num_layers = ctx->saved_data["num_layers"].toInt();
    s.D = ctx->saved_data["D"].toInt();
    s.nonlinearity = ctx->saved_data["nonlinearity"].toStringRef();
    const bool hx_given = ctx->saved_data["hx_given"].toBool();
    const int64_t G = s.groups();
    const at::Tensor& input = saved[0];
    const at::Tensor& h0 = saved[1];
    s.weights.assign(saved.begin() + 2, saved.begin() + 2 + 4 * G);
    const at::Tensor& lengths = saved[2 + 4 * G];
    if (lengths.defined()) s.lengths = lengths;
    const auto y = [&](int64_t k) -> const at::Tensor& { return saved[3 + 4 * G + k]; };
    const auto layer_input = [&](int64_t layer) -> const at::Tensor& {
      return layer == 0 ? input : saved[3 + 5 * G + layer - 1];
    };

    // Which edges want a gradient: input, hx (when given), then the defined weights.
    const size_t hx_edges = hx_given ? 1 : 0;
    std::vector<int64_t> edge(4 * G, -1);  // weight slot -> edge index
    for (int64_t i = 0, e = 1 + hx_edges; i < 4 * G; ++i) {
      if (s.weights[i].defined()) edge[i] = e++;
    }
    const bool input_needs = ctx->needs_input_grad(0);
    const bool hx_needs = hx_given && ctx->needs_input_grad(1);
    const auto weight_needs = [&](int64_t i) { return edge[i] >= 0 && ctx->needs_input_grad(edge[i]); };
    const auto group_needs = [&](int64_t k) {
      return weight_needs(4 * k) || weight_needs(4 * k + 1) || weight_needs(4 * k + 2) ||
             weight_needs(4 * k + 3);
    };

    std::vector<at::Tensor> weight_grads(4 * G);
    at::Tensor grad_input, grad_hx;

    if (at::GradMode::is_enabled()) {  // create_graph=True
      differentiable_backward(s, input, hx_given ? std::optional<at::Tensor>(h0) : std::nullopt,
                              grads, input_needs, hx_needs, weight_needs, grad_input, grad_hx,
                              weight_grads);
    } else {
      const at::AutoDispatchBelowADInplaceOrView below_autograd;
      // needs_below[layer]: a gradient is wanted of something under this layer (the input,
      // or a lower layer's weights or hx rows), so its dx is.
      std::vector<bool> needs_below(s.num_layers, input_needs);
      for (int64_t layer = 1; layer < s.num_layers; ++layer) {
        bool lower = needs_below[layer - 1] || hx_needs;
        for (int64_t d = 0; d < s.D; ++d) lower = lower || group_needs((layer - 1) * s.D + d);
        needs_below[layer] = lower;
      }
      std::vector<at::Tensor> grad_h0(G);
      at::Tensor d_out = grads[0];  // [T, B, D * H] or undefined
      const at::Tensor& d_hn = grads[1];  // [L * D, B, H] or undefined
      for (int64_t layer = s.num_layers - 1; layer >= 0; --layer) {
        at::Tensor d_in;  // [T, B, I or D * H]: this layer's input's gradient
        for (int64_t d = 0; d < s.D; ++d) {
          const int64_t k = layer * s.D + d;
          const bool reverse = d == 1;
          const bool need_w = group_needs(k);
          if (!needs_below[layer] && !need_w && !hx_needs) continue;
          const at::Tensor& yk = y(k);
          const int64_t H = yk.size(2);
          at::Tensor dy;  // [T, B, H]: rnn.h's dy, h_n's gradient added at the last step
          if (d_out.defined()) dy = s.D == 1 ? d_out : d_out.narrow(2, d * H, H);
          if (d_hn.defined()) {
            dy = dy.defined() ? dy.clone() : at::zeros_like(yk);
            dy.select(0, reverse ? 0 : dy.size(0) - 1).add_(d_hn.select(0, k));
          }
          if (!dy.defined()) dy = at::zeros_like(yk);
          auto [gx, ghx, gw_ih, gw_hh, gb] = layer_backward().call(
              dy, layer_input(layer), h0.select(0, k), s.w(k, 0), s.w(k, 1), yk, s.lengths,
              reverse, s.nonlinearity, {bool(needs_below[layer]), need_w});
          if (needs_below[layer]) d_in = d_in.defined() ? d_in.add_(gx) : gx;
          grad_h0[k] = ghx;
          if (need_w) {
            weight_grads[4 * k] = gw_ih;
            weight_grads[4 * k + 1] = gw_hh;
            if (s.weights[4 * k + 2].defined()) {
              // Two tensors: the two .grad fields must not alias (in-place clipping).
              weight_grads[4 * k + 2] = gb;
              weight_grads[4 * k + 3] = gb.clone();
            }
          }
        }
        d_out = d_in;
        if (!d_out.defined()) break;  // nothing below wants a gradient
      }
      if (input_needs) grad_input = d_out;
      if (hx_needs) grad_hx = at::stack(grad_h0);
    }

    // In forward's argument order: input, hx, one per defined weight, `Stack`.
    variable_list result{grad_input, grad_hx};
    for (int64_t i = 0; i < 4 * G; ++i) {
      if (edge[i] >= 0) result.push_back(weight_needs(i) ? weight_grads[i] : at::Tensor());
    }
    result.emplace_back();  // `Stack`
    return result;
  }

  // create_graph=True: recompute the stack with the per-layer op recording (its own
  // autograd, differentiable in its backward) and differentiate that, keeping the graph.
  template <class WeightNeeds>
  static void differentiable_backward(const Stack& s, const at::Tensor& input,
                                      const std::optional<at::Tensor>& hx,
                                      const variable_list& grads, bool input_needs, bool hx_needs,
                                      const WeightNeeds& weight_needs, at::Tensor& grad_input,
                                      at::Tensor& grad_hx, std::vector<at::Tensor>& weight_grads) {
    const auto [output, h_n] = run_stack(input, initial_state(input, hx, s), s, nullptr);
    variable_list outputs, grad_outputs, wrt;
    for (const auto& [o, g] : {std::pair(output, grads[0]), std::pair(h_n, grads[1])}) {
      if (g.defined()) {
        outputs.push_back(o);
        grad_outputs.push_back(g);
      }
    }
    std::vector<int64_t> slots;
    if (input_needs) wrt.push_back(input);
    if (hx_needs) wrt.push_back(*hx);
    for (int64_t i = 0; i < int64_t(s.weights.size()); ++i) {
      if (weight_needs(i)) {
        wrt.push_back(s.weights[i]);
        slots.push_back(i);
      }
    }
    if (outputs.empty() || wrt.empty()) return;
    variable_list g = torch::autograd::grad(outputs, wrt, grad_outputs, /*retain_graph=*/true,
                                            /*create_graph=*/true, /*allow_unused=*/true);
    const auto or_zeros = [](const at::Tensor& grad, const at::Tensor& of) {
      return grad.defined() ? grad : at::zeros_like(of);
    };
    size_t j = 0;
    if (input_needs) grad_input = or_zeros(g[j++], input);
    if (hx_needs) grad_hx = or_zeros(g[j++], *hx);
    for (const int64_t i : slots) weight_grads[i] = or_zeros(g[j++], s.weights[i]);
  }
};

// The Autograd kernel. A call that wants a gradient records one RNNForwardStack node; a call
// that wants none goes below autograd to the forward alone. Forward-mode tangents are
// refused: the node has no jvp, and functional.rnn sends those calls to the layer loop.
std::tuple<at::Tensor, at::Tensor> rnn_stack_autograd(
    const at::Tensor& input, const std::optional<at::Tensor>& hx,
    const c10::List<std::optional<at::Tensor>>& weights, int64_t num_layers, bool bidirectional,
    const std::optional<at::Tensor>& lengths, std::string_view nonlinearity) {
  const auto tangent = [](const at::Tensor& t) { return t.defined() && t._fw_grad(/*level=*/0).defined(); };
  bool any_tangent = tangent(input) || (hx.has_value() && tangent(*hx));
  bool wants_grad = input.requires_grad() || (hx.has_value() && hx->requires_grad());
  for (const std::optional<at::Tensor>& w : weights) {
    any_tangent = any_tangent || (w.has_value() && tangent(*w));
    wants_grad = wants_grad || (w.has_value() && w->requires_grad());
  }
  TORCH_CHECK(!any_tangent,
              "fastrnn::_rnn_stack has no forward-mode derivative but an argument carries a "
              "forward-mode tangent: call fastrnn.functional.rnn, which runs such calls "
              "through fastrnn.reference");
  if (wants_grad && at::GradMode::is_enabled()) {
    const Stack s = checked_stack(input, weights, num_layers, bidirectional, lengths, nonlinearity);
    std::vector<at::Tensor> defined;  // the node's weight edges
    for (const at::Tensor& w : s.weights) {
      if (w.defined()) defined.push_back(w);
    }
    const variable_list out = RNNForwardStack::apply(input, hx, at::TensorList(defined), s);
    return {out[0], out[1]};
  }
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("fastrnn::_rnn_stack", "")
                             .typed<decltype(rnn_stack_cpu)>();
  const at::AutoDispatchBelowADInplaceOrView below_autograd;
  return op.call(input, hx, weights, num_layers, bidirectional, lengths, nonlinearity);
}

}  // namespace
}  // namespace fastrnn

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("_rnn_stack", &fastrnn::rnn_stack_cpu);
}

TORCH_LIBRARY_IMPL(fastrnn, Autograd, m) {
  m.impl("_rnn_stack", &fastrnn::rnn_stack_autograd);
}
