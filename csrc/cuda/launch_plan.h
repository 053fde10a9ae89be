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
// launch of any size); otherwise one grid.sync() per step (cooperative launch).
#pragma once

#include <cstdint>
#include <string_view>

namespace fastrnn::plan {

enum Path : int {
  kPersistentSingle = 0,  // one block, __syncthreads between steps
  kPersistentGrid = 1,    // cooperative grid, grid.sync() between steps
  kGemmFallback = 2,      // per-step cuBLAS GEMM + fused pointwise kernel
  kTiled = 3,             // batch x hidden tiles over the grid (tiled_body.cuh)
};

// What the caller may force (tests exercise every path at small sizes).
enum Force : int {
  kAuto = 0, kForceSingle = 1, kForceGrid = 2, kForceGemm = 3, kForceTiled = 4,
  kForceTiledMma = 5,  // the tiled family on tensor cores (float16/bfloat16 models only)
};
inline constexpr const char* kForceNames[] = {"auto", "single", "grid", "gemm", "tiled",
                                              "tiled_mma"};

// The 16-bit type of a float16/bfloat16 model, whose W_hh the tensor-core path multiplies
// as it is (tiled_body.cuh); kMmaNone for float32/float64 models.
enum MmaType : int { kMmaNone = 0, kMmaF16 = 1, kMmaBF16 = 2 };

// "auto" | "single" | "grid" | "gemm" | "tiled" | "tiled_mma"; false for anything else.
inline bool parse_force(std::string_view s, Force* out) {
  if (s.empty()) {
    *out = kAuto;
    return true;
  }
  for (int i = 0; i < int(sizeof(kForceNames) / sizeof(kForceNames[0])); ++i) {
    if (s == kForceNames[i]) {
      *out = Force(i);
      return true;
    }
  }
  return false;
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
  int smem_optin = 0;              // bytes per block with the opt-in attribute (0: none)
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
  // kTiled only (0 otherwise):
  int tile_rows = 0;      // batch rows of a block
  int tile_cols = 0;      // output columns of a block ((32 / lanes_r) * micro_c)
  int lanes_r = 0;        // lanes of a warp along the rows (lanes_c = 32 / lanes_r)
  int micro_r = 0;        // rows of a lane's micro tile (template parameter)
  int micro_c = 0;        // columns of a lane's micro tile (template parameter)
  int row_tiles = 0, col_tiles = 0;  // grid = row_tiles * col_tiles
  int stride = 0;         // shared-memory row stride of weights and state (H or H + 1)
  int k_chunk = 0;        // K entries of one warp's share of the reduction
  // Tensor cores (MmaType; 0 otherwise): micro_r x micro_c are then the block tile in 16 x 16
  // fragments, stride and k_chunk count 4-byte words of 2 x 16-bit (one k each).
  int mma = 0;
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

// ---- the tiled family ------------------------------------------------------------------

constexpr int kWarps = kThreads / 32;
// The instantiated micro tiles (kpt_dispatch.h dispatch_micro): micro_r x micro_c.
constexpr int kTiledMicroRows[] = {1, 2, 4};
constexpr int kNumTiledMicroRows = 3;
constexpr int kTiledMicroCols[] = {1, 4};
constexpr int kNumTiledMicroCols = 2;
constexpr int kTiledMaxRows = 32;         // tile_rows cap (the live-row scan per step)
// __launch_bounds__(kThreads, kTiledMinBlocksPerSm): a tiled block usually fills most of an
// SM's shared memory (weights slice + state), so one block per SM is the design point and the
// kernels may use up to 255 registers (the largest fp64 micro tiles spill at 128).
constexpr int kTiledMinBlocksPerSm = 1;
constexpr int kTiledMaxRegsPerThread = 255;

// Outputs one thread reduces and finishes in the epilogue: the largest tile, 32 lanes x 4 x 4,
// over kThreads threads.
constexpr int kTiledOutputsPerThread = 32 * 4 * 4 / kThreads;
static_assert(kTiledOutputsPerThread * kThreads == 32 * 4 * 4, "tile outputs per thread");

// Shared-memory row stride: H, or H + 1 when H is even, so that the lanes reading one k of
// different rows (or weight columns) hit different banks. Never a power-of-two padding.
inline int tiled_stride(int64_t H) { return int(H % 2 == 0 ? H + 1 : H); }

// Dynamic shared memory of a tiled block: weights [tile_cols, stride], the state tile
// [tile_rows, stride] (two when resident: col_tiles == 1), partial sums [8, rows, cols].
inline int64_t tiled_smem_bytes(int tile_rows, int tile_cols, int stride, bool resident,
                                int elem_size) {
  return (int64_t(tile_cols) * stride + int64_t(resident ? 2 : 1) * tile_rows * stride +
          int64_t(kWarps) * tile_rows * tile_cols) * elem_size;
}

// Per-step cycles of a tiled plan, on make_plan's scale (step_cost): the busiest SM's FMA
// issue or shared-memory loads (each lane loads micro_r state values and micro_c weights per k, one
// wavefront each: conflict-free by the odd stride, broadcast among lanes of a row), the
// fixed-order reduction, the staging of the state from L2 (grid only), and the barrier.
inline int64_t tiled_step_cost(const Plan& p, int elem_size, int sm_count) {
  const int64_t grid = int64_t(p.row_tiles) * p.col_tiles;
  const int64_t per_sm_round = p.blocks_per_sm > 0 ? int64_t(p.blocks_per_sm) * sm_count : 1;
  const int64_t waves = ceil_div(grid, per_sm_round);
  const int64_t sharing = ceil_div(grid, int64_t(sm_count)) < p.blocks_per_sm
                              ? ceil_div(grid, int64_t(sm_count)) : p.blocks_per_sm;
  const int64_t fma = int64_t(p.micro_r) * p.micro_c * p.k_chunk * (elem_size == 8 ? 2 : 1);
  const int64_t lds = int64_t(p.micro_r + p.micro_c) * p.k_chunk * (elem_size == 8 ? 2 : 1);
  const int64_t core = kWarps * (fma / 4 > lds ? fma / 4 : lds);
  const int64_t reduce = int64_t(p.tile_rows) * p.tile_cols * kWarps / 32;
  const int64_t staging = p.col_tiles > 1
      ? 600 + int64_t(p.tile_rows) * p.stride * elem_size / 64 : 0;
  const int64_t barrier = p.col_tiles > 1 ? 2000 : 50;
  return waves * sharing * (core + reduce) + staging + barrier;
}

// The cheapest tiled plan for B x H that fits (shared memory up to the opt-in limit,
// co-resident blocks when a grid barrier is needed); path kGemmFallback if none does.
// regs: registers per thread of the tiled kernels (0: the __launch_bounds__ cap,
// kTiledMaxRegsPerThread).
inline Plan make_tiled_plan(int64_t B, int64_t H, int elem_size, const Device& dev,
                            int regs = 0) {
  Plan best;
  if (B <= 0 || H <= 0 || (elem_size != 4 && elem_size != 8)) return best;
  const int smem_limit = dev.smem_optin > dev.smem_per_block ? dev.smem_optin : dev.smem_per_block;
  const int stride = tiled_stride(H);
  // Each warp's K share, a multiple of 4 so that warps start on aligned k.
  const int k_chunk = int(ceil_div(ceil_div(H, kWarps), 4) * 4);
  int64_t best_cost = -1;
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
      const int64_t smem = tiled_smem_bytes(tile_rows, tile_cols, stride, p.resident, elem_size);
      if (smem > smem_limit) continue;
      p.smem_bytes = int(smem);
      p.blocks_per_sm = blocks_per_sm(regs > 0 ? regs : kTiledMaxRegsPerThread, p.smem_bytes, dev);
      if (p.blocks_per_sm < 1) continue;
      if (p.col_tiles > 1 && (!dev.cooperative_launch ||
                              int64_t(p.grid) > int64_t(p.blocks_per_sm) * dev.sm_count)) {
        continue;  // grid.sync() needs every block resident at once
      }
      const int64_t cost = tiled_step_cost(p, elem_size, dev.sm_count);
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        best = p;
      }
    }
  }
  return best;
}

