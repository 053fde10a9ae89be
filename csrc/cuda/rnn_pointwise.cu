// Host-side launchers of the GEMM fallback's fused pointwise kernels (their bodies:
// rnn_pointwise_body.cuh, the one copy that the SIMT simulation compiles too). Used when
// W_hh does not fit on chip (launch_plan.h).
#include <c10/cuda/CUDAException.h>

#include "kernels.h"
#include "rnn_pointwise_body.cuh"

namespace fastrnn::cuda_kernels {

template <typename T>
void launch_fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t, int64_t B,
                          int64_t H, bool relu, cudaStream_t stream) {
  fwd_pointwise_kernel<T><<<pointwise_blocks(B * H), kPointwiseThreads, 0, stream>>>(
      y_t, h_prev, lengths, t, B, H, relu);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                          const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu,
                          cudaStream_t stream) {
  bwd_pointwise_kernel<T><<<pointwise_blocks(B * H), kPointwiseThreads, 0, stream>>>(
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
