// The cost model of the CUDA recurrence: predicted time per time step of every candidate
// (the persistent plans of launch_plan.h that fit, the per-step cuBLAS path, cuDNN), with
// the reason: compute, shared-memory traffic, global-memory latency, barriers, launches.
//
// One scale for every decision: launch_plan.h's make_plan ranks its configurations with
// these predictions (plan_cost), candidates.h predicts every candidate of the measured choice
// with them. Pure C++ (no CUDA, no torch): exposed as fastrnn::_cuda_cost_model
// (../cuda_plan_ops.cpp) so CPU tests and `python -m fastrnn cost-model` reach it;
// fastrnn/_cuda_choice.py uses it when it may not measure (FASTRNN_CUDA_AUTOTUNE=0,
// deterministic mode).
//
// NOTHING HERE HAS BEEN MEASURED ON A GPU. Device numbers marked "spec" are vendors'
// published figures; those marked "estimate" are rough values from the microbenchmark
// literature, to be tuned with benchmarks/bench_cuda.py (predicted vs measured per step)
// the day a GPU runs it. The model reads the plan (tiles, lanes, kpt) the host code would
// launch, and follows the kernels' structure as described in README.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

#include "../sim/sim_device.h"
#include "plan_types.h"

namespace fastrnn::cost {

// What the host cannot read from a GPU, per named GPU: the published figures the runtime does
// not report ("spec") and the estimates ("estimate"). The clock, SM count, FP32 lanes (from
// the compute capability), L2 size and occupancy limits come from the host (plan::Device).
struct DeviceEstimates {
  const char* name;             // found case-insensitively in the device's name
                                //   ("NVIDIA H100 80GB HBM3" -> h100)
  const char* sim_device;       // sim_device.h entry with its readable properties (the
                                //   simulation's device, and `cost-model --device`)
  double tensor_bf16_tflops;    // spec: dense BF16 tensor-core peak
  double hbm_gbs;               // spec: HBM bandwidth
  double l2_gbs;                // estimate: aggregate L2 bandwidth
  double l2_latency_ns;         // estimate: load-to-use of an L2 hit
  double hbm_latency_ns;        // estimate: load-to-use of an L2 miss
  double grid_sync_ns;          // estimate: cooperative-groups grid.sync() of a full grid
  int syncthreads_cycles;       // estimate: __syncthreads of 8 warps, arrival to release
  double launch_ns;             // estimate: one dependent kernel launch in a per-step loop
                                //   (host dispatch of an ATen op + launch gap)
  double gemm_efficiency;       // estimate: fraction of FP32 peak a small cuBLAS GEMM reaches
  double cudnn_persist_efficiency;  // estimate: same for cuDNN's persistent small-H kernel
  int mma_fma_per_sm_clk;       // estimate: dense 16-bit FMA per SM per clock that warp-level
                                //   mma.sync (wmma) reaches: the A100 spec peak (312 TFLOPS /
                                //   2 / 108 SMs / 1.41 GHz); on sm_90 about half of wgmma's
                                //   989 TFLOPS (microbenchmark literature)
};

// H100 SXM5: 132 SMs x 128 FP32 lanes x 2 x 1.98 GHz = 66.9 TFLOPS (datasheet: 67).
// H200: the same GH100 SM array and clock with HBM3e (4.8 TB/s, 141 GB).
// A100 SXM4: 108 SMs x 64 lanes x 2 x 1.41 GHz = 19.5 TFLOPS (datasheet: 19.5).
inline constexpr DeviceEstimates kDevices[] = {
    {"h100", "h100", 989.0, 3350.0, 5500.0, 200.0, 550.0, 1000.0, 40, 3000.0, 0.5, 0.5, 1024},
    {"h200", "h100", 989.0, 4800.0, 5500.0, 200.0, 550.0, 1000.0, 40, 3000.0, 0.5, 0.5, 1024},
    {"a100", "a100", 312.0, 2039.0, 4000.0, 200.0, 600.0, 1200.0, 40, 3000.0, 0.5, 0.5, 1024},
};
// A GPU whose name matches no entry: the H100's estimates (a recent data-centre part), with
// the clock, SMs, lanes and L2 its host reports.
inline constexpr DeviceEstimates kOtherDevice = kDevices[0];
// Assumed where the host could not read a property (never on a GPU or in the simulation):
// the lowest clock and L2 of the tabled GPUs (A100), so that a compute estimate errs slow.
constexpr int kAssumedClockKhz = 1410000;
constexpr int kAssumedL2Bytes = 40 * 1024 * 1024;

inline const DeviceEstimates* find_device(std::string_view name) {
  for (const DeviceEstimates& d : kDevices) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

// The entry whose name occurs in `device_name`, ignoring case; nullptr if none.
inline const DeviceEstimates* match_device(std::string_view device_name) {
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
  for (const DeviceEstimates& d : kDevices) {
    const std::string_view key = d.name;
    for (size_t i = 0; i + key.size() <= device_name.size(); ++i) {
      size_t j = 0;
      while (j < key.size() && lower(device_name[i + j]) == key[j]) ++j;
      if (j == key.size()) return &d;
    }
  }
  return nullptr;
}

// FP32 FMA lanes per SM by compute capability: 64 on sm_80 (A100) and before Ampere, 128 on
// sm_86, sm_89, sm_90 and later (CUDA programming guide, arithmetic instruction throughput).
inline int fp32_lanes_per_sm(int cc_major, int cc_minor) {
  if (cc_major == 0) return 128;  // unknown: a current part
  return cc_major < 8 || (cc_major == 8 && cc_minor == 0) ? 64 : 128;
}

// The plan's view of a simulated GPU (every property the host reads on a real one).
inline plan::Device sim_plan_device(const sim::SimDevice& d) {
  plan::Device dev;
  dev.sm_count = d.sm_count;
  dev.smem_per_block = d.smem_per_block - d.static_smem;
  dev.smem_optin = d.smem_per_block_optin - d.static_smem;
  dev.smem_per_sm = d.smem_per_sm;
  dev.regs_per_sm = d.regs_per_sm;
  dev.max_threads_per_sm = d.max_threads_per_sm;
  dev.max_blocks_per_sm = d.max_blocks_per_sm;
  dev.cooperative_launch = d.cooperative_launch;
  dev.name = d.name;
  dev.clock_khz = d.clock_khz;
  dev.cc_major = d.cc_major;
  dev.cc_minor = d.cc_minor;
  dev.l2_bytes = d.l2_bytes;
  return dev;
}

// A tabled GPU as a plan::Device: its sim_device.h properties under its own name.
inline plan::Device plan_device(const DeviceEstimates& e) {
  plan::Device dev = sim_plan_device(*sim::find_sim_device(e.sim_device));
  dev.name = e.name;
  return dev;
}

// Everything the model reads about a device: the host's numbers and the estimates.
struct DeviceSpec {
  plan::Device dev;
  const char* name;             // the estimates' entry
  double clock_ghz;             // host: peak SM clock
  int fp32_fma_per_sm_clk;      // host: FP32 lanes per SM (compute capability)
  int smem_bytes_per_sm_clk;    // spec: 32 banks x 4 bytes per clock (CUDA programming guide)
  double l2_mib;                // host: L2 size
  double tensor_bf16_tflops, hbm_gbs, l2_gbs, l2_latency_ns, hbm_latency_ns, grid_sync_ns;
  int syncthreads_cycles;
  double launch_ns, gemm_efficiency, cudnn_persist_efficiency;  // DeviceEstimates
  int mma_fma_per_sm_clk;                                        // DeviceEstimates
  // The compiled kernels' registers, as the host reads them on a GPU (host_device.h); nullptr /
  // 0: launch_plan.h's model of them (the __launch_bounds__ caps).
  const int* kpt_regs = nullptr;
  int tiled_regs = 0;
};

inline DeviceSpec device_spec(const plan::Device& dev) {
  const DeviceEstimates* m = match_device(dev.name ? dev.name : "");
  const DeviceEstimates& e = m ? *m : kOtherDevice;
  DeviceSpec d{};
  d.dev = dev;
  d.name = m ? e.name : "other";
  d.clock_ghz = (dev.clock_khz > 0 ? dev.clock_khz : kAssumedClockKhz) * 1e-6;
  d.fp32_fma_per_sm_clk = fp32_lanes_per_sm(dev.cc_major, dev.cc_minor);
  d.smem_bytes_per_sm_clk = 128;
  d.l2_mib = double(dev.l2_bytes > 0 ? dev.l2_bytes : kAssumedL2Bytes) / (1024.0 * 1024.0);
  d.tensor_bf16_tflops = e.tensor_bf16_tflops;
  d.hbm_gbs = e.hbm_gbs;
  d.l2_gbs = e.l2_gbs;
  d.l2_latency_ns = e.l2_latency_ns;
  d.hbm_latency_ns = e.hbm_latency_ns;
  d.grid_sync_ns = e.grid_sync_ns;
  d.syncthreads_cycles = e.syncthreads_cycles;
  d.launch_ns = e.launch_ns;
  d.gemm_efficiency = e.gemm_efficiency;
  d.cudnn_persist_efficiency = e.cudnn_persist_efficiency;
  d.mma_fma_per_sm_clk = e.mma_fma_per_sm_clk;
  return d;
}

enum Candidate : int {
  kSingle = 0, kGrid = 1, kTiled = 2, kGemm = 3, kCudnn = 4, kTiledMma = 5, kNumCandidates = 6
};

struct Shape {
  int64_t T = 1, B = 1, H = 1;
  int elem_size = 4;      // storage: 8 float64, 4 float32, 2 float16/bfloat16
  bool backward = false;  // the BPTT recurrence instead of the forward one
  bool packed = false;    // lengths given (PackedSequence)
  // elem_size 2: the model's 16-bit type (plan::MmaType; kMmaNone: unknown / not 16-bit),
  // whose tensor-core tiles (bfloat16 only, plan::mma_keeps_contract) are a candidate.
  int mma = plan::kMmaNone;
  // Packed, lengths sorted non-increasing (PackedSequence order): the batch rows still live
  // per step, averaged over the steps (sum of min(length, T) / T); 0: all B (unknown, e.g.
  // lengths on the GPU). The tiled kernel multiplies and stages only a tile's live prefix.
  double live_rows = 0;
};

// The live batch rows per step the model assumes: s.live_rows when packed and given, else B.
inline double live_rows(const Shape& s) {
  if (!s.packed || s.live_rows <= 0) return double(s.B);
  return s.live_rows < double(s.B) ? s.live_rows : double(s.B);
}

// Nanoseconds per time step; total == compute + smem + latency + barrier + launch.
struct Prediction {
  int candidate = kGemm;
  bool fits = false;       // false: this candidate cannot run here (nothing else is set)
  plan::Plan plan;         // the persistent plan (persistent candidates)
  int recorded_path = 3;   // last_plan.h RecordedPath: 0 resident 1 single 2 grid 3 gemm
                           // 4 tiled; -1 cudnn
  int tiles_per_step = 0;
  double compute = 0;      // FMA issue and shuffles (or GEMM math)
  double smem = 0;         // shared-memory time not hidden behind the FMAs
  double latency = 0;      // global/L2 round trips and bytes on the step's critical path
  double barrier = 0;      // __syncthreads and grid.sync()
  double launch = 0;       // kernel launches, per step
  double total = 0;
};

inline double cycles_ns(const DeviceSpec& d, double cycles) { return cycles / d.clock_ghz; }

// The compute type of fastrnn's kernels: float64 stays, everything else runs in float32.
inline int compute_elem(int elem_size) { return elem_size == 8 ? 8 : 4; }

// A plan of the older family (single block or cooperative grid), as make_plan configured it.
inline Prediction persistent_cost(const DeviceSpec& d, const Shape& s, const plan::Plan& p) {
  Prediction r;
  r.candidate = p.path == plan::kPersistentSingle ? kSingle : kGrid;
  const int ce = compute_elem(s.elem_size);
  const plan::Device& dev = d.dev;
  r.fits = true;
  r.plan = p;
  r.recorded_path = p.resident ? 0 : (p.path == plan::kPersistentSingle ? 1 : 2);
  const int64_t tiles = p.resident ? 1 : plan::ceil_div(s.B, p.rows_per_tile);
  r.tiles_per_step = int(tiles);
  const int hp = p.ks * p.kpt;  // padded state row
  const int64_t rows = plan::ceil_div(s.B, plan::kRowsPerPass) * plan::kRowsPerPass;
  const int warps = p.threads / 32;
  // Every thread does kpt FMAs per batch row; an SM retires fp32_fma_per_sm_clk per clock
  // (in float64 the rate of the data-centre parts is half of it).
  const double fma_rate = ce == 8 ? d.fp32_fma_per_sm_clk / 2.0 : d.fp32_fma_per_sm_clk;
  const double fma = double(rows) * p.threads * p.kpt / fma_rate;
  int log_ks = 0;
  while ((1 << log_ks) < p.ks) ++log_ks;
  // Each warp: one shuffle per batch row per butterfly round, issued by 4 schedulers.
  const double shuffles = double(rows) * log_ks * warps / 4.0;
  // Every warp reads the whole padded state row of every batch row (broadcast inside the
  // warp), plus the staging writes of the tiles that are not resident.
  double smem_bytes = double(rows) * warps * hp * ce;
  if (!p.resident) smem_bytes += double(rows) * hp * ce;
  const double lds = smem_bytes / d.smem_bytes_per_sm_clk;
  r.compute = cycles_ns(d, fma + shuffles);
  r.smem = cycles_ns(d, lds > fma ? lds - fma : 0.0);
  // Global memory on the critical path. The epilogue of each pass of kRowsPerPass rows
  // loads the input projection y_t (and lengths) after the dot product: one round trip per
  // pass, from HBM when y does not fit in L2. A staged tile reads h_{t-1} (the backward:
  // dy, carry and y) from L2 first: one round trip plus its bytes at this SM's L2 share.
  const double y_bytes = double(s.T) * s.B * s.H * ce;
  const double y_lat = y_bytes > d.l2_mib * 1024 * 1024 * 0.5 ? d.hbm_latency_ns : d.l2_latency_ns;
  const int64_t passes = rows / plan::kRowsPerPass;
  double latency = double(passes) * y_lat;
  if (!p.resident || s.backward) {
    const int streams = s.backward ? 3 : 1;
    const double staged = double(rows) * s.H * ce * streams;
    const double sm_l2_gbs = d.l2_gbs / dev.sm_count;  // GB/s == bytes/ns
    latency += double(tiles) * d.l2_latency_ns + staged / sm_l2_gbs;
  }
  r.latency = latency;
  // Barriers: resident forward: one __syncthreads per step; staged: two per tile; the grid
  // path adds one grid.sync() per step.
  const double sync = cycles_ns(d, d.syncthreads_cycles);
  r.barrier = p.resident ? sync : 2.0 * tiles * sync;
  if (p.path == plan::kPersistentGrid) r.barrier += d.grid_sync_ns;
  r.launch = d.launch_ns / double(s.T);  // one launch for all T steps
  r.total = r.compute + r.smem + r.latency + r.barrier + r.launch;
  return r;
}

// The busiest SM of a tiled plan (FMA or tensor-core tiles) per step. Packed input (sorted
// lengths, live_rows): only the first ceil(live / tile_rows) row tiles are busy, and the busiest
// block (the first) has min(tile_rows, live) live rows.
struct BusiestSm {
  double rows;     // live rows of the busiest block
  double sharing;  // blocks whose steps it runs one after another: blocks sharing it x waves
};
inline BusiestSm busiest_sm(const plan::Device& dev, const Shape& s, const plan::Plan& p) {
  const double live = live_rows(s);
  const int64_t live_row_tiles = plan::ceil_div(int64_t(std::ceil(live)), p.tile_rows);
  const int64_t busy = (live_row_tiles < p.row_tiles ? live_row_tiles : p.row_tiles) * p.col_tiles;
  const int64_t per_wave = int64_t(p.blocks_per_sm) * dev.sm_count;
  const int64_t waves = plan::ceil_div(busy, per_wave);
  const int64_t on_sm = plan::ceil_div(busy, int64_t(dev.sm_count));
  return {live < p.tile_rows ? live : double(p.tile_rows),
          double(waves) * double(on_sm < p.blocks_per_sm ? on_sm : p.blocks_per_sm)};
}

// What every plan of the tiled family predicts alike: it fits (make_plan built it for the
// device), records path 4 ("tiled") and tiles_per_step 1 (one launch covers a step).
inline Prediction tiled_prediction(int candidate, const plan::Plan& p) {
  Prediction r;
  r.candidate = candidate;
  r.fits = true;
  r.plan = p;
  r.recorded_path = 4;
  r.tiles_per_step = 1;
  return r;
}

// What both tiled cost functions share, from the step structure (tiled_body.cuh): staging the
// state rows from L2 when not resident (latency plus the busiest SM's share of L2 bandwidth),
// two block barriers plus a grid sync when not resident, the launch spread over the steps;
// then the total.
inline void tiled_step_rest(const DeviceSpec& d, const Shape& s, const plan::Plan& p,
                            const BusiestSm& sm, int state_bytes, Prediction* r) {
  if (!p.resident) {
    const double sm_l2_gbs = d.l2_gbs / d.dev.sm_count;  // GB/s == bytes/ns
    r->latency = d.l2_latency_ns + sm.sharing * sm.rows * s.H * state_bytes / sm_l2_gbs;
  }
  const double sync = cycles_ns(d, d.syncthreads_cycles);
  r->barrier = p.resident ? 2.0 * sync : 2.0 * sync + d.grid_sync_ns;
  r->launch = d.launch_ns / double(s.T);
  r->total = r->compute + r->smem + r->latency + r->barrier + r->launch;
}

// A plan of the tiled family (launch_plan.h make_tiled_plan, tiled_body.cuh).
// Per step, on the busiest SM (blocks sharing it x waves of blocks):
//   compute: every thread issues micro_r x micro_c FMAs per k of its warp's K share;
//   smem:    each lane loads micro_r state values and micro_c weights per k (one wavefront each:
//            odd row stride, broadcast among lanes of a row), the reduction reads 8 partials
//            per output, staging writes the state rows; only the part above the FMAs;
//   latency: grid only: the staged state rows from L2 (a round trip plus their bytes at the
//            SM's L2 share). The epilogue's inputs (y_t; dy_t, y_t) and the live-row count
//            are loaded before the previous step's barrier: off the critical path;
//   barrier: the partial-sum __syncthreads and the step's barrier (a __syncthreads when one
//            column tile covers H, else a staging __syncthreads plus grid.sync()).
// The backward runs T + 1 phases (the last writes dLoss/dh0): counted per step as T.
// Packed input (live_rows): a block whose rows have all finished skips its multiply and
// staging, and a live block stages and reduces only its live rows. Rows are sorted by length,
// so with L live rows (the mean over the steps) the first ceil(L / tile_rows) row tiles are
// busy, and the busiest block (the first: the longest rows) has min(tile_rows, L) live rows.
// Its lanes still run the whole micro tile over their K share (a dead row multiplies 0): the
// FMAs and their loads shrink only with fewer busy blocks per SM.
inline Prediction tiled_cost(const DeviceSpec& d, const Shape& s, const plan::Plan& p) {
  Prediction r = tiled_prediction(kTiled, p);
  const int ce = compute_elem(s.elem_size);
  const BusiestSm sm = busiest_sm(d.dev, s, p);
  const double rows = sm.rows, sharing = sm.sharing;
  const double fma_rate = ce == 8 ? d.fp32_fma_per_sm_clk / 2.0 : d.fp32_fma_per_sm_clk;
  const double fma = sharing * p.threads * p.micro_r * p.micro_c * p.k_chunk / fma_rate;
  // Shared-memory wavefronts (a 4-byte word per lane each; 8-byte types take two).
  const double words = ce / 4.0;
  double lds = sharing * plan::kWarps * (p.micro_r + p.micro_c) * p.k_chunk * words;
  lds += sharing * rows * p.tile_cols * plan::kWarps * ce / d.smem_bytes_per_sm_clk;
  if (!p.resident) lds += sharing * rows * s.H * ce / d.smem_bytes_per_sm_clk;
  r.compute = cycles_ns(d, fma);
  r.smem = cycles_ns(d, lds > fma ? lds - fma : 0.0);
  tiled_step_rest(d, s, p, sm, ce, &r);
  return r;
}

// A plan of the tiled family on tensor cores (launch_plan.h make_tiled_mma_plan, tiled_body.cuh
// with WT = a float16/bfloat16 model's type). Per step, on the busiest SM (as tiled_cost):
//   compute: the block's 16 x 16 fragments times K = 2 x H rounded up to 16 (the state's hi
//            and lo halves side by side) at mma_fma_per_sm_clk;
//   smem:    per warp and fragment K step (8 words), micro_r + micro_c fragment loads of 512
//            bytes and the fragments' stores (whole fragments); the fixed-order reduction of
//            the 8 warps' partial sums and the staging writes of the live rows; only the part
//            above the mma time;
//   latency, barrier, launch: as tiled_cost (the same step structure; state words of 4 bytes).
// Packed input (live_rows): as tiled_cost, a block whose rows have all finished skips its
// mmas and staging, a live block stages and reduces only its live rows; its mmas still run
// whole fragments (a dead row multiplies what its word holds and is ignored).
inline Prediction tiled_mma_cost(const DeviceSpec& d, const Shape& s, const plan::Plan& p) {
  Prediction r = tiled_prediction(kTiledMma, p);
  const BusiestSm sm = busiest_sm(d.dev, s, p);
  const double rows = sm.rows, sharing = sm.sharing;
  const double k2 = 2.0 * double(plan::mma_k_words(s.H));
  const double mma = sharing * double(p.tile_rows) * p.tile_cols * k2 / d.mma_fma_per_sm_clk;
  const double k_steps = double(p.k_chunk / 8);
  double bytes = double(plan::kWarps) * k_steps * (p.micro_r + p.micro_c) * 512.0;
  bytes += double(plan::kWarps) * p.tile_rows * p.tile_cols * 4.0;  // fragment stores
  bytes += double(plan::kWarps) * rows * p.tile_cols * 4.0;         // the reduction's reads
  if (!p.resident) bytes += rows * s.H * 4.0;                       // staging writes
  const double lds = sharing * bytes / d.smem_bytes_per_sm_clk;
  r.compute = cycles_ns(d, mma);
  r.smem = cycles_ns(d, lds > mma ? lds - mma : 0.0);
  tiled_step_rest(d, s, p, sm, /*state_bytes=*/4, &r);  // fp32 state words
  return r;
}

// A [B, H] x [H, H] GEMM of cuBLAS at per-step size: the math spread over the CTAs that
// the output has (64 x 64 tiles assumed), or W_hh streamed from L2, whichever is longer.
inline double small_gemm_ns(const DeviceSpec& d, int64_t B, int64_t H, bool tensor_cores,
                            int elem_bytes) {
  const double flops = 2.0 * B * H * H;
  const int64_t ctas = plan::ceil_div(B, 64) * plan::ceil_div(H, 64);
  const int sms = d.dev.sm_count;
  const double used = double(ctas < sms ? ctas : sms) / sms;
  const double peak_flops_ns = tensor_cores
      ? d.tensor_bf16_tflops * 1e3
      : 2.0 * d.fp32_fma_per_sm_clk * sms * d.clock_ghz;  // flops per ns
  const double math = flops / (peak_flops_ns * used * d.gemm_efficiency);
  const double weights = double(H) * H * elem_bytes / d.l2_gbs;
  return (math > weights ? math : weights) + d.l2_latency_ns;
}

// fastrnn's per-step fallback: y_t += h_{t-1} W_hh^T (cuBLAS, float32 compute) and one
// pointwise kernel per step (backward: the pointwise kernel then the GEMM).
inline Prediction predict_gemm(const DeviceSpec& d, const Shape& s) {
  Prediction r;
  r.candidate = kGemm;
  r.fits = true;
  r.recorded_path = 3;
  r.tiles_per_step = 1;
  const int ce = compute_elem(s.elem_size);
  r.compute = small_gemm_ns(d, s.B, s.H, false, ce);
  r.latency = d.hbm_latency_ns;  // the pointwise kernel's loads (y_t, h_prev / dy, y, carry)
  r.launch = 2.0 * d.launch_ns;
  r.total = r.compute + r.latency + r.launch;
  return r;
}

// cuDNN through PyTorch's RNN op. Which algorithm PyTorch asks for (aten cudnn/RNN.cpp
// get_algo): not packed and not float64, tanh/relu forward with H <= 384 or backward with
// H <= 256 -> CUDNN_RNN_ALGO_PERSIST_STATIC_SMALL_H; otherwise STANDARD (a GEMM and a
// pointwise kernel per step; bf16/fp16 GEMMs on tensor cores). cuDNN is closed source: the
// persistent kernel is modelled as all SMs at cudnn_persist_efficiency of the FP32 peak
// plus one grid barrier and one L2 round trip per step (estimate).
inline Prediction predict_cudnn(const DeviceSpec& d, const Shape& s) {
  Prediction r;
  r.candidate = kCudnn;
  r.fits = true;
  r.recorded_path = -1;
  r.tiles_per_step = 1;
  const bool small_h = !s.packed && s.elem_size != 8 && s.H <= (s.backward ? 256 : 384);
  if (small_h) {
    const int sms = d.dev.sm_count;
    const double peak = 2.0 * d.fp32_fma_per_sm_clk * sms * d.clock_ghz;
    r.compute = 2.0 * s.B * s.H * s.H / (peak * d.cudnn_persist_efficiency);
    r.latency = d.l2_latency_ns;
    r.barrier = d.grid_sync_ns;
    r.launch = d.launch_ns / double(s.T);
  } else {
    // Packed input: cuDNN's per-step GEMM covers the step's batch size (the live rows).
    const bool half = s.elem_size == 2;
    r.compute = small_gemm_ns(d, int64_t(std::ceil(live_rows(s))), s.H, half, s.elem_size);
    r.latency = d.hbm_latency_ns;
    r.launch = 2.0 * d.launch_ns;
  }
  r.total = r.compute + r.smem + r.latency + r.barrier + r.launch;
  return r;
}

// The predicted step of a plan make_plan configured (path single, grid or tiled; the tiled
// family on tensor cores when plan.mma).
inline Prediction plan_cost(const DeviceSpec& d, const Shape& s, const plan::Plan& p) {
  if (p.path != plan::kTiled) return persistent_cost(d, s, p);
  return p.mma ? tiled_mma_cost(d, s, p) : tiled_cost(d, s, p);
}

}  // namespace fastrnn::cost