// ---- the tiled family on tensor cores (float16/bfloat16 models) -------------------------

// Block tiles in 16 x 16 fragments (rows x columns): at most kTiledOutputsPerThread outputs
// per thread, like the FMA tiles (kpt_dispatch.h dispatch_fragments).
constexpr int kMmaTiles[][2] = {{1, 1}, {1, 2}, {2, 1}};
constexpr int kNumMmaTiles = 3;
// Estimates for the ranking (cycles): one m16n16k16 mma of a warp on its SM sub-partition's
// tensor core (A100: 256 dense bf16 FMA per clock per sub-partition; sm_90's mma.sync is
// not faster per clock), and one fragment load from shared memory (512 bytes at 128/clock).
constexpr int kMmaCycles = 16;
constexpr int kFragLoadCycles = 4;

// Row stride in 4-byte words: H rounded up to 8 (a fragment's 16 elements), plus 4 words so
// that the 8 rows a fragment load reads at once start in different banks; a multiple of 4
// keeps every fragment 32-byte aligned (wmma's rule).
inline int tiled_mma_stride(int64_t H) { return int((H + 7) / 8 * 8 + 4); }

// Per-step cycles of a tensor-core plan on tiled_step_cost's scale: the busiest SM's 8 warps,
// two per sub-partition, each k_chunk / 8 fragment steps of micro_r x micro_c mmas and
// micro_r + micro_c fragment loads, then the reduction, staging and barrier as the FMA tiles.
inline int64_t tiled_mma_step_cost(const Plan& p, int sm_count) {
  const int64_t grid = int64_t(p.row_tiles) * p.col_tiles;
  const int64_t per_sm = ceil_div(grid, int64_t(sm_count));
  const int64_t sharing = per_sm < p.blocks_per_sm ? per_sm : p.blocks_per_sm;
  const int64_t waves = ceil_div(grid, int64_t(p.blocks_per_sm) * sm_count);
  const int64_t steps = p.k_chunk / 8;
  const int64_t mma = int64_t(kWarps / 4) * steps * p.micro_r * p.micro_c * kMmaCycles;
  const int64_t lds = int64_t(kWarps) * steps * (p.micro_r + p.micro_c) * kFragLoadCycles;
  const int64_t reduce = int64_t(p.tile_rows) * p.tile_cols * kWarps / 32;
  const int64_t staging = p.col_tiles > 1 ? 600 + int64_t(p.tile_rows) * p.stride * 4 / 64 : 0;
  const int64_t barrier = p.col_tiles > 1 ? 2000 : 50;
  return waves * sharing * ((mma > lds ? mma : lds) + reduce) + staging + barrier;
}

