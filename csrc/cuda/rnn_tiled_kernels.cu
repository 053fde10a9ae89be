// Host-side launchers of the tiled persistent kernels, forward and BPTT (their one body:
// tiled_body.cuh, which the SIMT simulation compiles too).
#include <c10/cuda/CUDAException.h>

#include "kernels.h"
#include "kpt_dispatch.h"
#include "tiled_body.cuh"

namespace fastrnn::cuda_kernels {
namespace {

template <typename T, bool kBackward>
const void* tiled_fn(int micro_r, int micro_c) {
  using Args = std::conditional_t<kBackward, BwdArgs<T>, FwdArgs<T>>;
  const void* fn = nullptr;
  dispatch_micro(micro_r, micro_c, [&](auto mr, auto mc) {
    fn = reinterpret_cast<const void*>(&tiled_kernel<T, decltype(mr)::value, decltype(mc)::value, Args>);
  });
  return fn;
}

template <bool kBackward>
const void* tiled_fn(int elem_size, int micro_r, int micro_c) {
  return elem_size == 8 ? tiled_fn<double, kBackward>(micro_r, micro_c)
                        : tiled_fn<float, kBackward>(micro_r, micro_c);
}

// Lets every instantiation use dynamic shared memory up to `bytes` (the opt-in limit).
void allow_smem(const void* fn, int bytes) {
  C10_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
}

// One block per tile; cooperative only when column tiles exchange state (grid.sync()).
template <typename Args>
void launch(const void* fn, const Args& a, const plan::Plan& p, cudaStream_t stream) {
  TiledShape shape = tiled_shape(p);
  Args args = a;
  void* params[] = {static_cast<void*>(&args), static_cast<void*>(&shape)};
  if (p.col_tiles > 1) {
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel(fn, dim3(p.grid), dim3(p.threads), params,
                                               size_t(p.smem_bytes), stream));
  } else {
    C10_CUDA_CHECK(cudaLaunchKernel(fn, dim3(p.grid), dim3(p.threads), params,
                                    size_t(p.smem_bytes), stream));
  }
}

}  // namespace

int tiled_kernel_attrs(int elem_size, bool backward, int smem_optin, int* regs) {
  int static_smem = 0;
  *regs = 0;
  for (int i = 0; i < plan::kNumTiledMicroRows * plan::kNumTiledMicroCols; ++i) {
    const int mr = plan::kTiledMicroRows[i / plan::kNumTiledMicroCols];
    const int mc = plan::kTiledMicroCols[i % plan::kNumTiledMicroCols];
    const void* fn = backward ? tiled_fn<true>(elem_size, mr, mc) : tiled_fn<false>(elem_size, mr, mc);
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, fn));
    if (attr.numRegs > *regs) *regs = attr.numRegs;
    if (int(attr.sharedSizeBytes) > static_smem) static_smem = int(attr.sharedSizeBytes);
    allow_smem(fn, smem_optin - int(attr.sharedSizeBytes));
  }
  return static_smem;
}

int tiled_occupancy(int elem_size, bool backward, const plan::Plan& p) {
  const void* fn = backward ? tiled_fn<true>(elem_size, p.micro_r, p.micro_c)
                            : tiled_fn<false>(elem_size, p.micro_r, p.micro_c);
  int n = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, p.threads, p.smem_bytes));
  return n;
}

template <typename T>
void launch_fwd_tiled(const FwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  launch(tiled_fn<T, false>(p.micro_r, p.micro_c), a, p, stream);
}

template <typename T>
void launch_bwd_tiled(const BwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  launch(tiled_fn<T, true>(p.micro_r, p.micro_c), a, p, stream);
}

template void launch_fwd_tiled<float>(const FwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_fwd_tiled<double>(const FwdArgs<double>&, const plan::Plan&, cudaStream_t);
template void launch_bwd_tiled<float>(const BwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_bwd_tiled<double>(const BwdArgs<double>&, const plan::Plan&, cudaStream_t);

}  // namespace fastrnn::cuda_kernels
