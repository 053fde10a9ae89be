// TORCH_LIBRARY_IMPL(fastrnn, CPU): argument handling, packing, threads; the per-step
// math runs in the micro-kernels of kernels.h (math in ../rnn.h).
//
// Forward:  one fused step y_t = act(b + x_t W_ih^T + h_prev W_hh^T) in SIMD register
//           tiles; when the weights exceed L2, x W_ih^T + b first as one GEMM (project_first).
// Backward: the fused recurrence fills dz [T, B, H] and d_hx, then batched GEMMs give
//           dx, dW_ih, dW_hh and the bias gradient.
// Threads (at::get_num_threads() of them: torch's OpenMP team; a build without OpenMP
// runs serially) split the batch once per call (rows are independent), so the time
// loop has no synchronisation at all. With fewer rows than threads (batch 1 inference),
// an OpenMP build splits the columns instead: each thread owns a range of weight panels
// for all rows and the team meets at a spin barrier once per step (see run_columns).
#include "../rnn.h"
#include "batched_gemm.h"
#include "kernels.h"
#include "last_plan.h"
#include "machine.h"
#include "spin_barrier.h"
#include "stepwise.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#include <ATen/Parallel.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstdlib>
#include <type_traits>
#include <initializer_list>
#include <utility>
#include <vector>

namespace fastrnn {
namespace {

// One block of rows of M (kernels.h): w [N, K] (transpose) or [K, N], contiguous.
template <typename T>
struct PackPart {
  const T* w;
  bool transpose;
  int64_t rows;  // K
};

// The parts of M from {(w, transpose)}, in order; raw pointers taken here, outside any
// parallel region (nothing inside one may throw).
template <typename T>
std::vector<PackPart<T>> pack_parts(std::initializer_list<std::pair<const at::Tensor*, bool>> ws,
                                    int64_t* K, int64_t* N) {
  std::vector<PackPart<T>> parts;
  *K = 0;
  for (const auto& [w, transpose] : ws) {
    parts.push_back({w->template data_ptr<T>(), transpose, transpose ? w->size(1) : w->size(0)});
    *K += parts.back().rows;
    *N = transpose ? w->size(0) : w->size(1);
  }
  return parts;
}

// Packs panels [p0, p1) of M [K, N] into packed (cpu::packed_size elements); threads may
// fill disjoint ranges at once.
template <typename T>
void fill_panels(cpu::Isa isa, const std::vector<PackPart<T>>& parts, int64_t K, int64_t N,
                 T* packed, int64_t p0, int64_t p1) {
  int64_t k0 = 0;
  for (const PackPart<T>& part : parts) {
    cpu::pack(isa, part.w, part.transpose, part.rows, N, K, k0, packed, p0, p1);
    k0 += part.rows;
  }
}

#ifdef _OPENMP
// The column split: body(c0, c1, p0, p1, sync) runs on every thread of an OpenMP team,
// [c0, c1) its own columns (panels [p0, p1) of P columns), sync() the team's barrier,
// which every thread must reach equally often. The panels are divided by the team size
// the region actually got (nested region, OMP limits), so a smaller team still computes
// every column and the barrier waits only for threads that exist. threads: the team to ask
// for (at most one per panel).
template <typename Body>
void run_columns(int64_t H, int64_t P, int64_t threads, const Body& body) {
  const int64_t panels = (H + P - 1) / P;
  const int want = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, panels)));
  cpu::SpinBarrier barrier;
#pragma omp parallel num_threads(want)
  {
    const int64_t team = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t p0 = id * panels / team, p1 = (id + 1) * panels / team;
    bool sense = false;
    body(std::min(p0 * P, H), std::min(p1 * P, H), p0, p1,
         [&] { barrier.wait(static_cast<int>(team), sense); });
  }
}
#else
// Without OpenMP one thread owns every column and never waits.
template <typename Body>
void run_columns(int64_t H, int64_t P, int64_t, const Body& body) {
  body(int64_t(0), H, int64_t(0), (H + P - 1) / P, [] {});
}
#endif