// The cheapest tensor-core plan for B x H (shared memory as make_tiled_plan; the mma
// accumulates in float, so the compute type is float32); path kGemmFallback if none fits
// or the model is not float16/bfloat16.
inline Plan make_tiled_mma_plan(int64_t B, int64_t H, int mma, const Device& dev, int regs = 0) {
  Plan best;
  if (B <= 0 || H <= 0 || (mma != kMmaF16 && mma != kMmaBF16)) return best;
  const int smem_limit = dev.smem_optin > dev.smem_per_block ? dev.smem_optin : dev.smem_per_block;
  const int stride = tiled_mma_stride(H);
  const int k_chunk = int(ceil_div(ceil_div((H + 7) / 8 * 8, kWarps), 8) * 8);  // words
  int64_t best_cost = -1;
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
    const int64_t smem = tiled_smem_bytes(p.tile_rows, p.tile_cols, stride, p.resident, 4);
    if (smem > smem_limit) continue;
    p.smem_bytes = int(smem);
    p.blocks_per_sm = blocks_per_sm(regs > 0 ? regs : kTiledMaxRegsPerThread, p.smem_bytes, dev);
    if (p.blocks_per_sm < 1) continue;
    if (p.col_tiles > 1 && (!dev.cooperative_launch ||
                            int64_t(p.grid) > int64_t(p.blocks_per_sm) * dev.sm_count)) {
      continue;  // grid.sync() needs every block resident at once
    }
    const int64_t cost = tiled_mma_step_cost(p, dev.sm_count);
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = p;
    }
  }
  return best;
}

// Chooses the path and launch configuration for B batch rows and hidden size H in a
// compute type of elem_size bytes (4: float, also used for float16/bfloat16; 8: double).
// regs_per_kpt[i] is the register count of the kernel instantiated for kpt_at(i), or
// nullptr for regs_model(). Never returns a persistent plan that would not fit on chip.
// `resident` is only set when allow_resident (the forward kernel implements it).
// With force == kAuto the tiled family competes on cost (tiled_step_cost); kForceTiled
// takes only it, kForceSingle / kForceGrid only the older kernels. tiled_regs: registers
// per thread of the tiled kernels (0: the model's cap). mma: the model's 16-bit type
// (MmaType): kForceTiledMma takes the tensor-core tiles (gemm if kMmaNone), and kAuto
// weighs them too where the batch fills a fragment's 16 rows (B >= 16).
inline Plan make_plan(int64_t B, int64_t H, int elem_size, const Device& dev,
                      const int* regs_per_kpt = nullptr, Force force = kAuto,
                      bool allow_resident = false, int tiled_regs = 0, int mma = kMmaNone) {
  Plan best;
  best.path = kGemmFallback;
  if (force == kForceGemm || B <= 0 || H <= 0 || (elem_size != 4 && elem_size != 8)) {
    return best;
  }
  if (force == kForceTiled) return make_tiled_plan(B, H, elem_size, dev, tiled_regs);
  if (force == kForceTiledMma) {
    return elem_size == 4 ? make_tiled_mma_plan(B, H, mma, dev, tiled_regs) : best;
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
  if (force == kAuto) {
    const Plan tiled = make_tiled_plan(B, H, elem_size, dev, tiled_regs);
    if (tiled.path == kTiled &&
        (best_cost < 0 || tiled_step_cost(tiled, elem_size, dev.sm_count) < best_cost)) {
      best_cost = tiled_step_cost(tiled, elem_size, dev.sm_count);
      best = tiled;
    }
    if (B >= 16 && elem_size == 4) {
      const Plan tc = make_tiled_mma_plan(B, H, mma, dev, tiled_regs);
      if (tc.path == kTiled &&
          (best_cost < 0 || tiled_mma_step_cost(tc, dev.sm_count) < best_cost)) {
        return tc;
      }
    }
  }
  return best;
}

}  // namespace fastrnn::plan
