// The host side of the CUDA recurrence, written once for two targets: the GPU
// (rnn_cuda.cpp, Target = CudaTarget) and the SIMT simulation (../sim/rnn_sim.cpp,
// Target = SimTarget). Argument checks, the compute type, the input projection and weight
// gradients as ATen GEMMs, the plan, the persistent launch or the per-step GEMM fallback,
// and the launch record all live here; a Target only supplies
//   Guard                      a device guard constructible from at::Device
//   kTarget                    LaunchRecord::target (0 cuda, 1 simulation)
//   plan(shape, mma)           the launch plan for its device (launch_plan.h make_plan;
//                              mma: the model's MmaType, for the tensor-core tiles)
//   fwd_persistent<T>(args, plan), bwd_persistent<T>(args, plan)
//   fwd_tiled<T>(args, plan), bwd_tiled<T>(args, plan)   the tiled family (tiled_body.cuh)
//   fwd_pointwise<T>(...), bwd_pointwise<T>(...)   the fallback's per-step kernels
// Math and shapes: ../rnn.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "../rnn.h"
#include "kernel_args.h"
#include "last_plan.h"
#include "launch_plan.h"
#include "path_override.h"

namespace fastrnn::cuda_host {

// FASTRNN_CUDA_PATH=auto|single|grid|gemm|tiled|tiled_mma forces a path (tests reach every path at
// small sizes with it); a forced persistent path that cannot run falls back to gemm.
// A per-thread override (path_override.h: the measured choice running its winner) wins.
inline plan::Force forced_path() {
  plan::Force f = plan::kAuto;
  if (plan::path_override(&f)) return f;
  const char* env = std::getenv("FASTRNN_CUDA_PATH");
  TORCH_CHECK_VALUE(plan::parse_force(env ? env : "", &f),
                    "fastrnn: FASTRNN_CUDA_PATH must be auto, single, grid, gemm, tiled or "
                    "tiled_mma, got '",
                    env, "'");
  return f;
}

inline void record(int target, bool backward, const plan::Plan& p, int64_t T, int64_t B,
                   int64_t H, int elem_size) {
  plan::LaunchRecord r;
  r.target = target;
  r.backward = backward ? 1 : 0;
  r.steps = T;
  r.batch = B;
  r.hidden = H;
  r.elem_size = elem_size;
  if (p.path == plan::kGemmFallback) {
    r.path = plan::RecordedPath::kGemm;
    r.blocks = cuda_kernels::pointwise_blocks(B * H);
    r.threads_per_block = cuda_kernels::kPointwiseThreads;
    r.tiles_per_step = 1;
    r.launches = int(T);
  } else if (p.path == plan::kTiled) {
    r.path = plan::RecordedPath::kTiled;
    r.blocks = p.grid;
    r.threads_per_block = p.threads;
    r.tiles_per_step = 1;  // every block keeps its tile: one tile per block and step
    r.rows_per_tile = p.tile_rows;
    r.smem_bytes = p.smem_bytes;
    r.launches = 1;
    r.tile_cols = p.tile_cols;
    r.micro_r = p.micro_r;
    r.micro_c = p.micro_c;
    r.grid_barrier = p.col_tiles > 1 ? 1 : 0;
    r.mma = p.mma;
  } else {
    r.path = p.resident ? plan::RecordedPath::kResident
             : p.path == plan::kPersistentSingle ? plan::RecordedPath::kSingle
                                                 : plan::RecordedPath::kGrid;
    r.blocks = p.grid;
    r.threads_per_block = p.threads;
    r.tiles_per_step = p.resident ? 1 : int(plan::ceil_div(B, p.rows_per_tile));
    r.kpt = p.kpt;
    r.ks = p.ks;
    r.rows_per_tile = p.rows_per_tile;
    r.smem_bytes = p.smem_bytes;
    r.launches = 1;
  }
  plan::record_launch(r);
}

// The tensor-core path multiplies W_hh in the model's own 16-bit type (exactly its fp32
// value, tiled_body.cuh): the parameter itself, contiguous, or undefined for other types.
inline at::Tensor mma_weight(const at::Tensor& weight_hh) {
  const auto t = weight_hh.scalar_type();
  return t == at::kHalf || t == at::kBFloat16 ? weight_hh.contiguous() : at::Tensor();
}
inline int mma_type(const at::Tensor& w16) {
  if (!w16.defined()) return plan::kMmaNone;
  return w16.scalar_type() == at::kBFloat16 ? plan::kMmaBF16 : plan::kMmaF16;
}

inline const int64_t* lengths_ptr(const std::optional<at::Tensor>& lengths, at::Tensor& keep) {
  if (!lengths.has_value()) return nullptr;
  keep = lengths->contiguous();
  return keep.const_data_ptr<int64_t>();
}

// What the plan is ranked for (cost_model.h Shape): this call's steps, batch, width, type
// (the compute type's size; 2 for a float16/bfloat16 model, mma set, whose tensor-core tiles
// the plan weighs), direction and whether lengths are given.
inline cost::Shape plan_shape(int64_t T_, int64_t B, int64_t H, int elem_size, bool backward,
                              const int64_t* lengths, int mma) {
  cost::Shape s;
  s.T = T_;
  s.B = B;
  s.H = H;
  s.elem_size = mma != plan::kMmaNone ? 2 : elem_size;
  s.backward = backward;
  s.packed = lengths != nullptr;
  return s;
}

template <class Target, typename T>
void forward_recurrence(at::Tensor& y, const at::Tensor& h0, const at::Tensor& w_hh,
                        const at::Tensor& w16, const int64_t* lengths, bool reverse, bool relu) {
  const int64_t T_ = y.size(0), B = y.size(1), H = y.size(2);
  const plan::Plan p = Target::plan(
      plan_shape(T_, B, H, sizeof(T), /*backward=*/false, lengths, mma_type(w16)), mma_type(w16));
  record(Target::kTarget, false, p, T_, B, H, sizeof(T));
  if (p.path != plan::kGemmFallback) {
    cuda_kernels::FwdArgs<T> a{y.data_ptr<T>(), h0.const_data_ptr<T>(),
                               w_hh.const_data_ptr<T>(), lengths, T_, B, H, reverse, relu,
                               p.mma ? w16.const_data_ptr() : nullptr};
    if (p.path == plan::kTiled) Target::template fwd_tiled<T>(a, p);
    else Target::template fwd_persistent<T>(a, p);
    return;
  }
  const at::Tensor w_t = w_hh.t();
  at::Tensor h_prev = h0;
  for (int64_t n = 0; n < T_; ++n) {
    const int64_t t = reverse ? T_ - 1 - n : n;
    at::Tensor y_t = y.select(0, t);  // [B, H]
    y_t.addmm_(h_prev, w_t);
    Target::template fwd_pointwise<T>(y_t.data_ptr<T>(), h_prev.const_data_ptr<T>(), lengths,
                                      t, B, H, relu);
    h_prev = y_t;
  }
}

template <class Target, typename T>
void backward_recurrence(at::Tensor& dz, at::Tensor& carry, const at::Tensor& dy,
                         const at::Tensor& y, const at::Tensor& w_hh, const at::Tensor& w16,
                         const int64_t* lengths, bool reverse, bool relu) {
  const int64_t T_ = dz.size(0), B = dz.size(1), H = dz.size(2);
  const plan::Plan p = Target::plan(
      plan_shape(T_, B, H, sizeof(T), /*backward=*/true, lengths, mma_type(w16)), mma_type(w16));
  record(Target::kTarget, true, p, T_, B, H, sizeof(T));
  if (p.path != plan::kGemmFallback) {
    cuda_kernels::BwdArgs<T> a{dz.data_ptr<T>(), carry.data_ptr<T>(), dy.const_data_ptr<T>(),
                               y.const_data_ptr<T>(), w_hh.const_data_ptr<T>(), lengths,
                               T_, B, H, reverse, relu, p.mma ? w16.const_data_ptr() : nullptr};
    if (p.path == plan::kTiled) Target::template bwd_tiled<T>(a, p);
    else Target::template bwd_persistent<T>(a, p);
    return;
  }
  for (int64_t n = 0; n < T_; ++n) {
    const int64_t t = reverse ? n : T_ - 1 - n;
    const at::Tensor cur = carry.select(0, n & 1);   // [B, H]
    at::Tensor next = carry.select(0, (n + 1) & 1);  // [B, H]
    at::Tensor dz_t = dz.select(0, t);               // [B, H]
    Target::template bwd_pointwise<T>(dz_t.data_ptr<T>(), next.data_ptr<T>(),
                                      dy.select(0, t).const_data_ptr<T>(),
                                      y.select(0, t).const_data_ptr<T>(),
                                      cur.const_data_ptr<T>(), lengths, t, B, H, relu);
    next.addmm_(dz_t, w_hh);  // carry' = dz_t W_hh (+ g of inactive rows, set above)
  }
}

template <class Target>
at::Tensor rnn_forward(const at::Tensor& input, const at::Tensor& hx, const at::Tensor& weight_ih,
                       const at::Tensor& weight_hh, const std::optional<at::Tensor>& bias_ih,
                       const std::optional<at::Tensor>& bias_hh,
                       const std::optional<at::Tensor>& lengths, bool reverse,
                       std::string_view nonlinearity) {
  check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths);
  const Activation act = parse_activation(nonlinearity);
  const typename Target::Guard guard(input.device());
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1), I = input.size(2);
  const int64_t H = weight_hh.size(0);

  const at::Tensor x = as_compute(input, ct);         // [T, B, I]
  const at::Tensor h0 = as_compute(hx, ct);           // [B, H]
  const at::Tensor w_ih = as_compute(weight_ih, ct);  // [H, I]
  const at::Tensor w_hh = as_compute(weight_hh, ct);  // [H, H]
  const at::Tensor w16 = mma_weight(weight_hh);        // [H, H] fp16/bf16, or undefined
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
    if (ct == at::kDouble) {
      forward_recurrence<Target, double>(y, h0, w_hh, w16, len, reverse, relu);
    } else {
      forward_recurrence<Target, float>(y, h0, w_hh, w16, len, reverse, relu);
    }
  }
  return ct == input.scalar_type() ? y : y.to(input.scalar_type());
}

