// Path selection and launch configuration for the CUDA recurrence, as pure C++.
//
// No CUDA and no torch here on purpose: the CUDA host code (rnn_cuda.cpp) calls
// make_plan() with the device properties it reads at run time, and the CPU build
// exposes the same function as fastrnn::_cuda_launch_plan (csrc/cuda_plan_ops.cpp)
// so that the choice can be unit-tested where no GPU exists. Configurations are ranked by the
// cost model's predicted nanoseconds per step (cost_model.h; the device's clock, compute
// capability and L2 are plan::Device fields the host fills), the one scale the measured
// choice's predictions (candidates.h) and the README's table use too. The types (Device, Plan,
// the instantiated shapes) are in plan_types.h.
//
// Kernel shape the plan describes (see recurrence.cuh and README.md):
//   a block of kThreads threads owns `cols_per_block = kThreads / ks` output columns;
//   `ks` consecutive lanes share one column and split its dot product over the
//   hidden dimension, each lane holding `kpt` weights in registers, so one block
//   holds a [cols_per_block, ks * kpt] slice of the (padded) recurrent matrix.
//   The state of `rows_per_tile` batch rows is staged in shared memory per pass.
//   `resident` (single block, whole batch in one tile): the forward keeps the state in
//   two shared-memory tiles across steps instead of re-reading it from global memory,
//   which leaves one __syncthreads per step.
//
// The tiled family (tiled_body.cuh; plan: make_tiled_plan below) tiles batch x hidden over
// the grid: block (rb, cb) owns batch rows [rb * tile_rows, +tile_rows) and output columns
// [cb * tile_cols, +tile_cols), keeps its [tile_cols, H] slice of the recurrent matrix in
// shared memory (up to the device's opt-in limit) for all steps, and splits the K reduction
// over its 8 warps (partial sums reduced through shared memory in a fixed order). A warp's
// 32 lanes form a lanes_r x (32 / lanes_r) grid, each lane a micro_r x micro_c micro tile
// of outputs (a block tile of 32 x micro_r x micro_c outputs: as few as 32 so that small
// B x H still spreads over every SM). When one column tile covers all of H (col_tiles == 1) blocks only
// split the batch: the state stays in shared memory and no grid barrier exists (a plain
// launch of any size); otherwise one grid.sync() per step (cooperative launch). For a
// bfloat16 model the same family also runs on tensor cores (make_tiled_mma_plan:
// block tiles of 16 x 16 wmma fragments), ranked with the rest on the same model.
#pragma once

#include <cstdint>
#include <functional>

#include "cost_model.h"
#include "plan_types.h"

