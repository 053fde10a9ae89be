// TORCH_LIBRARY_IMPL(fastrnn, CUDA): host side of the forward recurrence and BPTT
// (math in ../rnn.h, kernels in this folder, path choice in launch_plan.h).
// The input projection and all weight gradients are single cuBLAS GEMMs over T*B rows
// through ATen; the recurrence is a persistent kernel, or per-step cuBLAS GEMMs plus a
// fused pointwise kernel when W_hh does not fit on chip.
#include "../rnn.h"

#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <array>
#include <cstdlib>
#include <mutex>
#include <unordered_map>

#include "kernels.h"
#include "launch_plan.h"

namespace fastrnn {
namespace {

namespace ck = cuda_kernels;

// FASTRNN_CUDA_PATH=auto|single|grid|gemm forces a path (tests reach every path at
// small sizes with it); a forced persistent path that cannot run falls back to gemm.
plan::Force forced_path() {
  const char* env = std::getenv("FASTRNN_CUDA_PATH");
  plan::Force f = plan::kAuto;
  TORCH_CHECK_VALUE(plan::parse_force(env ? env : "", &f),
                    "fastrnn: FASTRNN_CUDA_PATH must be auto, single, grid or gemm, got '",
                    env, "'");
  return f;
}

struct KernelAttrs {
  std::array<int, plan::kNumKptFloat> regs{};  // per kpt, launch_plan order
  int static_smem = 0;                         // bytes, the largest of the kernels
};

// Attributes of the compiled kernels on one device, read once per device.
KernelAttrs kernel_attrs(int device, int elem_size, bool backward) {
  static std::mutex mu;
  static std::unordered_map<int, KernelAttrs> cache;
  const int key = (device * 16 + elem_size) * 2 + (backward ? 1 : 0);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    KernelAttrs a;
    a.static_smem = backward ? ck::bwd_kernel_attrs(elem_size, a.regs.data())
                             : ck::fwd_kernel_attrs(elem_size, a.regs.data());
    it = cache.emplace(key, a).first;
  }
  return it->second;
}

// The plan for this shape on the current device; a grid plan is only kept when the
// runtime's occupancy calculator confirms that all of its blocks are co-resident.
plan::Plan choose_plan(int64_t B, int64_t H, int elem_size, bool backward) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const KernelAttrs attrs = kernel_attrs(at::cuda::current_device(), elem_size, backward);
  plan::Device dev;
  dev.sm_count = prop->multiProcessorCount;
  // Dynamic shared memory up to the default per-block limit (no opt-in needed).
  dev.smem_per_block = int(prop->sharedMemPerBlock) - attrs.static_smem;
  dev.smem_per_sm = int(prop->sharedMemPerMultiprocessor);
  dev.regs_per_sm = prop->regsPerMultiprocessor;
  dev.max_threads_per_sm = prop->maxThreadsPerMultiProcessor;
  dev.max_blocks_per_sm = prop->maxBlocksPerMultiProcessor;
  dev.cooperative_launch = prop->cooperativeLaunch != 0;
  plan::Plan p = plan::make_plan(B, H, elem_size, dev, attrs.regs.data(), forced_path(),
                                 /*allow_resident=*/!backward);
  if (p.path != plan::kGemmFallback) {
    const int occ = backward ? ck::bwd_occupancy(elem_size, p) : ck::fwd_occupancy(elem_size, p);
    if (occ < 1 || (p.grid > 1 && int64_t(occ) * dev.sm_count < p.grid)) {
      p = plan::Plan{};  // kGemmFallback
    }
  }
  return p;
}

const int64_t* lengths_ptr(const std::optional<at::Tensor>& lengths, at::Tensor& keep) {
  if (!lengths.has_value()) return nullptr;
  keep = lengths->contiguous();
  return keep.const_data_ptr<int64_t>();
}

template <typename T>
void forward_recurrence(at::Tensor& y, const at::Tensor& h0, const at::Tensor& w_hh,
                        const int64_t* lengths, bool reverse, bool relu) {
  const int64_t T_ = y.size(0), B = y.size(1), H = y.size(2);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const plan::Plan p = choose_plan(B, H, sizeof(T), /*backward=*/false);
  if (p.path != plan::kGemmFallback) {
    ck::FwdArgs<T> a{y.data_ptr<T>(), h0.const_data_ptr<T>(), w_hh.const_data_ptr<T>(),
                     lengths, T_, B, H, reverse, relu};
    ck::launch_fwd_persistent<T>(a, p, stream);
    return;
  }
  const at::Tensor w_t = w_hh.t();
  at::Tensor h_prev = h0;
  for (int64_t n = 0; n < T_; ++n) {
    const int64_t t = reverse ? T_ - 1 - n : n;
    at::Tensor y_t = y.select(0, t);  // [B, H]
    y_t.addmm_(h_prev, w_t);
    ck::launch_fwd_pointwise<T>(y_t.data_ptr<T>(), h_prev.const_data_ptr<T>(), lengths, t, B,
                                H, relu, stream);
    h_prev = y_t;
  }
}