template <class Target>
Grads rnn_backward(const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hx,
                   const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                   const at::Tensor& output, const std::optional<at::Tensor>& lengths,
                   bool reverse, std::string_view nonlinearity, std::array<bool, 2> output_mask) {
  check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths);
  const Activation act = parse_activation(nonlinearity);
  const typename Target::Guard guard(input.device());
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor dy = as_compute(grad_output, ct);     // [T, B, H]
  const at::Tensor y = as_compute(output, ct);           // [T, B, H]
  const at::Tensor w_hh = as_compute(weight_hh, ct);     // [H, H]
  const at::Tensor w16 = mma_weight(weight_hh);           // [H, H] fp16/bf16, or undefined
  at::Tensor dz = at::empty({T, B, H}, y.options());     // [T, B, H]
  at::Tensor carry = at::zeros({2, B, H}, y.options());  // [2, B, H] double buffer
  if (dz.numel() > 0) {
    at::Tensor keep;
    const int64_t* len = lengths_ptr(lengths, keep);
    const bool relu = act == Activation::Relu;
    if (ct == at::kDouble) {
      backward_recurrence<Target, double>(dz, carry, dy, y, w_hh, w16, len, reverse, relu);
    } else {
      backward_recurrence<Target, float>(dz, carry, dy, y, w_hh, w16, len, reverse, relu);
    }
  }
  // Step n writes carry[(n + 1) % 2], so the carry after all T steps is carry[T % 2].
  const at::Tensor grad_hx = carry.select(0, T & 1).clone();  // [B, H], not a view of carry
  return backward_gemms(dz, grad_hx, input, hx, weight_ih, y, reverse, output_mask);
}

}  // namespace fastrnn::cuda_host
