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
//
// Tensor cores (WT = simt::bf16, a bfloat16 model; plan.mma): step 2
// runs on the warp matrix API (simt::wmma, m16n16k16, fp32 accumulators) instead of FMAs;
// MR x MC are then the block tile in 16 x 16 fragments. Why this keeps rnn.h's contract
// (half types computed in float32, rounded once to the output type):
//   * the weights of a half model are exactly representable in their own type, so W_hh in
//     WT (args.w_hh_mma, the parameter's own bits) is the fp32 weight exactly;
//   * the fp32 state s (h_{t-1}, or dz) is split as hi = rn_WT(s), lo = rn_WT(s - hi):
//     s - hi is exact in fp32, and |s - hi - lo| <= u^2 |s| (u = 2^-8) as long as hi and lo
//     are normal numbers of WT. bfloat16 has float32's exponent range, so that holds for
//     every state (lo underflows only where s itself is near float32's subnormals);
//   * products of two WT values are exact in fp32 and accumulate in fp32, so each term
//     w * s is computed with a relative error ~u^2 (2^-16) plus the fp32 accumulation: far
//     below the one rounding of the output (2^-8), the same order as the float32 path's
//     summation error. The state itself stays fp32 (y, dz).
// Not float16 (plan_types.h mma_keeps_contract: the plan never takes it): its 5-bit exponent
// makes lo subnormal below |s| ~ 2^-3 and hi below 2^-14, so a small backward carry (|dz| ~
// 1e-5..1e-7) loses 0.2-7 %, and beyond 65504 hi = inf, lo = -inf give hi*w + lo*w = NaN.
// Both halves go through one mma: the state word k holds (hi_k, lo_k) side by side and the
// weight word k holds (w_k, w_k), so a 16-element fragment covers 8 k and its dot product
// is sum_k hi_k w_k + lo_k w_k. Shared memory then holds 4-byte words throughout (the
// same sizes as float): each word is written whole by one thread, as the race checker (4-
// byte words) and the hardware see it. Padded columns (k >= H) and rows past the batch are
// zero; rows past the live count are finished rows whose products the epilogue ignores.
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

// The state word of the mma path: (rn(s), rn(s - rn(s))) in WT, hi in the low half.
template <class WT>
__device__ __forceinline__ uint32_t split_word(float s) {
  const WT hi = simt::round_to<WT>(s);
  const WT lo = simt::round_to<WT>(s - simt::to_float(hi));
  return simt::half_bits(hi) | (simt::half_bits(lo) << 16);
}

// WT: void (FMAs in T), or the 16-bit type of the tensor-core path (T = float; see header).
template <typename T, int MR, int MC, class Args, class WT = void>
__global__ void __launch_bounds__(plan::kThreads, plan::kTiledMinBlocksPerSm)
    tiled_kernel(Args a, cuda_kernels::TiledShape sh) {
  constexpr bool kBwd = std::is_same_v<Args, cuda_kernels::BwdArgs<T>>;
  constexpr bool kMma = !std::is_void_v<WT>;
  static_assert(!kMma || std::is_same_v<T, float>, "the mma path accumulates in float");
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
  if constexpr (kMma) {
    // Words (w, w) in WT, zero past H (k and out); the state tiles zero but for the
    // resident forward's h0 rows (split), so padded columns and rows multiply as zero.
    const simt::ptr<const WT> w16 = simt::global(static_cast<const WT*>(a.w_hh_mma));
    const simt::ptr<uint32_t> w_u = simt::reinterpret<uint32_t>(w_s);
    for (int c = 0; c < BC; ++c) {
      const int64_t out = col0 + c;
      for (int k = tid; k < S; k += plan::kThreads) {
        const bool in = out < H && k < H;
        w_u[c * S + k] =
            in ? simt::half_bits(kBwd ? w16[int64_t(k) * H + out] : w16[out * H + k]) * 0x10001u
               : 0u;
      }
    }
    const simt::ptr<uint32_t> st_u = simt::reinterpret<uint32_t>(st0);
    const int words = (resident ? 2 : 1) * BR * S;
    for (int i = tid; i < words; i += plan::kThreads) {
      const int r = i / S, k = i - (i / S) * S;
      uint32_t v = 0u;
      if constexpr (!kBwd) {
        if (resident && r < rows && k < H) {
          v = split_word<WT>(simt::global(a.h0)[(row0 + r) * H + k]);
        }
      }
      st_u[i] = v;
    }
  } else {
    for (int c = 0; c < BC; ++c) {
      const int64_t out = col0 + c;
      for (int k = tid; k < H; k += plan::kThreads) {
        w_s[c * S + k] = out < H ? (kBwd ? w_hh[int64_t(k) * H + out] : w_hh[out * H + k]) : T(0);
      }
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
  if constexpr (!kBwd && !kMma) {
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
  // The mma path's K runs over words of 8 k (a fragment's 16 elements), up to H rounded up.
  const int k_end = kMma ? int(plan::mma_k_words(H)) : int(H);
  const int k0 = warp * sh.k_chunk;
  const int k1 = k0 + sh.k_chunk < k_end ? k0 + sh.k_chunk : k_end;
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
        for (int k = tid; k < H; k += plan::kThreads) {
          if constexpr (kMma) {
            simt::reinterpret<uint32_t>(s_in)[r * S + k] = split_word<WT>(src[(row0 + r) * H + k]);
          } else {
            s_in[r * S + k] = src[(row0 + r) * H + k];
          }
        }
      }
      __syncthreads();  // tiled: the state tile is staged
    }

    // This warp's share of K for the lane's micro tile, then its partial sums.
    if constexpr (kMma) {
      if (live > 0) {
        // Fragments of 16 x 16 outputs: A = state rows (hi, lo words), row-major; B = the
        // weight words, column n of B = the block's matrix row n (col-major). ldm in WT.
        namespace wmma = simt::wmma;
        const simt::ptr<const WT> a16 = simt::reinterpret<const WT>(s_in);
        const simt::ptr<const WT> b16 = simt::reinterpret<const WT>(w_s);
        const unsigned ld = unsigned(2 * S);
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[MR][MC];
#pragma unroll
        for (int i = 0; i < MR; ++i) {
#pragma unroll
          for (int j = 0; j < MC; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
        }
        for (int k = k0; k < k1; k += 8) {
          wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, wmma::col_major> wf[MC];
#pragma unroll
          for (int j = 0; j < MC; ++j) wmma::load_matrix_sync(wf[j], b16 + j * 16 * ld + 2 * k, ld);
#pragma unroll
          for (int i = 0; i < MR; ++i) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, wmma::row_major> hf;
            wmma::load_matrix_sync(hf, a16 + i * 16 * ld + 2 * k, ld);
#pragma unroll
            for (int j = 0; j < MC; ++j) wmma::mma_sync(acc[i][j], hf, wf[j], acc[i][j]);
          }
        }
#pragma unroll
        for (int i = 0; i < MR; ++i) {
#pragma unroll
          for (int j = 0; j < MC; ++j) {
            wmma::store_matrix_sync(red + (warp * BR + i * 16) * BC + j * 16, acc[i][j],
                                    unsigned(BC), wmma::mem_row_major);
          }
        }
        __syncthreads();  // tiled mma: the partial sums are in shared memory
      }
    } else if (live > 0) {
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
      if (resident) {
        if constexpr (kMma) simt::reinterpret<uint32_t>(s_out)[r * S + c] = split_word<WT>(out);
        else s_out[r * S + c] = out;
      }
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
