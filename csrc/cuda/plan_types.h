// The launch plan's types: the device as the host sees it, the plan, the kernels'
// instantiated shapes (kpt, micro tiles) and the geometry both families' plans and the cost
// model share (occupancy, tile sizes). Pure C++ (no CUDA, no torch): see launch_plan.h.
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
  kForceTiledMma = 5,  // the tiled family on tensor cores (bfloat16 models only)
};
inline constexpr const char* kForceNames[] = {"auto", "single", "grid", "gemm", "tiled",
                                              "tiled_mma"};

// The 16-bit type of a float16/bfloat16 model, whose W_hh the tensor-core path multiplies
// as it is (tiled_body.cuh); kMmaNone for float32/float64 models.
enum MmaType : int { kMmaNone = 0, kMmaF16 = 1, kMmaBF16 = 2 };

// Whether the tensor-core tiles keep rnn.h's contract for this 16-bit type. They multiply
// the fp32 state split as hi + lo in the 16-bit type (tiled_body.cuh split_word): that is
// relative-accurate to ~u^2 only where hi and lo are normal numbers of the type. bfloat16
// has float32's exponent range, so it is (for every state the fp32 kernels can hold).
// float16 is not: below |s| ~ 2^-3 lo is subnormal and below 2^-14 hi is too, so a backward
// carry of |dz| ~ 1e-5..1e-7 (e.g. loss = y.mean()) loses 0.2-7 % of its value, and above
// 65504 hi = inf, lo = -inf give hi*w + lo*w = NaN (GradScaler's scaled gradients). float16
// models therefore use the FMA tiles; a forced tiled_mma falls back like any forced path
// that cannot run.
inline bool mma_keeps_contract(int mma) { return mma == kMmaBF16; }

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
  // What the cost model (cost_model.h, which ranks the plans) needs beyond occupancy, as the
  // host reads it: cudaDeviceGetAttribute on a GPU (rnn_cuda.cpp), sim_device.h in the
  // simulation. 0 / "": unknown (cost_model.h device_spec says what it assumes then).
  const char* name = "";  // cudaDeviceProp::name: picks cost_model.h's estimates (kDevices)
  int clock_khz = 0;      // cudaDevAttrClockRate: peak SM clock
  int cc_major = 0;       // compute capability: FP32 lanes per SM
  int cc_minor = 0;
  int l2_bytes = 0;       // cudaDevAttrL2CacheSize
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

// ---- the tiled family on tensor cores (float16/bfloat16 models) -------------------------

// Block tiles in 16 x 16 fragments (rows x columns): at most kTiledOutputsPerThread outputs
// per thread, like the FMA tiles (kpt_dispatch.h dispatch_fragments).
constexpr int kMmaTiles[][2] = {{1, 1}, {1, 2}, {2, 1}};
constexpr int kNumMmaTiles = 3;

// K of the tensor-core tiles in 4-byte state words (one k each): H rounded up to 8 words,
// the 16 16-bit elements of one fragment K step (the rest are zero words).
constexpr int64_t mma_k_words(int64_t H) { return (H + 7) / 8 * 8; }

// Row stride in 4-byte words: H rounded up to 8 (a fragment's 16 elements), plus 4 words so
// that the 8 rows a fragment load reads at once start in different banks; a multiple of 4
// keeps every fragment 32-byte aligned (wmma's rule).
inline int tiled_mma_stride(int64_t H) { return int(mma_k_words(H) + 4); }

}  // namespace fastrnn::plan
