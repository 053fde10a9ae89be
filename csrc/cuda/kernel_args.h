// The persistent and pointwise kernels' arguments and launch constants, as plain C++:
// shared by the CUDA host code (rnn_cuda.cpp), the kernel bodies (*_body.cuh) and the
// SIMT simulation (../sim/), none of which may need CUDA headers to see them.
#pragma once

#include <cstdint>

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
  const void* w_hh_mma = nullptr;  // [H, H] in the model's 16-bit type (tiled mma path only)
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
  const void* w_hh_mma = nullptr;  // [H, H] in the model's 16-bit type (tiled mma path only)
};

// The tiled kernels' launch shape (launch_plan.h Plan, kTiled fields).
struct TiledShape {
  int tile_rows, tile_cols, lanes_r, col_tiles, stride, k_chunk;
};

// The GEMM fallback's pointwise kernels: a grid-stride loop of kPointwiseThreads-thread
// blocks over the B*H elements of one step.
constexpr int kPointwiseThreads = 256;
inline int pointwise_blocks(int64_t n) {
  const int64_t b = (n + kPointwiseThreads - 1) / kPointwiseThreads;
  return int(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

}  // namespace fastrnn::cuda_kernels
