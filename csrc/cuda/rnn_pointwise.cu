// The GEMM fallback's fused pointwise kernels (one launch per step, after cuBLAS has
// added the recurrent product). Used when W_hh does not fit on chip (launch_plan.h).
#include <c10/cuda/CUDAException.h>

#include "kernels.h"
#include "recurrence.cuh"

namespace fastrnn::cuda_kernels {
namespace {

constexpr int kPointwiseThreads = 256;

template <typename T>
__global__ void fwd_pointwise_kernel(T* y_t, const T* __restrict__ h_prev,
                                     const int64_t* __restrict__ lengths, int64_t t, int64_t B,
                                     int64_t H, bool relu) {
  const int64_t n = B * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t b = i / H;
    y_t[i] = row_active(lengths, b, t) ? act_fn(y_t[i], relu) : h_prev[i];
  }
}

template <typename T>
__global__ void bwd_pointwise_kernel(T* __restrict__ dz_t, T* __restrict__ carry_next,
                                     const T* __restrict__ dy_t, const T* __restrict__ y_t,
                                     const T* __restrict__ carry,
                                     const int64_t* __restrict__ lengths, int64_t t, int64_t B,
                                     int64_t H, bool relu) {
  const int64_t n = B * H;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const T g = dy_t[i] + carry[i];
    const bool active = row_active(lengths, i / H, t);
    dz_t[i] = active ? g * act_grad_from_output(y_t[i], relu) : T(0);
    carry_next[i] = active ? T(0) : g;
  }
}

int blocks_for(int64_t n) {
  const int64_t b = (n + kPointwiseThreads - 1) / kPointwiseThreads;
  return int(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

}  // namespace

template <typename T>
void launch_fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t, int64_t B,
                          int64_t H, bool relu, cudaStream_t stream) {
  fwd_pointwise_kernel<T><<<blocks_for(B * H), kPointwiseThreads, 0, stream>>>(
      y_t, h_prev, lengths, t, B, H, relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                          const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu,
                          cudaStream_t stream) {
  bwd_pointwise_kernel<T><<<blocks_for(B * H), kPointwiseThreads, 0, stream>>>(
      dz_t, carry_next, dy_t, y_t, carry, lengths, t, B, H, relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

#define FASTRNN_INSTANTIATE(T)                                                              \
  template void launch_fwd_pointwise<T>(T*, const T*, const int64_t*, int64_t, int64_t,    \
                                        int64_t, bool, cudaStream_t);                       \
  template void launch_bwd_pointwise<T>(T*, T*, const T*, const T*, const T*,              \
                                        const int64_t*, int64_t, int64_t, int64_t, bool,    \
                                        cudaStream_t);
FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cuda_kernels
