// Host-side entry points of the CUDA kernels (defined in the .cu files of this folder).
// Plain C++ with CUDA runtime types, so rnn_cuda.cpp compiles with the host compiler.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "launch_plan.h"

namespace fastrnn::cuda_kernels {

// Forward recurrence over a buffer that already holds the input projection.
template <typename T>
struct FwdArgs {
  T* y;                     // [T, B, H] in: x W_ih^T + b_ih + b_hh; out: y
  const T* h0;              // [B, H]
  const T* w_hh;            // [H, H]
  const int64_t* lengths;   // [B] or nullptr
  int64_t steps, batch, hidden;
  bool reverse, relu;
};

// Reverse-time recurrence of BPTT (csrc/rnn.h): writes dz and the final carry.
template <typename T>
struct BwdArgs {
  T* dz;                    // [T, B, H] out
  T* carry;                 // [2, B, H]; carry[0] is zero on entry, the final one is carry[T % 2]
  const T* dy;              // [T, B, H]
  const T* y;               // [T, B, H]
  const T* w_hh;            // [H, H]
  const int64_t* lengths;   // [B] or nullptr
  int64_t steps, batch, hidden;
  bool reverse, relu;
};

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
