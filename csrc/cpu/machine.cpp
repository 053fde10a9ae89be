// See machine.h. Also the ops that expose it: fastrnn::_cpu_machine, _cpu_fma_peak.
#include "machine.h"

#include "batched_gemm.h"
#include "spin_barrier.h"
#include "stepwise.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <time.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

namespace fastrnn::cpu {
namespace {

double thread_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}
double wall_ns() {
  return double(std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::steady_clock::now().time_since_epoch())
                    .count());
}

// "32K" / "512K" / "32768K" / "1M" -> bytes; 0 when unreadable.
int64_t parse_size(const std::string& s) {
  if (s.empty()) return 0;
  int64_t v = 0;
  size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
  const char unit = i < s.size() ? s[i] : ' ';
  if (unit == 'K' || unit == 'k') v <<= 10;
  if (unit == 'M' || unit == 'm') v <<= 20;
  return v;
}

std::string read_line(const std::string& path) {
  std::ifstream f(path);
  std::string s;
  std::getline(f, s);
  return s;
}

Caches read_caches() {
  Caches c{0, 0, 0, "sysfs"};
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    const std::string level = read_line(dir + "level"), type = read_line(dir + "type");
    const int64_t size = parse_size(read_line(dir + "size"));
    if (level.empty() || size <= 0) continue;
    if (level == "1" && type == "Data") c.l1d_bytes = size;
    if (level == "2" && type != "Instruction") c.l2_bytes = size;
    if (level == "3" && type != "Instruction") c.l3_bytes = size;
  }
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (c.l2_bytes <= 0) {  // no sysfs: glibc's cpuid-based answer
    c.source = "sysconf";
    c.l1d_bytes = sysconf(_SC_LEVEL1_DCACHE_SIZE);
    c.l2_bytes = sysconf(_SC_LEVEL2_CACHE_SIZE);
    c.l3_bytes = sysconf(_SC_LEVEL3_CACHE_SIZE);
  }
#endif
  if (c.l2_bytes <= 0) {
    // Nothing known: the smallest of current x86 server cores, so that weights are
    // assumed out of cache sooner rather than later.
    c = Caches{32 << 10, 256 << 10, 8 << 20, "default"};
  }
  if (c.l1d_bytes <= 0) c.l1d_bytes = 32 << 10;
  if (c.l3_bytes <= 0) c.l3_bytes = c.l2_bytes;
  return c;
}

constexpr double kMaxSyncNs = 50e3;

// The value for key from a process-wide table, measured by measure() at the first call for
// that key. measure() runs outside the lock (it may run a parallel region or take a while);
// two threads racing on a new key both measure, and the first entry wins (same meaning).
template <typename Key, typename Value, typename Measure>
const Value& measured_once(std::mutex& mu, std::map<Key, Value>& table, const Key& key,
                           const Measure& measure) {
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = table.find(key);
    if (it != table.end()) return it->second;
  }
  const Value value = measure();
  std::lock_guard<std::mutex> lock(mu);
  return table.emplace(key, value).first->second;  // std::map: references stay valid
}

template <typename Fn>
double best_of(int runs, const Fn& fn) {
  double best = 1e300;
  for (int r = 0; r < runs; ++r) best = std::min(best, fn());
  return best;
}

// BPTT's weight gradients over K rows (I inputs, H units): the library's (rnn.h
// backward_gemms) time / fastrnn's (batched_gemm.h own_weight_grads), alternating, best of
// `rounds` each on torch's threads: the calling thread's CPU clock with one thread, else wall
// time. Constant operands: the time does not depend on the values, and a random fill would
// advance the user's default generator.
double weight_grads_speedup(Isa isa, int64_t K, int64_t I, int64_t H, int rounds) {
  const auto filled = [](at::IntArrayRef shape) { return at::full(shape, 0.01, at::kFloat); };
  const at::Tensor dz = filled({K, 1, H}), x = filled({K, 1, I}), y = filled({K, 1, H}),
                   h0 = filled({1, H}), w_ih = filled({H, I});
  at::Tensor dw_ih = at::empty({H, I}, at::kFloat), dw_hh = at::empty({H, H}, at::kFloat),
             db = at::empty({H}, at::kFloat);
  const bool one = at::get_num_threads() == 1;
  const auto clock = [one] { return one ? thread_ns() : wall_ns(); };
  double lib = 1e300, own = 1e300;
  for (int r = 0; r < rounds; ++r) {
    double t0 = clock();
    backward_gemms(dz, h0, x, h0, w_ih, y, false, {false, true});
    lib = std::min(lib, clock() - t0);
    t0 = clock();
    own_weight_grads(isa, dz, x, y, h0, false, dw_ih, dw_hh, db);
    own = std::min(own, clock() - t0);
  }
  return lib / std::max(own, 1.0);
}

