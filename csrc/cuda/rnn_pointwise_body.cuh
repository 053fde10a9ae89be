// The GEMM fallback's fused pointwise kernels (one launch per step, after cuBLAS has
// added the recurrent product). Compiled by nvcc (rnn_pointwise.cu) and by the SIMT
// simulation (../sim/sim_kernels.cpp); this is the only copy of their bodies.
#pragma once

#include "kernel_args.h"
#include "recurrence.cuh"

namespace fastrnn::FASTRNN_KERNEL_NS {

//   y_t = active ? act(y_t) : h_prev
template <typename T>
__global__ void fwd_pointwise_kernel(simt::ptr<T> y_t, simt::ptr<const T> __restrict__ h_prev,
                                     simt::ptr<const int64_t> __restrict__ lengths, int64_t t,
                                     int64_t B, int64_t H, bool relu) {
  const int64_t n = B * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / H;
    y_t[i] = row_active(lengths, b, t) ? act_fn(T(y_t[i]), relu) : T(h_prev[i]);
  }
}

//   g = dy_t + carry; dz_t = active ? g * act'(y_t) : 0; carry_next = active ? 0 : g
template <typename T>
__global__ void bwd_pointwise_kernel(simt::ptr<T> __restrict__ dz_t,
                                     simt::ptr<T> __restrict__ carry_next,
                                     simt::ptr<const T> __restrict__ dy_t,
                                     simt::ptr<const T> __restrict__ y_t,
                                     simt::ptr<const T> __restrict__ carry,
                                     simt::ptr<const int64_t> __restrict__ lengths, int64_t t,
                                     int64_t B, int64_t H, bool relu) {
  const int64_t n = B * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T g = dy_t[i] + carry[i];
    const bool active = row_active(lengths, i / H, t);
    dz_t[i] = active ? g * act_grad_from_output(T(y_t[i]), relu) : T(0);
    carry_next[i] = active ? T(0) : g;
  }
}

}  // namespace fastrnn::FASTRNN_KERNEL_NS
