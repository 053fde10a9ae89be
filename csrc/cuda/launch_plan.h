// Path selection and launch configuration for the CUDA recurrence, as pure C++.
//
// No CUDA and no torch here on purpose: the CUDA host code (rnn_cuda.cpp) calls
// make_plan() with the device properties it reads at run time, and the CPU build
// exposes the same function as fastrnn::_cuda_launch_plan (csrc/cuda_plan_ops.cpp)
// so that the choice can be unit-tested where no GPU exists.
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
#pragma once

#include <cstdint>
#include <string_view>

namespace fastrnn::plan {

enum Path : int {
  kPersistentSingle = 0,  // one block, __syncthreads between steps
  kPersistentGrid = 1,    // cooperative grid, grid.sync() between steps
  kGemmFallback = 2,      // per-step cuBLAS GEMM + fused pointwise kernel
};

// What the caller may force (tests exercise every path at small sizes).
enum Force : int { kAuto = 0, kForceSingle = 1, kForceGrid = 2, kForceGemm = 3 };

// "auto" | "single" | "grid" | "gemm"; false for anything else.
inline bool parse_force(std::string_view s, Force* out) {
  if (s.empty() || s == "auto") *out = kAuto;
  else if (s == "single") *out = kForceSingle;
  else if (s == "grid") *out = kForceGrid;
  else if (s == "gemm") *out = kForceGemm;
  else return false;
  return true;
}

constexpr int kThreads = 256;    // threads per block of the persistent kernels
constexpr int kRowsPerPass = 4;  // batch rows one thread accumulates at once
constexpr int kMaxLanesPerColumn = 32;  // the dot-product split stays inside a warp

// Register-resident weights per lane that the kernels are instantiated for.
// Adding a value here needs a matching instantiation in rnn_fwd_kernels.cu /
// rnn_bwd_kernels.cu (tests/test_cuda_build.py checks that they agree).
constexpr int kKptFloat[] = {4, 8, 16, 32, 64};
constexpr int kKptDouble[] = {4, 8, 16, 32};
constexpr int kNumKptFloat = 5;
constexpr int kNumKptDouble = 4;

struct Device {
  int sm_count = 1;
  int smem_per_block = 48 * 1024;  // bytes usable without opting in
  int smem_per_sm = 228 * 1024;
  int regs_per_sm = 65536;
  int max_threads_per_sm = 2048;
  int max_blocks_per_sm = 32;
  bool cooperative_launch = true;
};

struct Plan {
  Path path = kGemmFallback;
  int grid = 0;           // blocks
  int threads = 0;        // per block
  int kpt = 0;            // weights per lane (template parameter)
  int ks = 0;             // lanes per output column
  int rows_per_tile = 0;  // batch rows staged in shared memory per pass
  int smem_bytes = 0;     // dynamic shared memory per block
  int blocks_per_sm = 0;  // co-resident blocks of this kernel per SM (estimate)
  int resident = 0;       // 1: state kept in shared memory (two tiles) across steps
};

inline int num_kpt(int elem_size) { return elem_size == 8 ? kNumKptDouble : kNumKptFloat; }
inline int kpt_at(int elem_size, int i) {
  return elem_size == 8 ? kKptDouble[i] : kKptFloat[i];
}

// Registers per thread when the real count (cudaFuncGetAttributes) is not known: the
// cap that __launch_bounds__(kThreads, 2) gives every persistent kernel. ptxas fills
// most of it (64-128 measured), so the cap is the honest conservative figure;
// tests/test_cuda_build.py checks the built kernels against it.
constexpr int kMinBlocksPerSm = 2;
constexpr int kMaxRegsPerThread = 65536 / (kThreads * kMinBlocksPerSm);  // 128
inline int regs_model(int /*kpt*/, int /*elem_size*/) { return kMaxRegsPerThread; }

// Blocks of kThreads threads that fit on one SM by registers, threads and shared memory.
inline int blocks_per_sm(int regs_per_thread, int smem_bytes, const Device& dev) {
  // Registers are allocated per warp in units of 256.
  const int regs_per_warp = ((regs_per_thread * 32 + 255) / 256) * 256;
  const int warps = kThreads / 32;
  int by_regs = dev.regs_per_sm / (regs_per_warp * warps);
  int by_threads = dev.max_threads_per_sm / kThreads;
  // ~1 KiB per block is reserved by the runtime on sm_80+.
  int by_smem = smem_bytes > 0 ? dev.smem_per_sm / (smem_bytes + 1024) : dev.max_blocks_per_sm;
  int n = by_regs < by_threads ? by_regs : by_threads;
  n = n < by_smem ? n : by_smem;
  return n < dev.max_blocks_per_sm ? n : dev.max_blocks_per_sm;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int next_pow2(int64_t v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

// Rough per-step cost of one block in cycles, only used to rank configurations. Per
// batch row, the larger of the FMA issue time (kThreads/32 warps on 4 schedulers, kpt
// FMAs each) and the shared-memory time (every warp reads the whole padded state row,
// at 128 bytes per cycle); then shuffles, staging of the state, and a barrier (a grid
// barrier is about a microsecond).
inline int64_t step_cost(int64_t B, int kpt, int ks, int hp, int grid, bool resident,
                         int elem_size) {
  const int64_t rows = ceil_div(B, kRowsPerPass) * kRowsPerPass;
  int log_ks = 0;
  while ((1 << log_ks) < ks) ++log_ks;
  constexpr int warps = kThreads / 32;
  const int64_t fma_row = int64_t(warps) * kpt / 4;
  const int64_t lds_row = int64_t(warps) * hp * elem_size / 128;
  const int64_t fma = rows * (fma_row > lds_row ? fma_row : lds_row);
  const int64_t shuffles = rows * log_ks * 2;
  const int64_t staging = resident ? 0 : ceil_div(rows * hp, kThreads) * 4;
  const int64_t barrier = grid > 1 ? 2000 : (resident ? 50 : 100);
  return fma + shuffles + staging + barrier;
}

// Chooses the path and launch configuration for B batch rows and hidden size H in a
// compute type of elem_size bytes (4: float, also used for float16/bfloat16; 8: double).
// regs_per_kpt[i] is the register count of the kernel instantiated for kpt_at(i), or
// nullptr for regs_model(). Never returns a persistent plan that would not fit on chip.
// `resident` is only set when allow_resident (the forward kernel implements it).
inline Plan make_plan(int64_t B, int64_t H, int elem_size, const Device& dev,
                      const int* regs_per_kpt = nullptr, Force force = kAuto,
                      bool allow_resident = false) {
  Plan best;
  best.path = kGemmFallback;
  if (force == kForceGemm || B <= 0 || H <= 0 || (elem_size != 4 && elem_size != 8)) {
    return best;
  }
  int64_t best_cost = -1;
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
    const int64_t cost = step_cost(B, kpt, ks, hp, int(grid), resident, elem_size);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best.path = grid == 1 ? kPersistentSingle : kPersistentGrid;
      best.grid = int(grid);
      best.threads = kThreads;
      best.kpt = kpt;
      best.ks = ks;
      best.rows_per_tile = int(rows);
      best.smem_bytes = smem;
      best.blocks_per_sm = bps;
      best.resident = resident ? 1 : 0;
    }
  }
  return best;
}

}  // namespace fastrnn::plan