// The number of batch blocks (threads) for_batch_blocks splits a recurrence of T steps, B
// rows, packed M [K, H] into (the forward's K = I + H or H, the backward's H). n threads
// cost one parallel region (machine.h) and save T x (a step of B rows - a step of B/n
// rows). A step at least as long as a region runs at the kernels' throughput, so the
// split saves about half of it; below that the two step times are measured (rows_step_ns):
// with few rows per thread a step is bound by FMA latency and fixed costs, not by its rows.
int64_t batch_chunks(cpu::Isa isa, bool backward, int64_t T, int64_t B, int64_t K, int64_t H) {
  const int64_t n = std::min<int64_t>(at::get_num_threads(), B);
  if (n <= 1) return 1;
  const cpu::Costs& c = cpu::costs(isa);
  const double step_at_probe_rate = double(B * K * H) / c.madd_per_ns;  // ns, one thread
  if (double(T) * step_at_probe_rate < c.parallel_ns) return 1;  // the whole recurrence
  if (step_at_probe_rate >= c.parallel_ns) {  // throughput-bound: the split saves about half
    return double(T) * step_at_probe_rate / 2 > c.parallel_ns ? n : 1;
  }
  const double saved = cpu::rows_step_ns(isa, backward, B, K, H) -
                       cpu::rows_step_ns(isa, backward, (B + n - 1) / n, K, H);
  return double(T) * saved > c.parallel_ns ? n : 1;
}

// True when the lengths (clamped to [0, T], what the kernels see) are non-increasing, as a
// PackedSequence's sorted batch is: the rows active at a step are then a prefix of every
// row range, and the kernels compute only that prefix (kernels.h active_prefix).
bool lengths_nonincreasing(const at::Tensor& lengths, int64_t T) {
  if (!lengths.defined()) return false;
  const int64_t* L = lengths.data_ptr<int64_t>();
  const auto clamp = [T](int64_t v) { return std::min(std::max<int64_t>(v, 0), T); };
  for (int64_t b = 1; b < lengths.numel(); ++b) {
    if (clamp(L[b]) > clamp(L[b - 1])) return false;
  }
  return true;
}

// Boundaries [chunks + 1] of contiguous row blocks, one per thread, with equal work: every
// row weighs the same, except with an active prefix, where a row weighs its active steps
// (+1 for the copies of its inactive ones), so the thread with the short rows takes more.
std::vector<int64_t> row_bounds(int64_t chunks, int64_t B, const at::Tensor& lengths, int64_t T,
                                bool prefix) {
  std::vector<int64_t> bounds(chunks + 1, B);
  for (int64_t c = 0; c < chunks; ++c) bounds[c] = c * B / chunks;
  if (!prefix || chunks <= 1) return bounds;
  const int64_t* L = lengths.data_ptr<int64_t>();
  const auto weight = [&](int64_t b) { return std::min(std::max<int64_t>(L[b], 0), T) + 1; };
  int64_t total = 0;
  for (int64_t b = 0; b < B; ++b) total += weight(b);
  int64_t acc = 0, c = 1;
  for (int64_t b = 0; b < B && c < chunks; ++b) {
    acc += weight(b);
    while (c < chunks && acc * chunks >= c * total) bounds[c++] = b + 1;
  }
  return bounds;
}

// Calls fn(bounds[c], bounds[c + 1]) for every block c, one per thread, once per sequence.
template <typename Fn>
void for_batch_blocks(const std::vector<int64_t>& bounds, const Fn& fn) {
  const int64_t chunks = static_cast<int64_t>(bounds.size()) - 1;
  if (chunks <= 1) {
    fn(bounds[0], bounds[1]);
    return;
  }
  // torch's own OpenMP threads: they are the ones MKL just used, still spinning, so they
  // start at once and no second set of threads competes with them for the cores. In a
  // build without OpenMP at::parallel_for (an inline template) is a serial loop.
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(bounds[c], bounds[c + 1]);
  });
}

// True when the packed [W_ih^T; W_hh^T] would take more than half of a core's L2 (the
// other half holds the rows' activations and the panel being streamed): then every thread
// would stream it from L3 at every step, so the input projection runs first as one GEMM
// over all steps (its weights read once) and the steps keep only W_hh^T.
// FASTRNN_CPU_PATH=project_first / fused_inline force it on / off.
bool project_first(int64_t I, int64_t H, int64_t elem_size) {
  const char* forced = std::getenv("FASTRNN_CPU_PATH");
  if (forced != nullptr && std::string_view(forced) == "project_first") return true;
  if (forced != nullptr && std::string_view(forced) == "fused_inline") return false;
  return (I + H) * H * elem_size > cpu::caches().l2_bytes / 2;
}

enum class Path { Stepwise, Rows, Columns, Gemv };