namespace fastrnn::plan {

// Whether a tiled block of `smem` bytes (either family) can run on `dev`: within the opt-in
// per-block limit, at least one block per SM (regs: the kernels' registers per thread, 0: the
// __launch_bounds__ cap), and, with several column tiles, every block co-resident for
// grid.sync() (cooperative launch). Sets p.smem_bytes and p.blocks_per_sm. measured: the blocks
// per SM the runtime's occupancy calculator gives for p's kernel (on a GPU, when the model's
// figure proved optimistic: CudaTarget::plan re-plans with it), or nullptr for the model's.
using MeasuredOccupancy = std::function<int(const Plan&)>;
inline bool fit_tiled(Plan& p, int64_t smem, const Device& dev, int regs,
                      const MeasuredOccupancy* measured) {
  const int smem_limit = dev.smem_optin > dev.smem_per_block ? dev.smem_optin : dev.smem_per_block;
  if (smem > smem_limit) return false;
  p.smem_bytes = int(smem);
  p.blocks_per_sm = measured ? (*measured)(p)
                             : blocks_per_sm(regs > 0 ? regs : kTiledMaxRegsPerThread, p.smem_bytes, dev);
  if (p.blocks_per_sm < 1) return false;
  return p.col_tiles == 1 ||
         (dev.cooperative_launch && int64_t(p.grid) <= int64_t(p.blocks_per_sm) * dev.sm_count);
}

// The argmin of the configurations' predicted steps: keeps p if it is the first or cheaper
// (ties: the earlier one).
inline void keep_cheaper(const Plan& p, double cost, Plan& best, double& best_cost) {
  if (best_cost < 0 || cost < best_cost) {
    best_cost = cost;
    best = p;
  }
}

// The cheapest tiled plan for B x H that fits (shared memory up to the opt-in limit,
// co-resident blocks when a grid barrier is needed); path kGemmFallback if none does.
// Ranked by the cost model's predicted step (cost_model.h tiled_cost) on `spec`'s device.
// elem_size: the compute type (4 or 8). regs: registers per thread of the tiled kernels
// (0: the __launch_bounds__ cap, kTiledMaxRegsPerThread).
inline Plan make_tiled_plan(const cost::Shape& s, int elem_size, const cost::DeviceSpec& spec,
                            int regs = 0, const MeasuredOccupancy* measured = nullptr) {
  Plan best;
  const Device& dev = spec.dev;
  const int64_t B = s.B, H = s.H;
  const int stride = tiled_stride(H);
  // Each warp's K share, a multiple of 4 so that warps start on aligned k.
  const int k_chunk = int(ceil_div(ceil_div(H, kWarps), 4) * 4);
  double best_cost = -1;
  for (int lanes_r = 1; lanes_r <= 32; lanes_r *= 2) {
    for (int mi = 0; mi < kNumTiledMicroRows * kNumTiledMicroCols; ++mi) {
      const int micro_r = kTiledMicroRows[mi / kNumTiledMicroCols];
      const int micro_c = kTiledMicroCols[mi % kNumTiledMicroCols];
      const int tile_rows = lanes_r * micro_r;
      const int tile_cols = (32 / lanes_r) * micro_c;
      if (tile_rows > kTiledMaxRows) continue;
      // Needless rows or columns: a smaller tile of the same shape family does it.
      if (lanes_r > 1 && tile_rows / 2 >= B) continue;
      Plan p;
      p.path = kTiled;
      p.threads = kThreads;
      p.tile_rows = tile_rows;
      p.tile_cols = tile_cols;
      p.lanes_r = lanes_r;
      p.micro_r = micro_r;
      p.micro_c = micro_c;
      p.row_tiles = int(ceil_div(B, tile_rows));
      p.col_tiles = int(ceil_div(H, tile_cols));
      p.grid = p.row_tiles * p.col_tiles;
      p.stride = stride;
      p.k_chunk = k_chunk;
      p.resident = p.col_tiles == 1 ? 1 : 0;
      p.rows_per_tile = tile_rows;
      if (!fit_tiled(p, tiled_smem_bytes(tile_rows, tile_cols, stride, p.resident, elem_size),
                     dev, regs, measured)) {
        continue;
      }
      keep_cheaper(p, cost::tiled_cost(spec, s, p).total, best, best_cost);
    }
  }
  return best;
}

// The cheapest tensor-core plan for s.B x s.H (shared memory as make_tiled_plan; the mma
// accumulates in float, so the compute type is float32), ranked by the cost model's predicted
// step (cost_model.h tiled_mma_cost) on `spec`'s device; path kGemmFallback if none fits or
// the model is not bfloat16 (mma: its MmaType; float16 breaks the contract,
// plan_types.h mma_keeps_contract).
inline Plan make_tiled_mma_plan(const cost::Shape& s, int mma, const cost::DeviceSpec& spec,
                                int regs = 0, const MeasuredOccupancy* measured = nullptr) {
  Plan best;
  const Device& dev = spec.dev;
  const int64_t B = s.B, H = s.H;
  if (B <= 0 || H <= 0 || !mma_keeps_contract(mma)) return best;
  const int stride = tiled_mma_stride(H);
  const int k_chunk = int(ceil_div(ceil_div(mma_k_words(H), kWarps), 8) * 8);  // words
  double best_cost = -1;
  for (const auto& t : kMmaTiles) {
    Plan p;
    p.path = kTiled;
    p.mma = mma;
    p.threads = kThreads;
    p.micro_r = t[0];
    p.micro_c = t[1];
    p.tile_rows = 16 * t[0];
    p.tile_cols = 16 * t[1];
    p.lanes_r = 1;  // unused by the mma path
    p.row_tiles = int(ceil_div(B, p.tile_rows));
    p.col_tiles = int(ceil_div(H, p.tile_cols));
    p.grid = p.row_tiles * p.col_tiles;
    p.stride = stride;
    p.k_chunk = k_chunk;
    p.resident = p.col_tiles == 1 ? 1 : 0;
    p.rows_per_tile = p.tile_rows;
    if (!fit_tiled(p, tiled_smem_bytes(p.tile_rows, p.tile_cols, stride, p.resident, 4), dev,
                   regs, measured)) {
      continue;
    }
    keep_cheaper(p, cost::tiled_mma_cost(spec, s, p).total, best, best_cost);
  }
  return best;
}

// Chooses the path and launch configuration for s.B batch rows and hidden size s.H (s.T
// steps, s.backward: the BPTT kernels, s.packed: lengths given) in the compute type of
// s.elem_size (8: double; 4 or 2: float, float16/bfloat16 compute in float32). Every
// configuration that fits is ranked by the cost model's predicted time per step on this
// device (cost_model.h plan_cost: one scale for both families and for the measured choice's
// predictions, candidates.h). regs_per_kpt[i] is the register count of the kernel
// instantiated for kpt_at(i), or nullptr for regs_model(). Never returns a persistent plan
// that would not fit on chip. `resident` is only set for the forward (the kernel that
// implements it). kForceTiled takes only the tiled family, kForceSingle / kForceGrid only the
// older kernels. tiled_regs: registers per thread of the tiled kernels (0: the model's cap).
// mma: a float16/bfloat16 model's 16-bit type (MmaType; s.elem_size 2): its tensor-core tiles
// (make_tiled_mma_plan) are one more family of configurations, ranked on the same scale
// (cost_model.h tiled_mma_cost); kForceTiledMma takes only them (gemm for any other model).
// tiled_occupancy: the runtime's blocks per SM of a tiled configuration instead of the model's
// (fit_tiled; nullptr: the model's).
inline Plan make_plan(const cost::Shape& s, const Device& dev,
                      const int* regs_per_kpt = nullptr, Force force = kAuto,
                      int tiled_regs = 0, int mma = kMmaNone,
                      const MeasuredOccupancy* tiled_occupancy = nullptr) {
  Plan best;
  best.path = kGemmFallback;
  const int64_t B = s.B, H = s.H;
  if (force == kForceGemm || B <= 0 || H <= 0 ||
      (s.elem_size != 2 && s.elem_size != 4 && s.elem_size != 8)) {
    return best;
  }
  const int elem_size = cost::compute_elem(s.elem_size);
  const bool allow_resident = !s.backward;
  const cost::DeviceSpec spec = cost::device_spec(dev);
  // The tensor-core tiles: a 16-bit model's own W_hh, float accumulation.
  const int tc_mma = s.elem_size == 2 ? mma : kMmaNone;
  if (force == kForceTiled) return make_tiled_plan(s, elem_size, spec, tiled_regs, tiled_occupancy);
  if (force == kForceTiledMma) {
    return make_tiled_mma_plan(s, tc_mma, spec, tiled_regs, tiled_occupancy);
  }
  double best_cost = -1;
  for (int i = 0; i < num_kpt(elem_size); ++i) {
    const int kpt = kpt_at(elem_size, i);
    // The fewest lanes per column that cover H (more would only add padding).
    const int ks = next_pow2(ceil_div(H, kpt));
    if (ks > kMaxLanesPerColumn || ks > kThreads) continue;
    const int cols = kThreads / ks;
    const int64_t grid = ceil_div(H, cols);
    const int hp = ks * kpt;  // padded row length of the staged state
    const int64_t row_bytes = int64_t(hp) * elem_size;
    int64_t rows = dev.smem_per_block / row_bytes;
    rows = (rows / kRowsPerPass) * kRowsPerPass;
    const int64_t b_pad = ceil_div(B, kRowsPerPass) * kRowsPerPass;
    if (rows > b_pad) rows = b_pad;
    if (rows < kRowsPerPass) continue;
    // Whole batch in one block with room for two tiles: keep the state on chip.
    const bool resident =
        allow_resident && grid == 1 && 2 * b_pad * row_bytes <= dev.smem_per_block;
    if (resident) rows = b_pad;
    const int smem = int((resident ? 2 : 1) * rows * row_bytes);
    const int regs = regs_per_kpt ? regs_per_kpt[i] : regs_model(kpt, elem_size);
    const int bps = blocks_per_sm(regs, smem, dev);
    if (bps < 1) continue;
    if (grid == 1) {
      if (force == kForceGrid) continue;
    } else {
      if (force == kForceSingle) continue;
      // Every block must be resident at once, or grid.sync() deadlocks.
      if (!dev.cooperative_launch || grid > int64_t(bps) * dev.sm_count) continue;
    }
    Plan p;
    p.path = grid == 1 ? kPersistentSingle : kPersistentGrid;
    p.grid = int(grid);
    p.threads = kThreads;
    p.kpt = kpt;
    p.ks = ks;
    p.rows_per_tile = int(rows);
    p.smem_bytes = smem;
    p.blocks_per_sm = bps;
    p.resident = resident ? 1 : 0;
    keep_cheaper(p, cost::persistent_cost(spec, s, p).total, best, best_cost);
  }
  if (force == kAuto) {
    const Plan tiled = make_tiled_plan(s, elem_size, spec, tiled_regs, tiled_occupancy);
    if (tiled.path == kTiled) keep_cheaper(tiled, cost::tiled_cost(spec, s, tiled).total, best, best_cost);
    const Plan tc = make_tiled_mma_plan(s, tc_mma, spec, tiled_regs, tiled_occupancy);
    if (tc.path == kTiled) keep_cheaper(tc, cost::tiled_mma_cost(spec, s, tc).total, best, best_cost);
  }
  return best;
}

}  // namespace fastrnn::plan
