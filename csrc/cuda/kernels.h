// Host-side entry points of the CUDA kernels (defined in the .cu files of this folder).
// Plain C++ with CUDA runtime types, so rnn_cuda.cpp compiles with the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernel_args.h"
#include "plan_types.h"

namespace fastrnn::cuda_kernels {

// Registers per thread of each instantiated persistent kernel, in launch_plan's kpt
// order (plan::kpt_at(elem_size, i)), as the CUDA runtime reports them for the
// current device; `regs` must have room for plan::num_kpt(elem_size) entries.
// Returns the largest static shared memory of those kernels (the toolchain may reserve
// some, e.g. on sm_90), which the dynamic tile must leave room for.
int fwd_kernel_attrs(int elem_size, int* regs);
int bwd_kernel_attrs(int elem_size, int* regs);

// Co-resident blocks per SM of the kernel a plan names (cudaOccupancy*), so that a
// cooperative launch is only attempted when every block fits.
int fwd_occupancy(int elem_size, const plan::Plan& p);
int bwd_occupancy(int elem_size, const plan::Plan& p);

template <typename T>
void launch_fwd_persistent(const FwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream);
template <typename T>
void launch_bwd_persistent(const BwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream);

// The tiled kernels (tiled_body.cuh): the largest register count among the instantiations
// of this direction and element size into *regs; returns their largest static shared memory.
// Also sets each one's MaxDynamicSharedMemorySize to smem_optin minus its static shared
// memory (the opt-in: without it a launch above 48 KiB fails).
int tiled_kernel_attrs(int elem_size, bool backward, int smem_optin, int* regs);
// Co-resident blocks per SM of the tiled kernel a plan names (cudaOccupancy*).
int tiled_occupancy(int elem_size, bool backward, const plan::Plan& p);
template <typename T>
void launch_fwd_tiled(const FwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream);
template <typename T>
void launch_bwd_tiled(const BwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream);

// The GEMM fallback's fused pointwise step (after y_t += h_prev W_hh^T in cuBLAS):
//   y_t = active ? act(y_t) : h_prev
template <typename T>
void launch_fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t,
                          int64_t B, int64_t H, bool relu, cudaStream_t stream);
// Before carry_next += dz_t W_hh in cuBLAS:
//   g = dy_t + carry; dz_t = active ? g * act'(y_t) : 0; carry_next = active ? 0 : g
template <typename T>
void launch_bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t,
                          const T* carry, const int64_t* lengths, int64_t t, int64_t B,
                          int64_t H, bool relu, cudaStream_t stream);

}  // namespace fastrnn::cuda_kernels