// The path for a recurrence of T steps, B rows, input size I (the forward's; 0 for the
// backward), K = rows of M, H columns:
//   Stepwise (stepwise.h): a sequence too short to pay for packing the weights (the time
//     saved per fused step times T below the packing time, both from machine.h, and where a
//     step is small, both steps timed at the call's size), or weights
//     too large for the threads' L2s while the batch cannot be split by rows (each core
//     would stream its weights at every step, where the BLAS splits each GEMM).
//   Gemv: threads split the columns (each reads only its 1/n of the weights, in the layout
//     the caller holds them: no packing pass) and meet at a barrier every step; the forward's
//     input projection runs first in the same region, each thread on its own columns. Taken
//     when a split pays (cost model below: its step time plus a barrier against one thread's,
//     all terms measured in machine.h) and there are fewer rows than threads, and where the
//     weights exceed half a core's L2 (read from beyond it at every step) when the model
//     finds it faster than the rows split; *gemv_team says on how many threads (1 where a
//     split does not pay).
//   Columns: Gemv on packed panels (each thread packs its share; read from its L2 where the
//     share fits half of it, else streamed). The forward's gemv reads contiguous weight rows
//     (its dot form) and needs no packing pass, so only the backward, whose in-place carry
//     reads each weight row in short pieces (measured: carry_stream_bytes_per_ns), takes it,
//     where the model finds the packing pass cheaper than the slower reads.
//   Rows: otherwise (every thread its own rows, no synchronisation).
Path choose_path(cpu::Isa isa, bool backward, int64_t T, int64_t B, int64_t I, int64_t K,
                 int64_t H, int64_t elem_size, int64_t P, int64_t* gemv_team) {
  // FASTRNN_CPU_PATH=auto|fused|fused_inline|project_first|columns|gemv|stepwise (read at
  // every call) forces a path, so that the tests reach each at any size; `columns` needs an
  // OpenMP build (else it is `fused`); fused_inline / project_first are `fused` with the
  // input projection inside the step / first as one GEMM; `gemv` without OpenMP runs on one
  // thread.
  const int64_t threads = at::get_num_threads();
#ifdef _OPENMP
  const bool have_openmp = true;
#else
  const bool have_openmp = false;
#endif
  const int64_t panels = (H + P - 1) / P;
  const bool columns_possible = have_openmp && threads > 1;
  const char* forced = std::getenv("FASTRNN_CPU_PATH");
  if (forced != nullptr && *forced != '\0') {
    const std::string_view path(forced);
    if (path == "fused" || path == "fused_inline" || path == "project_first") return Path::Rows;
    if (path == "stepwise") return Path::Stepwise;
    // Forced, it runs even on one thread (a team of one never waits at its barrier).
    if (path == "columns") return have_openmp ? Path::Columns : Path::Rows;
    if (path == "gemv") {  // on every thread it can use, whatever the model says
      *gemv_team = have_openmp ? std::min(threads, panels) : 1;
      return Path::Gemv;
    }
    TORCH_CHECK(path == "auto", "fastrnn: FASTRNN_CPU_PATH='", path,
                "' is unknown; expected one of "
                "auto|fused|fused_inline|project_first|columns|gemv|stepwise");
  }
  const cpu::Costs& cost = cpu::costs(isa);
  const int64_t l2 = cpu::caches().l2_bytes;
  const int64_t packed_elements = K * H;
  const bool rows_for_every_thread = B >= threads;
  // A step's time, ns, on a team of n each reading share_bytes of the weights: the larger of
  // that read (free while it sits in half a core's L2; else at the kernel's measured
  // streaming rate: the weights come from L3 or memory at every step) and its 1/n of the
  // multiply-adds at the kernel's rate. The gemv path's kernels read the weights unpacked,
  // with their own rates: arithmetic at the dot form's (with many rows slower than the
  // packed kernels'; the backward's in-place carry is no faster there), reads at the dot
  // form's contiguous rate (forward) or the in-place carry's (backward, measured for B rows
  // at the first backward whose read counts).
  const double bytes = double(packed_elements * elem_size);
  const double madds = double(B * packed_elements);
  const auto packed_step_ns = [&](double share_bytes, int64_t n) {
    const double read = share_bytes <= double(l2) / 2 ? 0.0 : share_bytes / cost.stream_bytes_per_ns;
    return std::max(read, madds / (double(n) * cost.madd_per_ns));
  };
  const auto gemv_step_ns = [&](double share_bytes, int64_t n) {
    const double compute = madds / (double(n) * cost.gemv_madd_per_ns);
    if (share_bytes <= double(l2) / 2) return compute;
    const double rate =
        backward ? cpu::carry_stream_bytes_per_ns(isa, B) : cost.stream_bytes_per_ns;
    return std::max(share_bytes / rate, compute);
  };
  const int64_t sharers = std::min(threads, panels);
  const bool can_split = columns_possible && panels >= 2;
  const double gemv_one = double(T) * gemv_step_ns(bytes, 1);
  const double gemv_split = can_split ? double(T) * (gemv_step_ns(bytes / double(sharers), sharers) +
                                                     cost.barrier_ns)
                                      : 1e300;
  const bool split_pays = gemv_split < gemv_one;
  *gemv_team = split_pays ? sharers : 1;
  const double pack_ns = double(packed_elements) * cost.pack_ns_per_element;
  // The backward's same split on packed panels: each thread packs its share, then streams it
  // (the forward's gemv reads whole weight rows and has nothing to gain from packing).
  const double columns = backward && can_split
                             ? pack_ns / double(sharers) +
                                   double(T) * (packed_step_ns(bytes / double(sharers), sharers) +
                                                cost.barrier_ns)
                             : 1e300;
  // Fewer rows than threads: the split where it pays (the rows split would idle threads).
  if (split_pays && !rows_for_every_thread) {
    return backward && columns < gemv_split ? Path::Columns : Path::Gemv;
  }
  // Weights beyond half a core's L2: against the rows split, whose every thread reads all
  // of them at every step after a packing pass. On one thread (or a split that does not
  // pay) only the packing pass is between them, so the gemv path takes those cases.
  if (bytes > double(l2) / 2) {
    const double rows_ns = pack_ns + double(T) * packed_step_ns(bytes, std::min(threads, B));
    const double gemv = std::min(gemv_one, gemv_split);
    if (backward && columns < std::min(gemv, rows_ns)) return Path::Columns;
    if (gemv < rows_ns) return Path::Gemv;
  }
  // A fused step saves the stepwise step's library calls and, where fastrnn's packed GEMM
  // measured faster than the library's (own_gemm_speedup > 1), that fraction of the step's
  // multiply-adds (B K H of them on `threads` cores).
  const double step_ns = double(B * packed_elements) / (cost.madd_per_ns * double(threads));
  const double saved_per_step =
      cost.step_call_ns + std::max(0.0, cost.own_gemm_speedup - 1.0) * step_ns;
  // (Fewer rows than threads with packed weights beyond one core's L2 goes stepwise below,
  // whatever the fused step's time: nothing to time then.)
  const bool rows_possible = rows_for_every_thread || packed_elements * elem_size <= l2;
  if (double(T) * saved_per_step < pack_ns && rows_possible) {
    // That estimate gives the library its large-GEMM rate and one fixed cost per step; at a
    // step's small size its GEMMs run far slower (Zen 3, one thread: [8 x 64] x [64 x 64]
    // 6.1 us a stepwise step against 1.9 us fused, so T = 1 ran 22 us stepwise against 12
    // fused). Where a step, input projection included, is cheap to time (its multiply-adds
    // and a step's input rows capped, so that the timing's scratch and time stay small),
    // both paths are timed at this size (machine.h, once per size; fp32 timings serve
    // fp64 calls too) and the whole calls compared: the packing pass (and a project-first
    // forward's projection) plus T fused steps split as batch_chunks would split them,
    // against a stepwise call of T steps. Larger steps keep the estimate.
    constexpr int64_t kTimedStepMadds = int64_t(1) << 22, kTimedStepInputs = int64_t(1) << 18;
    const int64_t in = backward ? 0 : I;
    if (B * (in + H) * H > kTimedStepMadds || B * (in + H) > kTimedStepInputs) {
      return Path::Stepwise;
    }
    const int64_t n = batch_chunks(isa, backward, T, B, K, H);
    const double projection_ns =  // one GEMM on torch's threads (batched_gemm.h)
        !backward && K == H ? double(T * B * I * H) / (cost.madd_per_ns * double(threads)) : 0.0;
    const double fused_ns = pack_ns + projection_ns + (n > 1 ? cost.parallel_ns : 0.0) +
                            double(T) * cpu::rows_step_ns(isa, backward, (B + n - 1) / n, K, H);
    const cpu::StepwiseCost stepwise = cpu::stepwise_cost(backward, B, in, H);
    if (stepwise.fixed_ns + double(T) * stepwise.step_ns < fused_ns) return Path::Stepwise;
  }
  if (rows_for_every_thread) return Path::Rows;
  // Fewer rows than threads and a split that does not pay: one thread, whose packed
  // weights must fit its L2 (else the library's GEMM, split by the BLAS, does better).
  if (packed_elements * elem_size > l2) return Path::Stepwise;
  return Path::Rows;
}

