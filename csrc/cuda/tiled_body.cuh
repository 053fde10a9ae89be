// The tiled persistent recurrence, forward and BPTT in one body: the grid tiles batch x
// hidden (launch_plan.h make_tiled_plan), each block keeps its slice of the recurrent
// matrix in shared memory for all steps and splits the K reduction over its warps.
// Compiled by nvcc (rnn_tiled_kernels.cu) and by the SIMT simulation
// (../sim/sim_kernels.cpp); this is the only copy of the body.
//
// One step ("phase") of block (rb, cb), rows [row0, +tile_rows), columns [col0, +tile_cols):
//   1. the state rows S [tile_rows, H] (forward: h_{t-1}; backward: dz of the step visited
//      before) are in shared memory: kept there from the previous phase when one column tile
//      covers H ("resident": no grid barrier at all), else staged from global memory;
//   2. warp w multiplies S[:, K_w] by its K_w slice of the block's matrix rows, each lane a
//      micro_r x micro_c micro tile of outputs, and writes its partial sums to shared memory;
//   3. the owner thread of each output adds the 8 partials in warp order (fixed: results
//      repeat bitwise run to run) and applies the epilogue:
//        forward   y_t = active ? act(y_t + acc) : h_{t-1}
//        backward  carry = acc + pass; g = dy_t + carry;
//                  dz_t = active ? g * act'(y_t) : 0; pass = active ? 0 : g
//      writing the output to global memory (and, resident, into the other state buffer);
//   4. everything of the next phase that does not depend on the state (y_t or dy_t and y_t
//      of the owned outputs, the live-row count) is loaded before the step's barrier:
//      __syncthreads when resident, else grid.sync().
// h_{t-1} of an inactive row (forward) and the gradient an inactive row passes on
// (backward) never leave the registers of the output's owner thread.
//
// Packed input: only the live prefix of the tile's rows is staged and multiplied (rows
// [0, live)); a row is live when the state it feeds can be non-zero or is needed: forward,
// active at the step computed; backward, active at the step whose dz is the state (else
// that dz row is exactly 0). With rows sorted by non-increasing length (PackedSequence
// order) the live rows are a prefix, tracked per step in O(1) amortized; with unsorted
// lengths live = every row of the tile, and the epilogue masks per row.
//
// The backward has T + 1 phases: phase 0 has no state (carry = 0), phase T writes the
// final carry (dLoss/dh0) into carry[T % 2] as the other BPTT kernels do.
#pragma once

#include <type_traits>

#include "kernel_args.h"
#include "recurrence.cuh"

