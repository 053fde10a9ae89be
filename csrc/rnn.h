// fastrnn: the op contract every backend implements, and the math, written once.
//
// ---------------------------------------------------------------------------
// Shapes (one layer, one direction; time-major, contiguous)
//   T = sequence length, B = batch, I = input features, H = hidden features
//   input      x   [T, B, I]
//   hx         h0  [B, H]
//   weight_ih  Wx  [H, I]        bias_ih  bx  [H]   (optional; both or neither)
//   weight_hh  Wh  [H, H]        bias_hh  bh  [H]
//   lengths    L   [B] int64     (optional; on the device of x; any value is safe:
//                                 L_b <= 0 never updates row b, L_b >= T always does)
//   output     y   [T, B, H]
//
// Forward (reverse=false visits t = 0 .. T-1; reverse=true visits t = T-1 .. 0;
// "prev(t)" is the step visited before t, and h_prev(first) = h0):
//   active(t, b) = lengths is None or t < L_b
//   z_t = x_t Wx^T + bx + bh + h_prev(t) Wh^T                     (pre-activation)
//   y_t = active ? act(z_t) : h_prev(t)                            (act = tanh | relu)
// An inactive row carries its state unchanged, so the last visited step holds
// every row's final state: h_n = y[T-1] (forward) or y[0] (reverse), for all rows,
// packed or not. Reverse + lengths starts each row at its own last step L_b - 1,
// which is exactly the backward direction of a packed sequence.
//
// Backward (BPTT). Given dy = dLoss/dy [T, B, H] (the gradient of h_n already
// added into the last visited step of dy), visit the steps in the opposite order
// and carry g, the total gradient reaching h_t:
//   g     = dy_t + carry                         (carry starts at 0)
//   dz_t  = active ? g * act'(y_t) : 0           tanh' = 1 - y^2,  relu' = [y > 0]
//   carry = dz_t Wh + (active ? 0 : g)           = dLoss/dh_prev(t)
// and after the loop, as batched GEMMs over all T*B rows:
//   d_hx = carry                                  [B, H]
//   dx   = dz Wx                                  [T, B, I]
//   dWx  = dz^T x                                 [H, I]
//   dWh  = sum_t dz_t^T h_prev(t)                 [H, H]
//   dbx  = dbh = sum_{t,b} dz                     [H]
// Only x, h0, the weights and y are needed: act' is a function of y, and
// h_prev(t) is y of the previously visited step (or h0).
//
// Reduced precision: float16 / bfloat16 tensors are computed in float32 and the
// results rounded once at the end of each op.
// ---------------------------------------------------------------------------
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include <array>
#include <string_view>
#include <tuple>

namespace fastrnn {

// The op schemas, written once: registered as fastrnn::* (rnn_ops.cpp) and, for the SIMT
// simulation of the CUDA kernels, as fastrnn_cuda_sim::* (sim/rnn_sim.cpp).
inline constexpr const char* kRnnForwardSchema =
    "rnn_forward(Tensor input, Tensor hx, Tensor weight_ih, Tensor weight_hh, "
    "Tensor? bias_ih, Tensor? bias_hh, Tensor? lengths, bool reverse, "
    "str nonlinearity) -> Tensor";
inline constexpr const char* kRnnBackwardSchema =
    "rnn_backward(Tensor grad_output, Tensor input, Tensor hx, Tensor weight_ih, "
    "Tensor weight_hh, Tensor output, Tensor? lengths, bool reverse, "
    "str nonlinearity, bool[2] output_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)";

enum class Activation { Tanh, Relu };

// Parses the schema's `nonlinearity` string; errors name the argument.
Activation parse_activation(std::string_view nonlinearity);

// Argument checks shared by every device's forward and backward:
// ranks, sizes, dtypes, devices and contiguity-independent strides. Throws c10::Error (ValueError /
// RuntimeError on the Python side) naming the offending argument.
void check_forward_args(const at::Tensor& input, const at::Tensor& hx,
                        const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                        const std::optional<at::Tensor>& bias_ih,
                        const std::optional<at::Tensor>& bias_hh,
                        const std::optional<at::Tensor>& lengths);

void check_backward_args(const at::Tensor& grad_output, const at::Tensor& input,
                         const at::Tensor& hx, const at::Tensor& weight_ih,
                         const at::Tensor& weight_hh, const at::Tensor& output,
                         const std::optional<at::Tensor>& lengths);

// ---- Host helpers every device implementation shares (rnn_common.cpp) ----

// An uninitialised contiguous tensor of `sizes` on like's device, of like's dtype unless
// `dtype` is given: on the CPU from the ops' buffer cache (cpu/block_cache.h: no page faults
// for a call's large buffers when the previous call's are free again), elsewhere at::empty.
at::Tensor new_buffer(at::IntArrayRef sizes, const at::Tensor& like,
                      std::optional<at::ScalarType> dtype = std::nullopt);

// float16 / bfloat16 are computed in float32; other types in themselves.
at::ScalarType compute_type(at::ScalarType t);

// t in the compute type, contiguous (no copy when it already is).
at::Tensor as_compute(const at::Tensor& t, at::ScalarType ct);

// bx + bh (both biases enter every step together, rnn.h's z_t) in the compute type,
// contiguous [H]; an undefined tensor when there is no bias. The one place they are summed
// (fastrnn/reference.py's combined_bias is its Python twin).
at::Tensor combined_bias(const std::optional<at::Tensor>& bias_ih,
                         const std::optional<at::Tensor>& bias_hh, at::ScalarType ct);

// (grad_input, grad_hx, grad_weight_ih, grad_weight_hh, grad_bias), as rnn_backward returns.
using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// rnn_backward after its reverse-time loop: dx, dWx, dWh and the bias gradient as batched
// GEMMs over all T*B rows (the "after the loop" block above), skipping what output_mask
// does not ask for, each rounded to input's dtype.
//   dz [T, B, H] and y [T, B, H] in the compute type; grad_hx [B, H] = the final carry.
Grads backward_gemms(const at::Tensor& dz, const at::Tensor& grad_hx, const at::Tensor& input,
                     const at::Tensor& hx, const at::Tensor& weight_ih, const at::Tensor& y,
                     bool reverse, std::array<bool, 2> output_mask);

}  // namespace fastrnn