// Notes the path a call takes for fastrnn.backends.last_cpu_plan() (last_plan.h).
// chunks: batch blocks for Rows, the team for Gemv; Columns: the team run_columns asks for,
// Stepwise: torch's team.
void record_path(const char* op, Path path, cpu::Isa isa, int64_t chunks, int64_t H, int64_t P,
                 bool pre, bool prefix) {
  cpu::LastPlan plan;
  plan.active_rows = prefix && path != Path::Stepwise;
  plan.op = op;
  plan.isa = cpu::isa_name(isa);
  plan.project_first = pre && path != Path::Stepwise;
  switch (path) {
    case Path::Rows: plan.path = "rows"; plan.threads = chunks; break;
    case Path::Columns:
      plan.path = "columns";
      plan.threads = std::min<int64_t>(at::get_num_threads(), (H + P - 1) / P);
      break;
    case Path::Gemv: plan.path = "gemv"; plan.threads = chunks; break;
    case Path::Stepwise: plan.path = "stepwise"; plan.threads = at::get_num_threads(); break;
  }
  cpu::record_plan(plan);
}

// Rows of a per pass of the dot-form projection (kernels.h gemm_nt): a block of a that
// takes half of the L2, while the thread's weight rows stream past it.
int64_t nt_row_block(int64_t K, int64_t elem_size) {
  return std::max<int64_t>(8, cpu::caches().l2_bytes / 2 / std::max<int64_t>(1, K * elem_size));
}

