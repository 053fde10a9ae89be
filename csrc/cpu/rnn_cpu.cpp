// TORCH_LIBRARY_IMPL(fastrnn, CPU): argument handling, packing, threads; the per-step
// math runs in the micro-kernels of kernels.h (math in ../rnn.h).
//
// Forward:  one fused step y_t = act(b + x_t W_ih^T + h_prev W_hh^T) in SIMD register
//           tiles; when the weights exceed L2, x W_ih^T + b first as one GEMM (project_first).
// Backward: the fused recurrence fills dz [T, B, H] and d_hx, then batched GEMMs give
//           dx, dW_ih, dW_hh and the bias gradient.
// Threads (at::get_num_threads() of them: torch's OpenMP team, or thread_pool.h in a
// build without OpenMP) split the batch once per call (rows are independent), so the time
// loop has no synchronisation at all.
#include "../rnn.h"
#include "kernels.h"
#include "stepwise.h"
#include "thread_pool.h"

#include <ATen/Parallel.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdlib>
#include <initializer_list>
#include <type_traits>
#include <utility>

namespace fastrnn {
namespace {

// Below this many multiply-adds per sequence waking a second thread costs more
// than it saves; below kMinParallelH a step is latency-bound (a few FMA chains of length
// H), so fewer rows per thread do not make it shorter.
constexpr int64_t kMinParallelWork = 1 << 20;
constexpr int64_t kMinParallelH = 64;
// Per-core L2 the fused forward step's weights should fit in (2 MiB on current x86 servers;
// a smaller one only moves the switch to project_first's path earlier).
constexpr int64_t kL2Bytes = int64_t(1) << 21;

cpu::Isa pick_isa() {
  cpu::Isa isa = cpu::Isa::Portable;
  const char* requested = nullptr;
  TORCH_CHECK(cpu::select_isa(&isa, &requested), "fastrnn: FASTRNN_CPU_ISA='",
              requested ? requested : "", "' is unknown or not supported by this CPU; expected "
              "one of auto|portable|avx2|avx512 (avx2: ",
              cpu::isa_supported(cpu::Isa::Avx2) ? "supported" : "unsupported", ", avx512: ",
              cpu::isa_supported(cpu::Isa::Avx512) ? "supported" : "unsupported", ")");
  return isa;
}

// The rows of M (kernels.h) stacked from parts = {(w, transpose)}, in the ISA's column
// panels; done once per call.
template <typename T>
at::Tensor pack_panels(cpu::Isa isa, std::initializer_list<std::pair<at::Tensor, bool>> parts) {
  int64_t K = 0, N = 0;
  for (const auto& [w, transpose] : parts) {
    K += transpose ? w.size(1) : w.size(0);
    N = transpose ? w.size(0) : w.size(1);
  }
  at::Tensor packed = at::empty({cpu::packed_size(isa, K, N, std::is_same_v<T, double>)},
                                parts.begin()->first.options());  // [ceil(N/P) * K * P]
  int64_t k0 = 0;
  for (const auto& [w, transpose] : parts) {
    const int64_t rows = transpose ? w.size(1) : w.size(0);
    cpu::pack(isa, w.template data_ptr<T>(), transpose, rows, N, K, k0, packed.template data_ptr<T>());
    k0 += rows;
  }
  return packed;
}

// Calls fn(b_begin, b_end) on disjoint batch ranges, one per thread, once per sequence.
// work = multiply-adds of the whole recurrence.
template <typename Fn>
void for_batch_blocks(int64_t work, int64_t B, int64_t H, const Fn& fn) {
  int64_t chunks = std::min<int64_t>(at::get_num_threads(), B);
  if (work < kMinParallelWork || H < kMinParallelH) chunks = 1;
  if (chunks <= 1) {
    fn(0, B);
    return;
  }
#ifdef _OPENMP
  // torch's own OpenMP threads: they are the ones MKL just used, still spinning, so they
  // start at once and no second set of threads competes with them for the cores.
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c * B / chunks, (c + 1) * B / chunks);
  });
