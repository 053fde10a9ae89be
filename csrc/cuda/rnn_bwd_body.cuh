// The persistent reverse-time recurrence of BPTT (math in ../rnn.h). Compiled by nvcc
// (rnn_bwd_kernels.cu) and by the SIMT simulation (../sim/sim_kernels.cpp); this is the
// only copy of its body (simt.h maps the CUDA names for both targets).
//
// W_hh^T stays in registers for all steps. Per step, every block rebuilds the full dz_t
// rows of a batch tile in shared memory from dy_t, the carry and y_t (cheap, elementwise;
// each block writes only its own columns of dz to global memory), then computes its
// columns of carry' = dz_t W_hh (+ g for inactive rows). The carry is double-buffered in
// global memory: step n reads carry[n % 2] and writes carry[(n + 1) % 2], so one barrier
// per step suffices. No atomics: every output element has exactly one writer.
#pragma once

#include "kernel_args.h"
#include "recurrence.cuh"

namespace fastrnn::FASTRNN_KERNEL_NS {

template <typename T, int KPT>
__global__ void __launch_bounds__(plan::kThreads, plan::kMinBlocksPerSm)
    bwd_persistent_kernel(cuda_kernels::BwdArgs<T> a, int ks, int rows_per_tile) {
  FASTRNN_DYNAMIC_SMEM(T, s);  // [rows_per_tile, hp] dz tile
  const simt::ptr<T> dz = simt::global(a.dz);                     // [T, B, H]
  const simt::ptr<T> carry_buf = simt::global(a.carry);           // [2, B, H]
  const simt::ptr<const T> dy = simt::global(a.dy);               // [T, B, H]
  const simt::ptr<const T> y = simt::global(a.y);                 // [T, B, H]
  const simt::ptr<const int64_t> lengths = simt::global(a.lengths);  // [B] or null
  constexpr int R = pass_rows<T, KPT>();
  const int tid = threadIdx.x;
  const int lane = tid & (ks - 1);
  const int cols = plan::kThreads / ks;
  const int64_t H = a.hidden, B = a.batch, BH = B * H;
  const int64_t first_col = int64_t(blockIdx.x) * cols;
  const int64_t out = first_col + tid / ks;
  const int hp = ks * KPT;
  T w[KPT];
  // M(out, k) = W_hh[k, out]: the matrix of carry' = dz W_hh.
  load_weights<T, KPT>(w, simt::global(a.w_hh), H, out, lane, ks, 1, H);
  const bool many_blocks = gridDim.x > 1;

  for (int64_t n = 0; n < a.steps; ++n) {
    // The forward visited t in the opposite order.
    const int64_t t = a.reverse ? n : a.steps - 1 - n;
    // Written by other blocks: coherent loads.
    const simt::ptr<const T> carry = carry_buf + (n & 1) * BH;
    const simt::ptr<T> carry_next = carry_buf + ((n + 1) & 1) * BH;
    const simt::ptr<const T> __restrict__ dy_t = dy + t * BH;
    const simt::ptr<const T> __restrict__ y_t = y + t * BH;
    const simt::ptr<T> dz_t = dz + t * BH;
    for (int64_t b0 = 0; b0 < B; b0 += rows_per_tile) {
      for (int e = tid; e < rows_per_tile * hp; e += plan::kThreads) {
        const int r = e / hp, j = e - r * hp;
        const int64_t b = b0 + r;
        T d = T(0);
        if (b < B && j < H) {
          const int64_t idx = b * H + j;
          if (row_active(lengths, b, t)) {
            d = (__ldg(dy_t + idx) + carry[idx]) * act_grad_from_output(__ldg(y_t + idx), a.relu);
          }
          if (j >= first_col && j < first_col + cols) dz_t[idx] = d;
        }
        s[e] = d;
      }
      __syncthreads();  // the dz tile is staged
      for (int r0 = 0; r0 < rows_per_tile && b0 + r0 < B; r0 += R) {
        T acc[R];
        dot_rows<T, KPT, R>(acc, w, s, r0, hp, lane, ks);
        if (lane == 0 && out < H) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int64_t b = b0 + r0 + r;
            if (b < B) {
              const int64_t idx = b * H + out;
              // An inactive row passes its whole gradient g on to h_prev.
              carry_next[idx] = row_active(lengths, b, t)
                                    ? acc[r]
                                    : acc[r] + (__ldg(dy_t + idx) + carry[idx]);
            }
          }
        }
      }
      __syncthreads();  // the tile is overwritten next
    }
    if (many_blocks) simt::grid_sync();
  }
}

}  // namespace fastrnn::FASTRNN_KERNEL_NS