// The kernels' forward arguments common to every fused path (the weights, packed panels `m`
// or W_hh in place, are the caller's): x [T, B, I], y [T, B, H] (holding x W_ih^T + b when
// `pre`: the steps then read no input), lengths, direction, activation.
template <typename Scalar>
cpu::ForwardArgs<Scalar> forward_args(const at::Tensor& x, const at::Tensor& h0,
                                      const at::Tensor& bias, at::Tensor& y,
                                      const at::Tensor& lengths, bool prefix, bool reverse,
                                      Activation act, bool pre) {
  cpu::ForwardArgs<Scalar> a{};
  a.T_ = y.size(0);
  a.B = y.size(1);
  a.I = pre ? 0 : x.size(2);
  a.H = y.size(2);
  a.x = x.data_ptr<Scalar>();
  a.h0 = h0.data_ptr<Scalar>();
  a.bias = bias.defined() ? bias.data_ptr<Scalar>() : nullptr;
  a.y_holds_pre = pre;
  a.y = y.data_ptr<Scalar>();
  a.lengths = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  a.active_prefix = prefix;
  a.reverse = reverse;
  a.act = act == Activation::Tanh ? cpu::Act::Tanh : cpu::Act::Relu;
  return a;
}

// The gemv path's forward (choose_path): each thread owns columns [c0, c1) of y, computes
// their input projection y[:, :, c0:c1) = x W_ih[c0:c1]^T + b for every step first, then
// the steps on the same columns with W_hh[c0:c1] read in place; step s reads all columns of
// y_{s-1}, so the team meets once per step (as run_columns explains).
template <typename Scalar>
void forward_gemv(cpu::Isa isa, const at::Tensor& x, const at::Tensor& w_ih,
                  const at::Tensor& w_hh, const at::Tensor& bias, const at::Tensor& h0,
                  at::Tensor& y, const at::Tensor& lengths, bool prefix, bool reverse,
                  Activation act, int64_t P, int64_t team) {
  const int64_t T = y.size(0), B = y.size(1), I = x.size(2), H = y.size(2);
  // The steps see only W_hh (read in place); y holds each thread's projection first.
  cpu::ForwardArgs<Scalar> a =
      forward_args<Scalar>(x, h0, bias, y, lengths, prefix, reverse, act, /*pre=*/true);
  a.w_hh = w_hh.data_ptr<Scalar>();
  const Scalar* wih = w_ih.data_ptr<Scalar>();  // [H, I]
  const int64_t row_block = nt_row_block(I, sizeof(Scalar));
  run_columns(H, P, team, [&](int64_t c0, int64_t c1, int64_t, int64_t, const auto& sync) {
    // A thread without columns still meets the team at every barrier (a smaller team than
    // panels never leaves one without, but a return here would deadlock the others).
    const bool work = c1 > c0;
    if (work) {
      cpu::gemm_nt(isa, a.x, I, I, wih + c0 * I, I, a.bias ? a.bias + c0 : nullptr, a.y + c0, H,
                   c1 - c0, 0, T * B, row_block);
    }
    for (int64_t s = 0; s < T; ++s) {
      if (work) cpu::forward_gemv_step(isa, a, s, 0, B, c0, c1);
      if (s + 1 < T) sync();
    }
  });
}

