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
//   simt::wmma               the warp matrix API (load_matrix_sync / mma_sync /
//                            store_matrix_sync / fill_fragment, m16n16k16, bf16
//                            operands, fp32 accumulators): nvcuda::wmma on the GPU; in the
//                            simulation a warp collective over tiles in memory (all 32 lanes
//                            must arrive; every element loaded or stored through a checked
//                            pointer by one lane), independent of the hardware's opaque
//                            register layout, which the bodies never look into
//   simt::bf16               __nv_bfloat16 (c10::BFloat16 in the simulation: the same
//                            bits, round-to-nearest-even from float)
//   FASTRNN_KERNEL_NS        the namespace the bodies are compiled into (cuda_kernels on
//                            the GPU, sim_kernels in the simulation: two distinct sets of
//                            symbols in one library, no ODR clash)
#pragma once

#if defined(__CUDACC__)

#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

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

namespace wmma = nvcuda::wmma;
using bf16 = __nv_bfloat16;

// The bits of a 16-bit float (the tensor-core tiles are written as 32-bit words of two).
__device__ __forceinline__ unsigned half_bits(bf16 v) { return __bfloat16_as_ushort(v); }

// float -> bf16, round to nearest even (torch builds with the implicit conversions off:
// __CUDA_NO_BFLOAT16_CONVERSIONS__).
template <class H>
__device__ __forceinline__ H round_to(float x);
template <>
__device__ __forceinline__ bf16 round_to<bf16>(float x) { return __float2bfloat16_rn(x); }
__device__ __forceinline__ float to_float(bf16 v) { return __bfloat162float(v); }

// reinterpret_cast<U*>(p): another element type's view of the same memory.
template <class U, class T>
__device__ __forceinline__ U* reinterpret(T* p) {
  return reinterpret_cast<U*>(p);
}

}  // namespace fastrnn::simt

// A declaration, not a function: taking the address of the extern array inside an inlined
// helper changed nvcc's loop code for the staging loops (same registers, other
// instructions); declared in the kernel, the PTX is the pre-simulation kernels' exactly.
// 128-byte aligned: wmma's load/store_matrix_sync need 32-byte aligned tile pointers, and the
// tiles' offsets from the base are multiples of 32 (plan_types.h tiled_mma_stride).
#define FASTRNN_DYNAMIC_SMEM(T, name)                                  \
  extern __shared__ __align__(128) unsigned char fastrnn_smem_raw[]; \
  T* name = reinterpret_cast<T*>(fastrnn_smem_raw)

#elif defined(FASTRNN_SIMT_HOST)

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>

#include "../sim/simt_runtime.h"
#include "../sim/simt_wmma.h"

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

namespace fastrnn::simt {
using bf16 = c10::BFloat16;
inline unsigned half_bits(bf16 v) { return v.x; }
template <class H>
H round_to(float x) {
  return H(x);  // c10: round to nearest even
}
inline float to_float(bf16 v) { return float(v); }
// Another element type's view of the same checked memory.
template <class U, class T>
ptr<U> reinterpret(ptr<T> p) {
  return ptr<U>(reinterpret_cast<U*>(p.raw()), p.region());
}
}  // namespace fastrnn::simt

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
