// The persistent forward recurrence kernel: the time loop runs inside one kernel launch.
// Compiled by nvcc (rnn_fwd_kernels.cu) and by the SIMT simulation (../sim/sim_kernels.cpp);
// this is the only copy of its body (simt.h maps the CUDA names for both targets).
//
// Each lane keeps its slice of W_hh in registers for all T steps; the previous state
// h_{t-1} of a tile of batch rows is staged in shared memory; bias (already folded into
// the input projection), activation and the lengths mask are applied in the epilogue.
// One inter-block barrier per step (grid sync) when the columns span several blocks;
// a single block uses __syncthreads: once per step when the whole batch's state stays
// in shared memory ("resident"), otherwise twice per tile of batch rows.
#pragma once

#include "kernel_args.h"
#include "recurrence.cuh"

namespace fastrnn::FASTRNN_KERNEL_NS {

template <typename T, int KPT>
__global__ void __launch_bounds__(plan::kThreads, plan::kMinBlocksPerSm)
    fwd_persistent_kernel(cuda_kernels::FwdArgs<T> a, int ks, int rows_per_tile, bool resident) {
  FASTRNN_DYNAMIC_SMEM(T, s);  // [rows_per_tile, hp] state tile
  constexpr int R = pass_rows<T, KPT>();
  const int tid = threadIdx.x;
  const int lane = tid & (ks - 1);
  const int cols = plan::kThreads / ks;
  const int64_t H = a.hidden, B = a.batch, BH = B * H;
  const int64_t out = int64_t(blockIdx.x) * cols + tid / ks;
  const int hp = ks * KPT;
  T w[KPT];
  load_weights<T, KPT>(w, simt::global(a.w_hh), H, out, lane, ks, H, 1);
  const bool many_blocks = gridDim.x > 1;

  if (resident) {
    // One block, all B rows in one tile: h_t goes from the epilogue straight into the
    // other tile, never back through global memory. The padding (rows >= B, columns
    // >= H) is zeroed once and never written. One barrier per step: step n reads tile
    // n % 2 and writes the other, and the barrier separates the two uses of each.
    simt::ptr<T> s_cur = s;
    simt::ptr<T> s_next = s + rows_per_tile * hp;
    for (int e = tid; e < rows_per_tile * hp; e += plan::kThreads) {
      const int r = e / hp, k = e - r * hp;
      s_cur[e] = (r < B && k < H) ? simt::global(a.h0)[r * H + k] : T(0);
      s_next[e] = T(0);
    }
    __syncthreads();
    for (int64_t n = 0; n < a.steps; ++n) {
      const int64_t t = a.reverse ? a.steps - 1 - n : n;
      simt::ptr<T> y_t = simt::global(a.y + t * BH);
      for (int r0 = 0; r0 < rows_per_tile && r0 < B; r0 += R) {
        T acc[R];
        dot_rows<T, KPT, R>(acc, w, s_cur, r0, hp, lane, ks);
        if (lane == 0 && out < H) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int64_t b = r0 + r;
            if (b < B) {
              const int64_t idx = b * H + out;
              const T z = y_t[idx] + acc[r];
              const T h = row_active(simt::global(a.lengths), b, t)
                              ? act_fn(z, a.relu)
                              : s_cur[(r0 + r) * hp + out];
              y_t[idx] = h;
              s_next[(r0 + r) * hp + out] = h;
            }
          }
        }
      }
      __syncthreads();  // resident: the tiles swap roles
      simt::ptr<T> tmp = s_cur;
      s_cur = s_next;
      s_next = tmp;
    }
    return;
  }

  for (int64_t n = 0; n < a.steps; ++n) {
    const int64_t t = a.reverse ? a.steps - 1 - n : n;
    // Written by other blocks in the previous step: plain (coherent) loads only.
    simt::ptr<const T> h_prev =
        simt::global(n == 0 ? a.h0 : a.y + (a.reverse ? t + 1 : t - 1) * BH);
    simt::ptr<T> y_t = simt::global(a.y + t * BH);
    for (int64_t b0 = 0; b0 < B; b0 += rows_per_tile) {
      for (int e = tid; e < rows_per_tile * hp; e += plan::kThreads) {
        const int r = e / hp, k = e - r * hp;
        const int64_t b = b0 + r;
        s[e] = (b < B && k < H) ? h_prev[b * H + k] : T(0);
      }
      __syncthreads();  // the tile is staged
      for (int r0 = 0; r0 < rows_per_tile && b0 + r0 < B; r0 += R) {
        T acc[R];
        dot_rows<T, KPT, R>(acc, w, s, r0, hp, lane, ks);
        if (lane == 0 && out < H) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int64_t b = b0 + r0 + r;
            if (b < B) {
              const int64_t idx = b * H + out;
              const T z = y_t[idx] + acc[r];
              y_t[idx] = row_active(simt::global(a.lengths), b, t)
                             ? act_fn(z, a.relu)
                             : s[(r0 + r) * hp + out];
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