template <typename Scalar>
void forward_recurrence(cpu::Isa isa, const at::Tensor& x, const at::Tensor& w_ih,
                        const at::Tensor& w_hh, const at::Tensor& bias, const at::Tensor& h0,
                        at::Tensor& y, const at::Tensor& lengths, bool reverse, Activation act) {
  const int64_t T = y.size(0), B = y.size(1), I = x.size(2), H = y.size(2);
  const bool pre = project_first(I, H, sizeof(Scalar));
  const int64_t P = cpu::panel_cols(isa, std::is_same_v<Scalar, double>);
  int64_t team = 1;
  const Path path =
      choose_path(isa, /*backward=*/false, T, B, I, pre ? H : I + H, H, sizeof(Scalar), P, &team);
  // Batch blocks of the rows path (measured step times: only worth measuring for it).
  const int64_t chunks =
      path == Path::Rows ? batch_chunks(isa, /*backward=*/false, T, B, (pre ? 0 : I) + H, H) : 1;
  const bool prefix = lengths_nonincreasing(lengths, T);
  record_path("forward", path, isa, path == Path::Gemv ? team : chunks, H, P,
              pre || path == Path::Gemv, prefix);
  if (path == Path::Stepwise) {
    cpu::forward_stepwise(x, w_ih, w_hh, bias, h0, y, lengths, reverse, act);
    return;
  }
  if (path == Path::Gemv) {
    forward_gemv<Scalar>(isa, x, w_ih, w_hh, bias, h0, y, lengths, prefix, reverse, act, P, team);
    return;
  }
  const bool own = pre && cpu::prefer_own_gemm(isa, T * B, I, H);
  cpu::note_own_gemm(own);
  if (own && prefix) {
    // Only the active rows' projections: step t's rows [0, n_t) of the sorted batch.
    const at::Tensor m_ih = cpu::pack_for_gemm(isa, w_ih, /*transpose=*/true);
    const at::Tensor x2d = x.view({T * B, I});  // [T*B, I]
    at::Tensor y2d = y.view({T * B, H});        // [T*B, H]
    const int64_t* L = lengths.data_ptr<int64_t>();
    at::parallel_for(0, T, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        int64_t n = 0;
        while (n < B && t < L[n]) ++n;
        if (n == 0) continue;
        at::Tensor out = y2d.narrow(0, t * B, n);
        cpu::packed_gemm(isa, x2d.narrow(0, t * B, n), m_ih, H, bias, out);
      }
    });
  } else if (own) {
    at::Tensor y2d = y.view({T * B, H});  // [T*B, H]
    cpu::own_gemm(isa, x.view({T * B, I}), w_ih, /*transpose=*/true, bias, y2d);
  } else if (pre) {
    at::Tensor y2d = y.view({T * B, H});  // [T*B, H]
    if (bias.defined()) {
      at::addmm_out(y2d, bias, x.view({T * B, I}), w_ih.t());
    } else {
      at::mm_out(y2d, x.view({T * B, I}), w_ih.t());
    }
  }
  int64_t K = 0, N = 0;
  const auto parts = pre ? pack_parts<Scalar>({{&w_hh, true}}, &K, &N)                 // W_hh^T
                         : pack_parts<Scalar>({{&w_ih, true}, {&w_hh, true}}, &K, &N);  // [W_ih^T; W_hh^T]
  at::Tensor m = new_buffer({cpu::packed_size(isa, K, N, std::is_same_v<Scalar, double>)},
                            x);  // [ceil(H/P) * K * P]
  cpu::ForwardArgs<Scalar> a = forward_args<Scalar>(x, h0, bias, y, lengths, prefix, reverse, act, pre);
  a.m = m.data_ptr<Scalar>();
  Scalar* packed = m.data_ptr<Scalar>();
#ifdef _OPENMP
  if (path == Path::Columns) {
    // Step s writes y_s [all rows, own columns] and reads y_{s-1} in every column, so one
    // barrier per step orders it: after it, every column of y_s is written, and nobody
    // writes y_s again. A thread uses only the panels it packed itself, so packing needs
    // no barrier of its own. (Fresh memory is placed near the core that packs it first; a
    // buffer reused from the block cache stays where an earlier call placed it.)
    run_columns(H, P, at::get_num_threads(), [&](int64_t c0, int64_t c1, int64_t p0, int64_t p1,
                                                 const auto& sync) {
      fill_panels<Scalar>(isa, parts, K, N, packed, p0, p1);
      for (int64_t s = 0; s < T; ++s) {
        cpu::forward_step(isa, a, s, 0, B, c0, c1);
        if (s + 1 < T) sync();
      }
    });
    return;
  }
#endif
  fill_panels<Scalar>(isa, parts, K, N, packed, 0, m.numel() / (K * P));
  for_batch_blocks(row_bounds(chunks, B, lengths, T, prefix),
                   [&](int64_t b0, int64_t b1) { cpu::forward_rows(isa, a, b0, b1); });
}

