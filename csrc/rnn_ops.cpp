// The fastrnn op schemas (TORCH_LIBRARY) and the argument checks every device
// implementation calls first. The math is in rnn.h.
#include "rnn.h"

#include <Python.h>
#include <torch/library.h>

namespace fastrnn {

Activation parse_activation(std::string_view nonlinearity) {
  if (nonlinearity == "tanh") return Activation::Tanh;
  if (nonlinearity == "relu") return Activation::Relu;
  TORCH_CHECK_VALUE(false, "fastrnn: nonlinearity must be 'tanh' or 'relu', got '",
                    std::string(nonlinearity), "'");
}

namespace {

void check_float(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  TORCH_CHECK_VALUE(s == at::kFloat || s == at::kDouble || s == at::kHalf || s == at::kBFloat16,
                    "fastrnn: ", name, " must be a floating point tensor (float32, float64, ",
                    "float16 or bfloat16), got ", s);
}

void check_like(const at::Tensor& t, const at::Tensor& input, const char* name) {
  TORCH_CHECK(t.scalar_type() == input.scalar_type(), "fastrnn: ", name,
              " must have the dtype of input (", input.scalar_type(), "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == input.device(), "fastrnn: ", name,
              " must be on the device of input (", input.device(), "), got ",
              t.device());
}

void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK(t.sizes() == expected, "fastrnn: ", name, " must have shape ", expected,
              ", got ", t.sizes());
}

}  // namespace

void check_forward_args(const at::Tensor& input, const at::Tensor& hx,
                        const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                        const std::optional<at::Tensor>& bias_ih,
                        const std::optional<at::Tensor>& bias_hh,
                        const std::optional<at::Tensor>& lengths) {
  TORCH_CHECK(input.dim() == 3, "fastrnn: input must be 3-D [T, B, I], got ",
              input.dim(), "-D with shape ", input.sizes());
  check_float(input, "input");
  TORCH_CHECK(input.size(0) > 0, "fastrnn: input must have sequence length T > 0, got ",
              input.sizes());
  const int64_t B = input.size(1), I = input.size(2);
  TORCH_CHECK(weight_hh.dim() == 2, "fastrnn: weight_hh must be 2-D [H, H], got ",
              weight_hh.sizes());
  const int64_t H = weight_hh.size(0);
  check_shape(weight_hh, {H, H}, "weight_hh");
  check_shape(weight_ih, {H, I}, "weight_ih");
  check_shape(hx, {B, H}, "hx");
  check_like(weight_ih, input, "weight_ih");
  check_like(weight_hh, input, "weight_hh");
  check_like(hx, input, "hx");
  TORCH_CHECK(bias_ih.has_value() == bias_hh.has_value(),
              "fastrnn: bias_ih and bias_hh must be given together");
  if (bias_ih.has_value()) {
    check_shape(*bias_ih, {H}, "bias_ih");
    check_shape(*bias_hh, {H}, "bias_hh");
    check_like(*bias_ih, input, "bias_ih");
    check_like(*bias_hh, input, "bias_hh");
  }
  if (lengths.has_value()) {
    check_shape(*lengths, {B}, "lengths");
    TORCH_CHECK(lengths->scalar_type() == at::kLong,
                "fastrnn: lengths must be int64, got ", lengths->scalar_type());
    TORCH_CHECK(lengths->device() == input.device(),
                "fastrnn: lengths must be on the device of input (", input.device(),
                "), got ", lengths->device());
  }
}

void check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& hx, const at::Tensor& weight_ih,
                         const at::Tensor& weight_hh, const at::Tensor& output,
                         const std::optional<at::Tensor>& lengths) {
  check_forward_args(input, hx, weight_ih, weight_hh, std::nullopt, std::nullopt, lengths);
  const std::array<int64_t, 3> y_shape{input.size(0), input.size(1), weight_hh.size(0)};
  check_shape(output, y_shape, "output");
  check_shape(grad_output, y_shape, "grad_output");
  check_like(output, input, "output");
  check_like(grad_output, input, "grad_output");
}

}  // namespace fastrnn

TORCH_LIBRARY(fastrnn, m) {
  // One layer, one direction. Returns y [T, B, H]; h_n is y[T-1] (or y[0] if reverse).
  m.def(fastrnn::kRnnForwardSchema);
  // BPTT for rnn_forward. output_mask = (grad_input, grad_weights): a False entry
  // skips that GEMM and returns an empty tensor in its place(s).
  // Returns (grad_input [T,B,I], grad_hx [B,H], grad_weight_ih [H,I],
  //          grad_weight_hh [H,H], grad_bias [H]); grad_bias serves both biases.
  m.def(fastrnn::kRnnBackwardSchema);
  // A stack of rnn_forward layers (weights: 4 per layer and direction, the biases None when
  // absent; hx None: zeros) in one call: (output [T, B, D*H], h_n [L*D, B, H]). CPU only;
  // differentiable through a C++ autograd node (reverse mode only; stack_ops.cpp).
  m.def("_rnn_stack(Tensor input, Tensor? hx, Tensor?[] weights, int num_layers, "
        "bool bidirectional, Tensor? lengths, str nonlinearity) -> (Tensor, Tensor)");
}

// `import fastrnn._C` loads this library, which runs the registrations above.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
