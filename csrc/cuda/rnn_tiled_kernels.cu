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

// The tensor-core kernels (plan.mma): float accumulation, W_hh in the model's bfloat16 (the
// only 16-bit type they keep the contract for: plan_types.h mma_keeps_contract).
template <bool kBackward>
const void* tiled_mma_fn(int frag_r, int frag_c) {
  using Args = std::conditional_t<kBackward, BwdArgs<float>, FwdArgs<float>>;
  const void* fn = nullptr;
  dispatch_fragments(frag_r, frag_c, [&](auto fr, auto fc) {
    constexpr int R = decltype(fr)::value, C = decltype(fc)::value;
    fn = reinterpret_cast<const void*>(&tiled_kernel<float, R, C, Args, simt::bf16>);
  });
  return fn;
}

template <bool kBackward>
const void* tiled_fn(int elem_size, int micro_r, int micro_c) {
  return elem_size == 8 ? tiled_fn<double, kBackward>(micro_r, micro_c)
                        : tiled_fn<float, kBackward>(micro_r, micro_c);
}

// The kernel a plan names.
template <bool kBackward>
const void* plan_fn(int elem_size, const plan::Plan& p) {
  return p.mma ? tiled_mma_fn<kBackward>(p.micro_r, p.micro_c)
               : tiled_fn<kBackward>(elem_size, p.micro_r, p.micro_c);
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
  const int n_fma = plan::kNumTiledMicroRows * plan::kNumTiledMicroCols;
  // float32 compute: the tensor-core kernels too (bf16, every fragment tile).
  const int n_mma = elem_size == 4 ? plan::kNumMmaTiles : 0;
  for (int i = 0; i < n_fma + n_mma; ++i) {
    const void* fn;
    if (i < n_fma) {
      const int mr = plan::kTiledMicroRows[i / plan::kNumTiledMicroCols];
      const int mc = plan::kTiledMicroCols[i % plan::kNumTiledMicroCols];
      fn = backward ? tiled_fn<true>(elem_size, mr, mc) : tiled_fn<false>(elem_size, mr, mc);
    } else {
      const int* t = plan::kMmaTiles[i - n_fma];
      fn = backward ? tiled_mma_fn<true>(t[0], t[1]) : tiled_mma_fn<false>(t[0], t[1]);
    }
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, fn));
    if (attr.numRegs > *regs) *regs = attr.numRegs;
    if (int(attr.sharedSizeBytes) > static_smem) static_smem = int(attr.sharedSizeBytes);
    allow_smem(fn, smem_optin - int(attr.sharedSizeBytes));
  }
  return static_smem;
}

int tiled_occupancy(int elem_size, bool backward, const plan::Plan& p) {
  const void* fn = backward ? plan_fn<true>(elem_size, p) : plan_fn<false>(elem_size, p);
  int n = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, p.threads, p.smem_bytes));
  return n;
}

template <typename T>
void launch_fwd_tiled(const FwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  launch(plan_fn<false>(sizeof(T), p), a, p, stream);
}

template <typename T>
void launch_bwd_tiled(const BwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  launch(plan_fn<true>(sizeof(T), p), a, p, stream);
}

template void launch_fwd_tiled<float>(const FwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_fwd_tiled<double>(const FwdArgs<double>&, const plan::Plan&, cudaStream_t);
template void launch_bwd_tiled<float>(const BwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_bwd_tiled<double>(const BwdArgs<double>&, const plan::Plan&, cudaStream_t);

}  // namespace fastrnn::cuda_kernels