template <typename T>
void backward_recurrence(cpu::Isa isa, const at::Tensor& w_hh, const at::Tensor& dy,
                         const at::Tensor& y, at::Tensor& dz, at::Tensor& carry,
                         const at::Tensor& lengths, bool reverse, Activation act) {
  const int64_t H = y.size(2);
  const int64_t P = cpu::panel_cols(isa, std::is_same_v<T, double>);
  int64_t team = 1;
  const Path path =
      choose_path(isa, /*backward=*/true, y.size(0), y.size(1), 0, H, H, sizeof(T), P, &team);
  const int64_t chunks =
      path == Path::Rows ? batch_chunks(isa, /*backward=*/true, y.size(0), y.size(1), H, H) : 1;
  const bool prefix = lengths_nonincreasing(lengths, y.size(0));
  record_path("backward", path, isa, path == Path::Gemv ? team : chunks, H, P, false, prefix);
  if (path == Path::Stepwise) {
    cpu::backward_stepwise(w_hh, dy, y, dz, carry, lengths, reverse, act);
    return;
  }
  int64_t K = 0, N = 0;
  const auto parts = pack_parts<T>({{&w_hh, false}}, &K, &N);  // W_hh
  // The gemv path reads W_hh in place; the others pack it.
  const int64_t packed = cpu::packed_size(isa, K, N, std::is_same_v<T, double>);
  at::Tensor m = new_buffer({path == Path::Gemv ? 0 : packed}, y);  // [ceil(H/P) * H * P]
  at::Tensor scratch = new_buffer(carry.sizes(), carry);           // [B, H]
  cpu::BackwardArgs<T> a{};
  a.T_ = y.size(0);
  a.B = y.size(1);
  a.H = H;
  a.m = m.data_ptr<T>();
  a.w_hh = w_hh.data_ptr<T>();
  a.dy = dy.data_ptr<T>();
  a.y = y.data_ptr<T>();
  a.dz = dz.data_ptr<T>();
  a.carry = carry.data_ptr<T>();
  a.scratch = scratch.data_ptr<T>();
  a.lengths = lengths.defined() ? lengths.data_ptr<int64_t>() : nullptr;
  a.active_prefix = prefix;
  a.reverse = reverse;
  a.act = act == Activation::Tanh ? cpu::Act::Tanh : cpu::Act::Relu;
  // Columns and Gemv: carry (zeroed by the caller) and scratch are private per column:
  // backward_dz reads and writes only its own columns of them, and so does backward_carry.
  // The one shared thing is dz_t, written in own columns by backward_dz and read in all
  // columns by backward_carry, hence the barrier between the two. None is needed after
  // backward_carry: the next step's backward_dz writes dz of another time step (dz is
  // [T, B, H]) and only own columns of carry/scratch, so a thread running ahead cannot
  // touch what a slower one still reads, and it cannot pass the next barrier alone.
  if (path == Path::Gemv) {
    run_columns(H, P, team, [&](int64_t c0, int64_t c1, int64_t, int64_t, const auto& sync) {
      for (int64_t s = 0; s < a.T_; ++s) {
        cpu::backward_dz(isa, a, s, 0, a.B, c0, c1);
        sync();
        cpu::backward_gemv_carry(isa, a, s, 0, a.B, c0, c1);
      }
    });
    return;
  }
#ifdef _OPENMP
  if (path == Path::Columns) {
    run_columns(H, P, at::get_num_threads(), [&](int64_t c0, int64_t c1, int64_t p0, int64_t p1,
                                                 const auto& sync) {
      fill_panels<T>(isa, parts, K, N, m.data_ptr<T>(), p0, p1);
      for (int64_t s = 0; s < a.T_; ++s) {
        cpu::backward_dz(isa, a, s, 0, a.B, c0, c1);
        sync();
        cpu::backward_carry(isa, a, s, 0, a.B, c0, c1);
      }
    });
    return;
  }
#endif
  fill_panels<T>(isa, parts, K, N, m.data_ptr<T>(), 0, m.numel() / (K * P));
  for_batch_blocks(row_bounds(chunks, a.B, lengths, a.T_, prefix),
                   [&](int64_t b0, int64_t b1) { cpu::backward_rows(isa, a, b0, b1); });
}

// The ATen calls inside the ops compute in the ops' compute type: a call made while CPU
// autocast is on would otherwise still see the autocast key and run its matmuls (at::mm,
// at::addmm) in bfloat16 (the stepwise backward's at::mm did).
struct NoAutocast {
  c10::impl::ExcludeDispatchKeyGuard guard{c10::autocast_dispatch_keyset};
};

at::Tensor contiguous_lengths(const std::optional<at::Tensor>& lengths) {
  return lengths.has_value() ? lengths->contiguous() : at::Tensor();
}

