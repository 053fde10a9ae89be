// The portability layer under the kernel bodies (*_body.cuh): one kernel source, two targets.
//
// * nvcc (__CUDACC__): every name below is the CUDA construct itself, inline, so the
//   GPU code is what it would be without this header (no runtime cost; tests/
//   test_cuda_build.py checks registers and spills of the built kernels).
// * the host C++ compiler with FASTRNN_SIMT_HOST defined (../sim/sim_kernels.cpp): the
//   SIMT simulation (../sim/simt_runtime.h) runs every thread of every block as a fiber;
//   threadIdx / blockIdx / ... name the running fiber's coordinates, __syncthreads,
//   __shfl_xor_sync and grid_sync() switch fibers, and memory goes through checked
//   pointers (bounds and the race checker).
//
// What the kernel bodies use instead of raw CUDA, so that both targets see the same text:
//   simt::ptr<T>             a pointer into global or shared memory (T* on the GPU)
//   simt::global(p)          wraps a kernel argument pointer (identity on the GPU)
//   FASTRNN_DYNAMIC_SMEM(T, s)  declares s, the block's dynamic shared memory as T
//                            (extern __shared__ on the GPU)
//   simt::load_vec<V>(p, i)  reinterpret_cast<const V*>(p)[i], a vector load
//   simt::grid_sync()        cooperative_groups::this_grid().sync()
//   FASTRNN_KERNEL_NS        the namespace the bodies are compiled into (cuda_kernels on
//                            the GPU, sim_kernels in the simulation: two distinct sets of
//                            symbols in one library, no ODR clash)
#pragma once

#if defined(__CUDACC__)

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#define FASTRNN_KERNEL_NS cuda_kernels

namespace fastrnn::simt {

template <class T>
using ptr = T*;

template <class T>
__device__ __forceinline__ T* global(T* p) {
  return p;
}

template <class V, class T>
__device__ __forceinline__ V load_vec(const T* p, int i) {
  return reinterpret_cast<const V*>(p)[i];
}

__device__ __forceinline__ void grid_sync() { cooperative_groups::this_grid().sync(); }

}  // namespace fastrnn::simt

// A declaration, not a function: taking the address of the extern array inside an inlined
// helper changed nvcc's loop code for the staging loops (same registers, other
// instructions); declared in the kernel, the PTX is the pre-simulation kernels' exactly.
#define FASTRNN_DYNAMIC_SMEM(T, name)                                 \
  extern __shared__ __align__(16) unsigned char fastrnn_smem_raw[]; \
  T* name = reinterpret_cast<T*>(fastrnn_smem_raw)

#elif defined(FASTRNN_SIMT_HOST)

#include <cmath>

#include "../sim/simt_runtime.h"

#define FASTRNN_KERNEL_NS sim_kernels

// The bodies' `#pragma unroll` is nvcc's; the host compiler unrolls as it sees fit.
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// A checked pointer is a class: restrict does not apply (and only licenses optimisations).
#define __restrict__

#define threadIdx (::fastrnn::simt::current_thread()->thread_idx)
#define blockIdx (::fastrnn::simt::current_thread()->block_idx)
#define blockDim (::fastrnn::simt::current_launch()->block_dim)
#define gridDim (::fastrnn::simt::current_launch()->grid_dim)
// The call site names the barrier (the planted-bug tests drop one by file:line).
#define __syncthreads() ::fastrnn::simt::syncthreads(__FILE__, __LINE__)
#define FASTRNN_DYNAMIC_SMEM(T, name) \
  ::fastrnn::simt::ptr<T> name = ::fastrnn::simt::dynamic_smem<T>()

namespace fastrnn::sim_kernels {
using simt::double2;
using simt::float4;
}  // namespace fastrnn::sim_kernels

template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask) {
  T out;
  ::fastrnn::simt::shfl_xor(mask, &v, &out, sizeof(T), lane_mask);
  return out;
}

template <class T>
inline T __ldg(::fastrnn::simt::ptr<const T> p) {
  ::fastrnn::simt::check_ldg(p.region());
  return *p;
}

#else
#error "simt.h: compile with nvcc, or define FASTRNN_SIMT_HOST for the host simulation"
#endif