#else
  cpu::run_parallel(chunks, [&](int64_t c) { fn(c * B / chunks, (c + 1) * B / chunks); });
#endif
}

// True when the packed [W_ih^T; W_hh^T] would not fit in a core's L2: then every thread
// would stream it from L3 at every step, so the input projection runs first as one GEMM
// over all steps (its weights read once) and the steps keep only W_hh^T.
bool project_first(int64_t I, int64_t H, int64_t elem_size) {
  return (I + H) * H * elem_size > kL2Bytes;
}

// Packing costs about kPackNsPerElement per weight element, once per call; the fused step
// saves about kStepCallNs per step over stepwise.h's two library calls. Estimates measured
// on the development machine (Xeon, AVX-512), used only to pick a path, not for results.
constexpr double kPackNsPerElement = 0.5;
constexpr double kStepCallNs = 6000.0;

// True when stepwise.h's path is the faster one (see there): a sequence too short to pay
// for packing the weights, or a batch too small to split over the threads while the
// weights would not fit one core's L2 (one thread would stream them at every step, where
// the BLAS splits each GEMM over all threads).
bool use_stepwise(int64_t T, int64_t B, int64_t packed_elements, int64_t elem_size) {
  // FASTRNN_CPU_PATH=auto|fused|stepwise (read at every call) forces a path, so that the
  // tests reach both at any size.
  const char* forced = std::getenv("FASTRNN_CPU_PATH");
  if (forced != nullptr && *forced != '\0') {
    const std::string_view path(forced);
    if (path == "fused") return false;
    if (path == "stepwise") return true;
    TORCH_CHECK(path == "auto", "fastrnn: FASTRNN_CPU_PATH='", path,
                "' is unknown; expected one of auto|fused|stepwise");
  }
  if (double(T) * kStepCallNs < double(packed_elements) * kPackNsPerElement) return true;
  const bool rows_for_every_thread = B >= at::get_num_threads();
  return !rows_for_every_thread && packed_elements * elem_size > kL2Bytes;
}

template <typename Scalar>
void forward_recurrence(cpu::Isa isa, const at::Tensor& x, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const at::Tensor& bias, const at::Tensor& h0,
                        at::Tensor& y, const at::Tensor& lengths, bool reverse, Activation act) {
  const int64_t T = y.size(0), B = y.size(1), I = x.size(2), H = y.size(2);
  const bool pre = project_first(I, H, sizeof(Scalar));
  if (use_stepwise(T, B, (pre ? H : I + H) * H, sizeof(Scalar))) {
    cpu::forward_stepwise(x, w_ih, w_hh, bias, h0, y, lengths, reverse, act);
    return;
  }
  if (pre) {
    at::Tensor y2d = y.view({T * B, H});  // [T*B, H]
    if (bias.defined()) {
      at::addmm_out(y2d, bias, x.view({T * B, I}), w_ih.t());
    } else {
      at::mm_out(y2d, x.view({T * B, I}), w_ih.t());
    }
  }
  const at::Tensor m = pre ? pack_panels<Scalar>(isa, {{w_hh, true}})                  // W_hh^T
                           : pack_panels<Scalar>(isa, {{w_ih, true}, {w_hh, true}});  // [W_ih^T; W_hh^T]
  cpu::ForwardArgs<Scalar> a{};
  a.T_ = T;
  a.B = B;
  a.I = pre ? 0 : I;
  a.H = H;
  a.m = m.data_ptr<Scalar>();
  a.x = x.data_ptr<Scalar>();
  a.h0 = h0.data_ptr<Scalar>();
  a.bias = bias.defined() ? bias.data_ptr<Scalar>() : nullptr;
  a.y_holds_pre = pre;
  a.y = y.data_ptr<Scalar>();
  a.lengths = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  a.reverse = reverse;
  a.act = act == Activation::Tanh ? cpu::Act::Tanh : cpu::Act::Relu;
  for_batch_blocks(a.T_ * a.B * a.H * (a.I + a.H), a.B, a.H,
                   [&](int64_t b0, int64_t b1) { cpu::forward_rows(isa, a, b0, b1); });
}