at::Tensor rnn_forward_cpu(const at::Tensor& input, const at::Tensor& hx,
                           const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                           const std::optional<at::Tensor>& bias_ih,
                           const std::optional<at::Tensor>& bias_hh,
                           const std::optional<at::Tensor>& lengths, bool reverse,
                           std::string_view nonlinearity) {
  check_forward_args(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths);
  const Activation act = parse_activation(nonlinearity);
  const NoAutocast no_autocast;
  const cpu::Isa isa = cpu::current_isa();
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor x = as_compute(input, ct);        // [T, B, I]
  const at::Tensor h0 = as_compute(hx, ct);          // [B, H]
  const at::Tensor w_ih = as_compute(weight_ih, ct); // [H, I]
  const at::Tensor w_hh = as_compute(weight_hh, ct); // [H, H]
  at::Tensor y = new_buffer({T, B, H}, x);  // [T, B, H]
  if (B == 0 || H == 0) return y.to(input.scalar_type());
  // Both biases enter every step together.
  const at::Tensor bias = combined_bias(bias_ih, bias_hh, ct);  // [H] or undefined
  const at::Tensor len = contiguous_lengths(lengths);  // [B]
  if (ct == at::kDouble) {
    forward_recurrence<double>(isa, x, w_ih, w_hh, bias, h0, y, len, reverse, act);
  } else {
    forward_recurrence<float>(isa, x, w_ih, w_hh, bias, h0, y, len, reverse, act);
  }
  return ct == input.scalar_type() ? y : y.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> rnn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& input, const at::Tensor& hx,
    const at::Tensor& weight_ih, const at::Tensor& weight_hh, const at::Tensor& output,
    const std::optional<at::Tensor>& lengths, bool reverse, std::string_view nonlinearity,
    std::array<bool, 2> output_mask) {
  check_backward_args(grad_output, input, hx, weight_ih, weight_hh, output, lengths);
  const Activation act = parse_activation(nonlinearity);
  const NoAutocast no_autocast;
  const cpu::Isa isa = cpu::current_isa();
  const auto ct = compute_type(input.scalar_type());
  const int64_t T = input.size(0), B = input.size(1);
  const int64_t H = weight_hh.size(0);

  const at::Tensor dy = as_compute(grad_output, ct);  // [T, B, H]
  const at::Tensor y = as_compute(output, ct);        // [T, B, H]
  const at::Tensor w_hh = as_compute(weight_hh, ct);  // [H, H]
  at::Tensor dz = new_buffer({T, B, H}, y);          // [T, B, H]
  at::Tensor carry = new_buffer({B, H}, y).zero_();  // [B, H]
  if (B > 0 && H > 0) {
    const at::Tensor len = contiguous_lengths(lengths);  // [B]
    if (ct == at::kDouble) {
      backward_recurrence<double>(isa, w_hh, dy, y, dz, carry, len, reverse, act);
    } else {
      backward_recurrence<float>(isa, w_hh, dy, y, dz, carry, len, reverse, act);
    }
  } else {
    dz.zero_();
  }
  // dx = dz W_ih on fastrnn's packed GEMM where batched_gemm.h finds it the faster one,
  // its packing pass over W_ih included. (W_ih read in place, as the gemv recurrence reads
  // W_hh, measured slower for dx at T*B = 32: its panels' rows lie a weight row apart.)
  const int64_t I = input.size(2);
  const bool own_dx = output_mask[0] && B > 0 && H > 0 && I > 0 &&
                      cpu::prefer_own_gemm(isa, T * B, H, I);
  // The weight gradients likewise, on gemm_tn (dz read in place as the transposed operand),
  // where it is timed faster at this size (the library's GEMMs win at large H here).
  const bool own_dw = output_mask[1] && B > 0 && H > 0 && cpu::prefer_own_weight_grads(isa, T * B, I, H);
  cpu::note_own_gemm(own_dx, own_dw);
  auto grads = backward_gemms(dz, carry, input, hx, weight_ih, y, reverse,
                              {output_mask[0] && !own_dx, output_mask[1] && !own_dw});
  const auto back = [&](const at::Tensor& t) {
    return ct == input.scalar_type() ? t : t.to(input.scalar_type());
  };
  if (own_dx) {
    at::Tensor dx = new_buffer({T * B, I}, y);  // [T*B, I]
    cpu::own_gemm(isa, dz.view({T * B, H}), as_compute(weight_ih, ct), /*transpose=*/false,
                  at::Tensor(), dx);
    std::get<0>(grads) = back(dx).view({T, B, I});
  }
  if (own_dw) {
    at::Tensor dw_ih = new_buffer({H, I}, y), dw_hh = new_buffer({H, H}, y), db = new_buffer({H}, y);
    cpu::own_weight_grads(isa, dz, as_compute(input, ct), y, as_compute(hx, ct), reverse, dw_ih,
                          dw_hh, db);
    std::get<2>(grads) = back(dw_ih);
    std::get<3>(grads) = back(dw_hh);
    std::get<4>(grads) = back(db);
  }
  return grads;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn_forward", &rnn_forward_cpu);
  m.impl("rnn_backward", &rnn_backward_cpu);
}

}  // namespace fastrnn