Costs measure_costs(Isa isa) {
  Costs c{};
  // Per-core FMA rate: ~0.1 ms runs of the probe.
  double flops = 0;
  const double ns = best_of(5, [&] {
    const double t0 = thread_ns();
    flops = fma_loop(isa, 20000);
    return thread_ns() - t0;
  });
  c.madd_per_ns = flops / 2.0 / std::max(ns, 1.0);
  // Packing: a transposed [256, 256] weight, the strided read every forward pays.
  {
    const int64_t n = 256;
    std::vector<float> w(n * n, 1.0f), out(packed_size(isa, n, n, false));
    const int64_t panels = (n + panel_cols(isa, false) - 1) / panel_cols(isa, false);
    c.pack_ns_per_element = best_of(3, [&] {
                              const double t0 = thread_ns();
                              pack(isa, w.data(), true, n, n, n, 0, out.data(), 0, panels);
                              return thread_ns() - t0;
                            }) /
                            double(n * n);
  }
  // A stepwise step at a tiny size: two library calls' fixed costs.
  {
    // float32 whatever torch's default dtype is (the float kernels are what is measured).
    at::Tensor y = at::zeros({1, 16}, at::kFloat), h = at::zeros({1, 16}, at::kFloat),
               w = at::zeros({16, 16}, at::kFloat);
    c.step_call_ns = best_of(5, [&] {
      const double t0 = thread_ns();
      for (int i = 0; i < 8; ++i) {
        y.addmm_(h, w.t());
        y.tanh_();
      }
      return (thread_ns() - t0) / 8;
    });
  }
  // Waking torch's team (wall clock: the waiting is the cost), and a barrier round.
  c.parallel_ns = best_of(9, [&] {
    std::atomic<int64_t> sink{0};
    const double t0 = wall_ns();
    at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t b, int64_t e) { sink += e - b; });
    return wall_ns() - t0;
  });
  c.barrier_ns = c.parallel_ns;
#ifdef _OPENMP
  if (at::get_num_threads() > 1) {
    const int rounds = 64;
    c.barrier_ns = best_of(3, [&] {
      SpinBarrier barrier;  // fresh: its sense must start where the threads' senses do
      double elapsed = 0;
#pragma omp parallel num_threads(at::get_num_threads())
      {
        bool sense = false;
        const int team = omp_get_num_threads();
        barrier.wait(team, sense);
        const double t0 = wall_ns();
        for (int r = 0; r < rounds; ++r) barrier.wait(team, sense);
        if (omp_get_thread_num() == 0) elapsed = (wall_ns() - t0) / rounds;
      }
      return elapsed;
    });
  }
#endif
  // The GEMM kernels: the library's against fastrnn's on a pre-packed weight (packing is
  // costed separately), alternating, best of 5 each on torch's threads; on one thread with
  // the thread's CPU clock, which a loaded machine inflates little.
  {
    // Constant operands: timing does not depend on the values, and a random fill would
    // advance the user's default generator (the first call would change later draws).
    at::Tensor a = at::full({256, 512}, 0.01, at::kFloat), w = at::full({512, 512}, 0.01, at::kFloat),
               out = at::empty({256, 512}, at::kFloat);
    const at::Tensor m = pack_for_gemm(isa, w, true);
    const bool one = at::get_num_threads() == 1;
    const auto clock = [one] { return one ? thread_ns() : wall_ns(); };
    double lib = 1e300, own = 1e300;
    for (int r = 0; r < 5; ++r) {
      double t0 = clock();
      at::mm_out(out, a, w.t());
      lib = std::min(lib, clock() - t0);
      t0 = clock();
      packed_gemm(isa, a, m, 512, at::Tensor(), out);
      own = std::min(own, clock() - t0);
    }
    c.own_gemm_speedup = lib / std::max(own, 1.0);
  }
  // Streaming a weight from beyond L2 through the gemv kernel: [N, 1024] floats of twice
  // the L2, one pass to fault the pages in and fill the outer caches, then best of 3.
  {
    const int64_t K = 1024, N = std::max<int64_t>(16, 2 * caches().l2_bytes / (K * 4));
    std::vector<float> w(N * K, 0.01f), a(K, 0.01f), out(N);
    const auto pass = [&] { gemm_nt(isa, a.data(), K, K, w.data(), K, nullptr, out.data(), N, N, 0, 1, 1); };
    pass();
    const double ns = best_of(3, [&] {
      const double t0 = thread_ns();
      pass();
      return thread_ns() - t0;
    });
    c.stream_bytes_per_ns = double(N * K * 4) / std::max(ns, 1.0);
  }
  // The same kernel's arithmetic rate: 16 rows against a [128, 256] weight (128 KiB, in L2).
  {
    constexpr int64_t R = 16, K = 256, N = 128;
    std::vector<float> w(N * K, 0.01f), a(R * K, 0.01f), out(R * N);
    const auto pass = [&] { gemm_nt(isa, a.data(), K, K, w.data(), K, nullptr, out.data(), N, N, 0, R, R); };
    pass();
    const double ns = best_of(3, [&] {
      const double t0 = thread_ns();
      for (int i = 0; i < 8; ++i) pass();
      return thread_ns() - t0;
    });
    c.gemv_madd_per_ns = std::min(c.madd_per_ns, double(8 * R * K * N) / std::max(ns, 1.0));
  }
  // A fork-join or barrier round of a few threads costs 1-20 us on current x86 servers;
  // a best-of-several above 50 us means the OS kept a thread descheduled in every run
  // (an oversubscribed machine), which says nothing about the cost on a free machine.
  c.parallel_ns = std::min(c.parallel_ns, kMaxSyncNs);
  c.barrier_ns = std::min(c.barrier_ns, kMaxSyncNs);
  return c;
}

}  // namespace

