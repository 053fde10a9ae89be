// The one place for the CPU's parameters the CPU paths are chosen by: cache sizes read
// from the OS, costs micro-measured once per process at first use. Nothing here is tuned
// to a machine; the thresholds of rnn_cpu.cpp are derived from these numbers.
#pragma once

#include <cstdint>

#include "kernels.h"

namespace fastrnn::cpu {

// The kernels' ISA for this call: FASTRNN_CPU_ISA (read at every call) or the best the CPU
// supports; an unknown or unsupported request is an error naming the variable.
Isa current_isa();

struct Caches {
  int64_t l1d_bytes;   // per core
  int64_t l2_bytes;    // per core
  int64_t l3_bytes;    // shared (the whole L3 one core can reach)
  const char* source;  // "sysfs" | "sysconf" | "default" (conservative, when the OS says nothing)
};
// Read once: /sys/devices/system/cpu/cpu0/cache (Linux), else sysconf(_SC_LEVEL*_CACHE_SIZE).
const Caches& caches();

// One-time micro-measurements (the first call pays ~2 ms), best of a few short runs each
// with the calling thread's CPU clock where possible, so that a loaded machine inflates
// them little. Used only to choose paths, never in results.
struct Costs {
  double madd_per_ns;          // one core's multiply-adds per ns (fp32, the fma_loop probe)
  double pack_ns_per_element;  // packing a transposed weight (kernels.h pack)
  double step_call_ns;         // one stepwise step's library calls (addmm_ + tanh_) at tiny size
  double parallel_ns;          // one at::parallel_for over torch's threads with no work
  double barrier_ns;           // one SpinBarrier round for a team of torch's threads
  // at::mm time / packed_gemm time (batched_gemm.h) of a [256 x 512] x [512 x 512] product
  // on torch's threads, the weight pre-packed: > 1 when fastrnn's kernel is faster here.
  double own_gemm_speedup;
  // Bytes per ns one core's gemv kernel (kernels.h gemm_nt, one row) reads a weight twice the
  // size of its L2 at, i.e. from L3 or memory: the rate of a step whose weights do not fit.
  double stream_bytes_per_ns;
  // One core's multiply-adds per ns through the gemv path's dot-form kernel (kernels.h
  // gemm_nt, weights unpacked) on 16 rows with an L2-resident weight: its compute rate where
  // a step is bound by arithmetic, not by reading the weights (lower than the packed kernels').
  double gemv_madd_per_ns;
};
const Costs& costs(Isa isa);

// Bytes per ns one core's in-place BPTT carry (kernels.h backward_gemv_carry: `rows` rows of
// dz against W_hh read in place, unpacked) reads a weight twice the size of its L2 at. A
// tile covers only a few vectors of columns of each weight row, so the rows of W_hh are
// read in short pieces a row apart (the tiles narrow as rows grow: tile_vectors), which
// the hardware prefetchers follow less well than the contiguous weight rows of the
// forward's dot form (stream_bytes_per_ns) or packed panels. Measured at the first call
// for each (isa, min(rows, 16)) on the calling thread's CPU clock, cached for the process;
// from 16 rows on a step is bound by its multiply-adds (4 per weight byte) on any core.
double carry_stream_bytes_per_ns(Isa isa, int64_t rows);

// One time step of the fused rows kernels (kernels.h forward_rows, or backward_rows when
// `backward`), fp32, on `rows` rows of a recurrence whose packed M is [K, H], on the calling
// thread: measured at the first call for each (isa, backward, rows, K, H) on scratch data,
// best of 3 short runs on the thread's CPU clock, then cached for the process. At small
// sizes a step is not proportional to its rows (FMA latency with few accumulators, the
// epilogue, per-tile overheads), so rnn_cpu.cpp measures what a batch split saves.
double rows_step_ns(Isa isa, bool backward, int64_t rows, int64_t K, int64_t H);

// The stepwise path (stepwise.h: the library's GEMM and pointwise calls) on B rows, input
// size I (the forward's projection; the backward passes 0), H units, fp32: a T-step call
// costs fixed_ns (its calls' fixed costs and allocations) + T * step_ns (a step, with its
// share of the projection's multiply-adds). From forward_stepwise / backward_stepwise calls
// of 1 and 5 steps on zeroed scratch, best of 3 after a warm-up, on the calling thread's CPU
// clock with one torch thread, else wall time (the library may split its GEMMs); cached per
// (backward, B, I, H, threads), i.e. every new batch size pays one timing (~1 ms at small
// sizes; rnn_cpu.cpp caps the sizes it times). At a step's small size the library's GEMMs
// run far below the rate of the large product own_gemm_speedup compares, and each call has
// its fixed cost, so rnn_cpu.cpp times the stepwise path at the call's size before
// choosing it.
struct StepwiseCost {
  double fixed_ns, step_ns;
};
StepwiseCost stepwise_cost(bool backward, int64_t B, int64_t I, int64_t H);

// True when fastrnn's weight-gradient kernel (batched_gemm.h own_weight_grads) beats the
// library's GEMMs for BPTT's weight gradients over K = T*B rows, I inputs, H units, on
// torch's threads. Where that is at most 2^25 multiply-adds it is timed at that size (K
// rounded up to a power of two) once per (isa, K bucket, I, H, threads) and cached: the two
// sides' rates cross over with the shape (Zen 3, 2 threads: fastrnn's 70 multiply-adds per
// ns against the library's 48 at K = 1024, I = H = 64; 65 against 81 at I = H = 256).
// Larger problems take one timing at 1024 rows, I = H = 256 (per isa and threads, at the
// first such call: ~10 ms). The timing uses float32 and one row per step (B = 1), so it
// approximates a call's shape class, not its exact GEMMs.
bool own_weight_grads_faster(Isa isa, int64_t K, int64_t I, int64_t H);

// The FMA peak of `threads` threads running fma_loop for about `seconds` of wall time:
// wall = all FLOPs / wall time; cpu = sum over threads of FLOPs / that thread's CPU time
// (what the cores reach when the OS runs the threads; robust to other load).
struct FmaPeak {
  double wall_gflops, cpu_gflops;
};
FmaPeak fma_peak(Isa isa, double seconds, int64_t threads);

}  // namespace fastrnn::cpu