template <typename T>
void backward_recurrence(cpu::Isa isa, const at::Tensor& w_hh, const at::Tensor& dy,
                         const at::Tensor& y, at::Tensor& dz, at::Tensor& carry,
                         const at::Tensor& lengths, bool reverse, Activation act) {
  if (use_stepwise(y.size(0), y.size(1), w_hh.numel(), sizeof(T))) {
    cpu::backward_stepwise(w_hh, dy, y, dz, carry, lengths, reverse, act);
    return;
  }
  const at::Tensor m = pack_panels<T>(isa, {{w_hh, false}});  // W_hh
  at::Tensor scratch = at::empty_like(carry);                    // [B, H]
  cpu::BackwardArgs<T> a{};
  a.T_ = y.size(0);
  a.B = y.size(1);
  a.H = y.size(2);
  a.m = m.data_ptr<T>();
  a.dy = dy.data_ptr<T>();
  a.y = y.data_ptr<T>();
  a.dz = dz.data_ptr<T>();
  a.carry = carry.data_ptr<T>();
  a.scratch = scratch.data_ptr<T>();
  a.lengths = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  a.reverse = reverse;
  a.act = act == Activation::Tanh ? cpu::Act::Tanh : cpu::Act::Relu;
  for_batch_blocks(a.T_ * a.B * a.H * a.H, a.B, a.H,
                   [&](int64_t b0, int64_t b1) { cpu::backward_rows(isa, a, b0, b1); });
}

at::Tensor contiguous_lengths(const std::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->contiguous() : at::Tensor();
}

at::Tensor rnn_forward_cpu(const at::Tensor& input, const at::Tensor& hx,
                           const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                           const std::optional<at::Tensor>& bias_ih,
                           const std::optional<at::Tensor>& bias_hh,
                           const std::optional<at::Tensor>& lengths, bool reverse,
                           std::string_view nonlinearity) {
  check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths);
  const Activation act = parse_activation(nonlinearity);
  const cpu::Isa isa = pick_isa();
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor x = as_compute(input, ct);        // [T, B, I]
  const at::Tensor h0 = as_compute(hx, ct);          // [B, H]
  const at::Tensor w_ih = as_compute(weight_ih, ct); // [H, I]
  const at::Tensor w_hh = as_compute(weight_hh, ct); // [H, H]
  at::Tensor y = at::empty({T, B, H}, x.options());  // [T, B, H]
  if (B == 0 || H == 0) return y.to(input.scalar_type());
  // Both biases enter every step together.
  const at::Tensor bias =
      bias_ih.has_value() ? (bias_ih->to(ct) + bias_hh->to(ct)).contiguous() : at::Tensor();  // [H]
  const at::Tensor len = contiguous_lengths(lengths);  // [B]
  if (ct == at::kDouble) {
    forward_recurrence<double>(isa, x, w_ih, w_hh, bias, h0, y, len, reverse, act);
  } else {
    forward_recurrence<float>(isa, x, w_ih, w_hh, bias, h0, y, len, reverse, act);
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
  const cpu::Isa isa = pick_isa();
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor dy = as_compute(grad_output, ct);  // [T, B, H]
  const at::Tensor y = as_compute(output, ct);        // [T, B, H]
  const at::Tensor w_hh = as_compute(weight_hh, ct);  // [H, H]
  at::Tensor dz = at::empty({T, B, H}, y.options());  // [T, B, H]
  at::Tensor carry = at::zeros({B, H}, y.options());  // [B, H]
  if (B > 0 && H > 0) {
    const at::Tensor len = contiguous_lengths(lengths);  // [B]
    if (ct == at::kDouble) {
      backward_recurrence<double>(isa, w_hh, dy, y, dz, carry, len, reverse, act);
    } else {
      backward_recurrence<float>(isa, w_hh, dy, y, dz, carry, len, reverse, act);
    }
  } else {
    dz.zero_();
  }
  return backward_gemms(dz, carry, input, hx, weight_ih, y, reverse, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn_forward", &rnn_forward_cpu);
  m.impl("rnn_backward", &rnn_backward_cpu);
}

}  // namespace fastrnn