const Caches& caches() {
  static const Caches c = read_caches();
  return c;
}

const Costs& costs(Isa isa) {
  // Per (ISA, thread count): the parallel costs depend on torch's team size.
  static std::mutex mu;
  static std::map<std::pair<int, int>, Costs> cache;
  const std::pair<int, int> key{static_cast<int>(isa), at::get_num_threads()};
  return measured_once(mu, cache, key, [&] { return measure_costs(isa); });
}

namespace {

// Runs `steps` steps of the rows kernel on zeroed scratch (tanh; zeros keep it finite) and
// returns the best per-step CPU time of 3 runs, after one warm-up run.
double measure_rows_step(Isa isa, bool backward, int64_t rows, int64_t K, int64_t H) {
  constexpr int64_t steps = 16;
  std::vector<float> m(packed_size(isa, K, H, false), 0.0f);
  std::vector<float> a1(steps * rows * std::max(K - H, H), 0.0f), a2(steps * rows * H, 0.0f),
      a3(steps * rows * H, 0.0f), h(rows * H, 0.0f), h2(rows * H, 0.0f);
  std::function<void()> run;
  ForwardArgs<float> f{};
  BackwardArgs<float> b{};
  if (backward) {
    b.T_ = steps, b.B = rows, b.H = H, b.m = m.data(), b.dy = a1.data(), b.y = a2.data();
    b.dz = a3.data(), b.carry = h.data(), b.scratch = h2.data(), b.act = Act::Tanh;
    run = [&] { backward_rows(isa, b, 0, rows); };
  } else {
    // K = I + H (input projection inside the step), or H (project-first: y holds it).
    f.T_ = steps, f.B = rows, f.I = K - H, f.H = H, f.m = m.data(), f.x = a1.data();
    f.h0 = h.data(), f.bias = h2.data(), f.y = a2.data(), f.y_holds_pre = K == H;
    f.act = Act::Tanh;
    run = [&] { forward_rows(isa, f, 0, rows); };
  }
  run();
  return best_of(3, [&] {
           const double t0 = thread_ns();
           run();
           return thread_ns() - t0;
         }) /
         double(steps);
}

// backward_gemv_carry over all columns of a zeroed [H, H] W_hh of twice the L2 (H a
// multiple of 16, so that no column is left to the scalar tail), `rows` rows; one pass to
// fault the pages in and fill the outer caches, then best of 3.
double measure_carry_stream(Isa isa, int64_t rows) {
  int64_t H = 16;
  while (H * H * 4 < 2 * caches().l2_bytes) H += 16;
  std::vector<float> w(H * H, 0.0f), dz(rows * H, 0.0f), carry(rows * H), scratch(rows * H);
  BackwardArgs<float> b{};
  b.T_ = 1, b.B = rows, b.H = H, b.w_hh = w.data(), b.dz = dz.data(), b.carry = carry.data();
  b.scratch = scratch.data(), b.act = Act::Tanh;
  const auto pass = [&] { backward_gemv_carry(isa, b, 0, 0, rows, 0, H); };
  pass();
  const double ns = best_of(3, [&] {
    const double t0 = thread_ns();
    pass();
    return thread_ns() - t0;
  });
  return double(H * H * 4) / std::max(ns, 1.0);
}

}  // namespace