template <typename T>
void backward_recurrence(at::Tensor& dz, at::Tensor& carry, const at::Tensor& dy,
                         const at::Tensor& y, const at::Tensor& w_hh, const int64_t* lengths,
                         bool reverse, bool relu) {
  const int64_t T_ = dz.size(0), B = dz.size(1), H = dz.size(2);
  cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const plan::Plan p = choose_plan(B, H, sizeof(T), /*backward=*/true);
  if (p.path != plan::kGemmFallback) {
    ck::BwdArgs<T> a{dz.data_ptr<T>(), carry.data_ptr<T>(), dy.const_data_ptr<T>(),
                     y.const_data_ptr<T>(), w_hh.const_data_ptr<T>(), lengths, T_, B, H,
                     reverse, relu};
    ck::launch_bwd_persistent<T>(a, p, stream);
    return;
  }
  for (int64_t n = 0; n < T_; ++n) {
    const int64_t t = reverse ? n : T_ - 1 - n;
    const at::Tensor cur = carry.select(0, n & 1);  // [B, H]
    at::Tensor next = carry.select(0, (n + 1) & 1);  // [B, H]
    at::Tensor dz_t = dz.select(0, t);               // [B, H]
    ck::launch_bwd_pointwise<T>(dz_t.data_ptr<T>(), next.data_ptr<T>(),
                                dy.select(0, t).const_data_ptr<T>(),
                                y.select(0, t).const_data_ptr<T>(), cur.const_data_ptr<T>(),
                                lengths, t, B, H, relu, stream);
    next.addmm_(dz_t, w_hh);  // carry' = dz_t W_hh (+ g of inactive rows, set above)
  }
}

at::Tensor rnn_forward_cuda(const at::Tensor& input, const at::Tensor& hx,
                            const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                            const std::optional<at::Tensor>& bias_ih,
                            const std::optional<at::Tensor>& bias_hh,
                            const std::optional<at::Tensor>& lengths, bool reverse,
                            std::string_view nonlinearity) {
  check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths);
  const Activation act = parse_activation(nonlinearity);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = weight_hh.size(0);

  const at::Tensor x = as_compute(input, ct);         // [T, B, I]
  const at::Tensor h0 = as_compute(hx, ct);           // [B, H]
  const at::Tensor w_ih = as_compute(weight_ih, ct);  // [H, I]
  const at::Tensor w_hh = as_compute(weight_hh, ct);  // [H, H]
  at::Tensor y = at::empty({T, B, H}, x.options());   // [T, B, H]
  if (y.numel() > 0) {
    at::Tensor y2d = y.view({T * B, H});
    // The input projection of all steps is one GEMM, written straight into y.
    if (bias_ih.has_value()) {
      at::addmm_out(y2d, combined_bias(bias_ih, bias_hh, ct), x.view({T * B, I}), w_ih.t());
    } else {
      at::mm_out(y2d, x.view({T * B, I}), w_ih.t());
    }
    at::Tensor keep;
    const int64_t* len = lengths_ptr(lengths, keep);
    const bool relu = act == Activation::Relu;
    if (ct == at::kDouble) forward_recurrence<double>(y, h0, w_hh, len, reverse, relu);
    else forward_recurrence<float>(y, h0, w_hh, len, reverse, relu);
  }
  return ct == input.scalar_type() ? y : y.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rnn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hx,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const at::Tensor& output,
    const std::optional<at::Tensor>& lengths, bool reverse, std::string_view nonlinearity,
    std::array<bool, 2> output_mask) {
  check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths);
  const Activation act = parse_activation(nonlinearity);
  const c10::cuda::CUDAGuard guard(input.device());
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor dy = as_compute(grad_output, ct);     // [T, B, H]
  const at::Tensor y = as_compute(output, ct);           // [T, B, H]
  const at::Tensor w_hh = as_compute(weight_hh, ct);     // [H, H]
  at::Tensor dz = at::empty({T, B, H}, y.options());     // [T, B, H]
  at::Tensor carry = at::zeros({2, B, H}, y.options());  // [2, B, H] double buffer
  if (dz.numel() > 0) {
    at::Tensor keep;
    const int64_t* len = lengths_ptr(lengths, keep);
    const bool relu = act == Activation::Relu;
    if (ct == at::kDouble) backward_recurrence<double>(dz, carry, dy, y, w_hh, len, reverse, relu);
    else backward_recurrence<float>(dz, carry, dy, y, w_hh, len, reverse, relu);
  }
  // Step n writes carry[(n + 1) % 2], so the carry after all T steps is carry[T % 2].
  const at::Tensor grad_hx = carry.select(0, T & 1).clone();  // [B, H], not a view of carry
  return backward_gemms(dz, grad_hx, input, hx, weight_ih, y, reverse, output_mask);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn_forward", &rnn_forward_cuda);
  m.impl("rnn_backward", &rnn_backward_cuda);
}

}  // namespace fastrnn