namespace fastrnn::FASTRNN_KERNEL_NS {

namespace tiled {

// The step visited at phase n (forward: computed; backward: its dz computed).
template <bool kBackward>
__device__ __forceinline__ int64_t step_of(int64_t n, int64_t steps, bool reverse) {
  // The backward visits the forward's steps in the opposite order.
  return (reverse != kBackward) ? steps - 1 - n : n;
}

// Whether row r of the tile is live at phase n (see the header).
template <bool kBackward>
__device__ __forceinline__ bool live(simt::ptr<const int64_t> lengths, int64_t b, int64_t n,
                                     int64_t steps, bool reverse) {
  if (kBackward) {
    if (n == 0) return false;  // no state yet: the carry starts at 0
    return row_active(lengths, b, step_of<true>(n - 1, steps, reverse));
  }
  return row_active(lengths, b, step_of<false>(n, steps, reverse));
}

}  // namespace tiled

template <typename T, int MR, int MC, class Args>
__global__ void __launch_bounds__(plan::kThreads, plan::kTiledMinBlocksPerSm)
    tiled_kernel(Args a, cuda_kernels::TiledShape sh) {
  constexpr bool kBwd = std::is_same_v<Args, cuda_kernels::BwdArgs<T>>;
  constexpr int OPT = plan::kTiledOutputsPerThread;
  constexpr int kWarps = plan::kWarps;
  FASTRNN_DYNAMIC_SMEM(T, smem);
  const int64_t H = a.hidden, B = a.batch, BH = B * H, steps = a.steps;
  const int S = sh.stride, BR = sh.tile_rows, BC = sh.tile_cols;
  const int rb = int(blockIdx.x) / sh.col_tiles, cb = int(blockIdx.x) - rb * sh.col_tiles;
  const int64_t row0 = int64_t(rb) * BR, col0 = int64_t(cb) * BC;
  const int rows = int(B - row0 < BR ? B - row0 : BR);  // rows of this tile inside B
  const bool resident = sh.col_tiles == 1;
  const simt::ptr<T> w_s = smem;                                         // [BC, S]
  const simt::ptr<T> st0 = smem + BC * S;                                // [BR, S]
  const simt::ptr<T> st1 = st0 + (resident ? BR * S : 0);                // [BR, S] (resident)
  const simt::ptr<T> red = st0 + (resident ? 2 : 1) * BR * S;            // [kWarps, BR, BC]
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const simt::ptr<const int64_t> lengths = simt::global(a.lengths);      // [B] or null
  const simt::ptr<const T> w_hh = simt::global(a.w_hh);                 // [H, H]

  // The block's matrix rows M(col0 + c, k): forward W_hh[out, k]; backward W_hh[k, out]
  // (carry = dz W_hh). Loaded once, kept for all steps.
  for (int c = 0; c < BC; ++c) {
    const int64_t out = col0 + c;
    for (int k = tid; k < H; k += plan::kThreads) {
      w_s[c * S + k] = out < H ? (kBwd ? w_hh[int64_t(k) * H + out] : w_hh[out * H + k]) : T(0);
    }
  }

  // The outputs this thread reduces and finishes: o = tid + j * kThreads of the tile.
  int o_r[OPT], o_c[OPT];
  bool own[OPT];
  int64_t len[OPT];  // the owned rows' lengths (every step active when none)
  T keep[OPT];       // forward: h_{t-1} of the output; backward: g an inactive row passes on
  T pre[OPT];        // prefetched: forward y_t (input projection); backward dy_t
  T pre_y[OPT];      // prefetched: backward y_t
#pragma unroll
  for (int j = 0; j < OPT; ++j) {
    const int o = tid + j * plan::kThreads;
    o_r[j] = o / BC;
    o_c[j] = o - o_r[j] * BC;
    own[j] = o < BR * BC && o_r[j] < rows && col0 + o_c[j] < H;
    len[j] = steps;
    keep[j] = T(0);
    pre[j] = T(0);
    pre_y[j] = T(0);
    if (own[j]) {
      const int64_t b = row0 + o_r[j];
      if (lengths != nullptr) len[j] = lengths[b];
      if constexpr (!kBwd) keep[j] = simt::global(a.h0)[b * H + col0 + o_c[j]];
    }
  }
  // The forward's first state: h0 rows (resident: kept in st0 from here on).
  if constexpr (!kBwd) {
    if (resident) {
      const simt::ptr<const T> h0 = simt::global(a.h0);
      for (int r = 0; r < rows; ++r) {
        for (int k = tid; k < H; k += plan::kThreads) st0[r * S + k] = h0[(row0 + r) * H + k];
      }
    }
  }

  // Tiles whose lengths are non-increasing keep the live rows a prefix (PackedSequence).
  bool sorted = true;
  if (lengths != nullptr) {
    for (int r = 1; r < rows; ++r) sorted = sorted && lengths[row0 + r] <= lengths[row0 + r - 1];
  }
  // live: rows [0, live) of the tile are staged and multiplied in the current phase.
  auto live_rows = [&](int64_t n, int prev) {
    if (kBwd && n == 0) return 0;
    if (lengths == nullptr || !sorted) return rows;
    int m = prev;  // monotone in n: amortized O(1) per step
    while (m > 0 && !tiled::live<kBwd>(lengths, row0 + m - 1, n, steps, a.reverse)) --m;
    while (m < rows && tiled::live<kBwd>(lengths, row0 + m, n, steps, a.reverse)) ++m;
    return m;
  };
  // Loads phase n's state-independent inputs of the owned outputs into registers.
  auto prefetch = [&](int64_t n) {
    if (n >= steps) return;  // the backward's last phase only writes the carry
    const int64_t t = tiled::step_of<kBwd>(n, steps, a.reverse);
#pragma unroll
    for (int j = 0; j < OPT; ++j) {
      if (!own[j]) continue;
      const int64_t idx = t * BH + (row0 + o_r[j]) * H + col0 + o_c[j];
      if constexpr (kBwd) {
        pre[j] = __ldg(simt::global(a.dy) + idx);
        pre_y[j] = __ldg(simt::global(a.y) + idx);
      } else {
        pre[j] = simt::global(a.y)[idx];  // this thread overwrites it below: no __ldg
      }
    }
  };
  int live = live_rows(0, rows);
  prefetch(0);
  __syncthreads();  // tiled: weights (and the resident h0) are in shared memory

  const int LR = sh.lanes_r, LC = 32 / LR;
  const int lr = lane / LC, lc = lane - (lane / LC) * LC;
  const int k0 = warp * sh.k_chunk;
  const int k1 = int(k0 + sh.k_chunk < H ? k0 + sh.k_chunk : H);
  const int64_t phases = kBwd ? steps + 1 : steps;
  for (int64_t n = 0; n < phases; ++n) {
    const simt::ptr<T> s_in = (resident && (n & 1)) ? st1 : st0;
    const simt::ptr<T> s_out = (resident && (n & 1)) ? st0 : st1;
    if (!resident && live > 0) {
      // The previous phase's outputs, written by every column tile: coherent loads.
      simt::ptr<const T> src;
      if constexpr (kBwd) {
        src = simt::global(a.dz) + tiled::step_of<true>(n - 1, steps, a.reverse) * BH;
      } else {
        src = n == 0 ? simt::global(a.h0)
                     : simt::global(a.y) + tiled::step_of<false>(n - 1, steps, a.reverse) * BH;
      }
      for (int r = 0; r < live; ++r) {
        for (int k = tid; k < H; k += plan::kThreads) s_in[r * S + k] = src[(row0 + r) * H + k];
      }
      __syncthreads();  // tiled: the state tile is staged
    }

    // This warp's share of K for the lane's micro tile, then its partial sums.
    if (live > 0) {
      T acc[MR][MC];
#pragma unroll
      for (int i = 0; i < MR; ++i) {
#pragma unroll
        for (int j = 0; j < MC; ++j) acc[i][j] = T(0);
      }
      for (int k = k0; k < k1; ++k) {
        T hv[MR], wv[MC];
#pragma unroll
        for (int i = 0; i < MR; ++i) {
          const int r = lr + i * LR;
          hv[i] = r < live ? T(s_in[r * S + k]) : T(0);
        }
#pragma unroll
        for (int j = 0; j < MC; ++j) wv[j] = w_s[(lc + j * LC) * S + k];
#pragma unroll
        for (int i = 0; i < MR; ++i) {
#pragma unroll
          for (int j = 0; j < MC; ++j) acc[i][j] = fma_(hv[i], wv[j], acc[i][j]);
        }
      }
#pragma unroll
      for (int i = 0; i < MR; ++i) {
        const int r = lr + i * LR;
        if (r < live) {
#pragma unroll
          for (int j = 0; j < MC; ++j) red[(warp * BR + r) * BC + lc + j * LC] = acc[i][j];
        }
      }
      __syncthreads();  // tiled: the partial sums are in shared memory
    }

    // Reduction in warp order and the epilogue of the owned outputs.
    const bool last = kBwd && n == steps;
    const int64_t t = last ? 0 : tiled::step_of<kBwd>(n, steps, a.reverse);
#pragma unroll
    for (int j = 0; j < OPT; ++j) {
      if (!own[j]) continue;
      const int r = o_r[j], c = o_c[j];
      T acc = T(0);
      if (r < live) {
        acc = red[r * BC + c];
        for (int w = 1; w < kWarps; ++w) acc += red[(w * BR + r) * BC + c];
      }
      const int64_t bi = (row0 + r) * H + col0 + c;
      const bool active = t < len[j];
      T out;
      if constexpr (kBwd) {
        const T carry = acc + keep[j];
        if (last) {
          simt::global(a.carry)[(steps & 1) * BH + bi] = carry;
          continue;
        }
        const T g = pre[j] + carry;
        out = active ? g * act_grad_from_output(pre_y[j], a.relu) : T(0);
        keep[j] = active ? T(0) : g;
        simt::global(a.dz)[t * BH + bi] = out;
      } else {
        out = active ? act_fn(pre[j] + acc, a.relu) : keep[j];
        keep[j] = out;
        simt::global(a.y)[t * BH + bi] = out;
      }
      if (resident) s_out[r * S + c] = out;
    }
    // Before the barrier: the next phase's inputs that do not depend on this one.
    live = live_rows(n + 1, live);
    prefetch(n + 1);
    if (resident) {
      __syncthreads();  // tiled resident: the state buffers swap roles
    } else {
      simt::grid_sync();  // tiled: every column tile of the step is written
    }
  }
}

}  // namespace fastrnn::FASTRNN_KERNEL_NS