double carry_stream_bytes_per_ns(Isa isa, int64_t rows) {
  static std::mutex mu;
  static std::map<std::pair<int, int64_t>, double> cache;
  const auto key = std::make_pair(static_cast<int>(isa), std::clamp<int64_t>(rows, 1, 16));
  return measured_once(mu, cache, key, [&] { return measure_carry_stream(isa, key.second); });
}

double rows_step_ns(Isa isa, bool backward, int64_t rows, int64_t K, int64_t H) {
  static std::mutex mu;
  static std::map<std::tuple<int, bool, int64_t, int64_t, int64_t>, double> cache;
  const auto key = std::make_tuple(static_cast<int>(isa), backward, rows, K, H);
  return measured_once(mu, cache, key,
                       [&] { return measure_rows_step(isa, backward, rows, K, H); });
}

bool own_weight_grads_faster(Isa isa, int64_t K, int64_t I, int64_t H) {
  int64_t bucket = 64;  // K rounded up to a power of two: variable lengths share timings
  while (bucket < K) bucket *= 2;
  // Timed at the call's size up to 2^25 multiply-adds (~0.5 ms a side here); beyond, the
  // probe of a large problem (Costs) answers.
  if (double(bucket) * double(I + H) * double(H) > double(1 << 25)) bucket = I = H = -1;
  static std::mutex mu;
  static std::map<std::tuple<int, int64_t, int64_t, int64_t, int>, bool> cache;
  const auto key = std::make_tuple(int(isa), bucket, I, H, at::get_num_threads());
  if (bucket < 0) {  // the large-problem timing, once
    return measured_once(mu, cache, key, [&] { return weight_grads_speedup(isa, 1024, 256, 256, 3) > 1.0; });
  }
  return measured_once(mu, cache, key, [&] {
    weight_grads_speedup(isa, bucket, I, H, 1);  // warm-up: page faults, the library's setup
    return weight_grads_speedup(isa, bucket, I, H, 3) > 1.0;
  });
}

StepwiseCost stepwise_cost(bool backward, int64_t B, int64_t I, int64_t H) {
  static std::mutex mu;
  static std::map<std::tuple<bool, int64_t, int64_t, int64_t, int>, StepwiseCost> cache;
  const auto key = std::make_tuple(backward, B, backward ? int64_t(0) : I, H, at::get_num_threads());
  return measured_once(mu, cache, key, [&] {
    const auto zeros = [](at::IntArrayRef shape) { return at::zeros(shape, at::kFloat); };
    // The time of a T-step call on zeroed scratch, best of 3 after a warm-up: on the
    // calling thread's CPU clock when torch has one thread (as rows_step_ns is timed, so a
    // loaded machine inflates neither side), else wall time (the library may split).
    const bool one = at::get_num_threads() == 1;
    const auto clock = [one] { return one ? thread_ns() : wall_ns(); };
    const auto call_ns = [&](int64_t T) {
      at::Tensor w_hh = zeros({H, H}), y = zeros({T, B, H}), h = zeros({B, H});
      std::function<void()> run;
      if (backward) {
        at::Tensor dy = zeros({T, B, H}), dz = zeros({T, B, H});
        run = [=]() mutable {
          backward_stepwise(w_hh, dy, y, dz, h, at::Tensor(), false, Activation::Tanh);
        };
      } else {
        at::Tensor x = zeros({T, B, I}), w_ih = zeros({H, I}), bias = zeros({H});
        run = [=]() mutable {
          forward_stepwise(x, w_ih, w_hh, bias, h, y, at::Tensor(), false, Activation::Tanh);
        };
      }
      run();
      return best_of(3, [&] {
        const double t0 = clock();
        run();
        return clock() - t0;
      });
    };
    const double t1 = call_ns(1), t5 = call_ns(5);
    const double step = std::max(0.0, (t5 - t1) / 4);
    return StepwiseCost{std::max(0.0, t1 - step), step};
  });
}

FmaPeak fma_peak(Isa isa, double seconds, int64_t threads) {
  const int64_t n = std::max<int64_t>(1, threads);
  std::vector<double> flops(n, 0.0), cpu(n, 0.0);
  const int64_t chunk = 200000;  // ~1 ms of FMAs: the clock is read between chunks
  const double t0 = wall_ns(), limit = seconds * 1e9;
  const auto body = [&](int64_t id) {
    const double c0 = thread_ns();
    double f = 0;
    do {
      f += fma_loop(isa, chunk);
    } while (wall_ns() - t0 < limit);
    flops[id] = f;
    cpu[id] = thread_ns() - c0;
  };
#ifdef _OPENMP
#pragma omp parallel for num_threads(n) schedule(static, 1)
  for (int64_t id = 0; id < n; ++id) body(id);
#else
  for (int64_t id = 0; id < n; ++id) body(id);  // no OpenMP: one thread at a time
#endif
  const double wall = wall_ns() - t0;
  FmaPeak p{0, 0};
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    total += flops[i];
    p.cpu_gflops += flops[i] / std::max(cpu[i], 1.0);
  }
  p.wall_gflops = total / wall;
  return p;
}

Isa current_isa() {
  Isa isa = Isa::Portable;
  const char* requested = nullptr;
  TORCH_CHECK(select_isa(&isa, &requested), "fastrnn: FASTRNN_CPU_ISA='",
              requested ? requested : "", "' is unknown or not supported by this CPU; expected "
              "one of auto|portable|avx2|avx512|avx512sim (avx2 and avx512sim: ",
              isa_supported(Isa::Avx2) ? "supported" : "unsupported", ", avx512: ",
              isa_supported(Isa::Avx512) ? "supported" : "unsupported", ")");
  return isa;
}

namespace {

// (isa, l1d, l2, l3, cache source, threads, panel columns,
//  madd/ns per core, pack ns/element, step call ns, parallel region ns, barrier ns,
//  own GEMM speedup over the library's, streaming bytes/ns, gemv madd/ns)
std::tuple<std::string, int64_t, int64_t, int64_t, std::string, int64_t, int64_t, double, double,
           double, double, double, double, double, double>
cpu_machine() {
  const Isa isa = current_isa();
  const Caches& c = caches();
  const Costs& k = costs(isa);
  return {isa_name(isa), c.l1d_bytes, c.l2_bytes, c.l3_bytes, c.source, at::get_num_threads(),
          panel_cols(isa, false), k.madd_per_ns, k.pack_ns_per_element, k.step_call_ns,
          k.parallel_ns, k.barrier_ns, k.own_gemm_speedup, k.stream_bytes_per_ns,
          k.gemv_madd_per_ns};
}

double cpu_carry_stream(int64_t rows) {
  TORCH_CHECK(rows >= 1, "fastrnn._cpu_carry_stream: rows must be >= 1, got ", rows);
  return carry_stream_bytes_per_ns(current_isa(), rows);
}

// (rows_step_ns on `rows` rows of M [K, H], stepwise_cost(B = rows) fixed, per step), what
// the short-sequence path choice compares.
std::tuple<double, double, double> cpu_step_costs(bool backward, int64_t rows, int64_t I, int64_t K,
                                                  int64_t H) {
  TORCH_CHECK(rows >= 1 && I >= 0 && K >= 1 && H >= 1 && K >= H,
              "fastrnn._cpu_step_costs: expected rows >= 1, I >= 0, K >= H >= 1, got rows=", rows,
              ", I=", I, ", K=", K, ", H=", H);
  const StepwiseCost s = stepwise_cost(backward, rows, I, H);
  return {rows_step_ns(current_isa(), backward, rows, K, H), s.fixed_ns, s.step_ns};
}

std::tuple<double, double> cpu_fma_peak(double seconds, int64_t threads) {
  TORCH_CHECK(seconds > 0 && seconds <= 60, "fastrnn._cpu_fma_peak: seconds must be in (0, 60], got ",
              seconds);
  TORCH_CHECK(threads >= 1 && threads <= 4096, "fastrnn._cpu_fma_peak: threads must be >= 1, got ",
              threads);
  const FmaPeak p = fma_peak(current_isa(), seconds, threads);
  return {p.wall_gflops, p.cpu_gflops};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("_cpu_machine() -> (str, int, int, int, str, int, int, float, float, float, float, float, "
        "float, float, float)",
        &cpu_machine);
  m.def("_cpu_fma_peak(float seconds, int threads) -> (float, float)", &cpu_fma_peak);
  m.def("_cpu_carry_stream(int rows) -> float", &cpu_carry_stream);
  m.def("_cpu_step_costs(bool backward, int rows, int I, int K, int H) -> (float, float, float)",
        &cpu_step_costs);
}

}  // namespace fastrnn::cpu
