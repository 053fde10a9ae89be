// See thread_pool.h.
#include "thread_pool.h"

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace fastrnn::cpu {
namespace {

// Spinning this long before sleeping catches the next call of a forward/backward pair
// without a futex wake-up, and wastes little when the pool goes idle.
constexpr auto kSpin = std::chrono::microseconds(50);

thread_local bool inside_task = false;

struct Pool {
  std::mutex busy;                         // one run_parallel at a time
  std::vector<std::thread> threads;        // helper h runs task index h + 1
  std::atomic<uint64_t> generation{0};     // bumped once per run_parallel
  std::atomic<int64_t> pending{0};         // helpers still running this generation
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t n = 0;

  // seen: the generation before the first call this helper must serve.
  void helper(int64_t index, uint64_t seen) {
    inside_task = true;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      uint64_t now = generation.load(std::memory_order_acquire);
      while (now == seen && std::chrono::steady_clock::now() - start < kSpin) {
        now = generation.load(std::memory_order_acquire);
      }
      while (now == seen) {
        generation.wait(seen, std::memory_order_acquire);
        now = generation.load(std::memory_order_acquire);
      }
      seen = now;
      if (index < n) (*fn)(index);
      if (pending.fetch_sub(1, std::memory_order_acq_rel) == 1) pending.notify_one();
    }
  }

  void ensure_threads(int64_t helpers) {
    while (static_cast<int64_t>(threads.size()) < helpers) {
      const int64_t index = static_cast<int64_t>(threads.size()) + 1;
      const uint64_t seen = generation.load(std::memory_order_acquire);
      threads.emplace_back([this, index, seen] { helper(index, seen); });
      threads.back().detach();  // the pool lives until exit; never joined
    }
  }
};

Pool* pool = nullptr;  // leaked on purpose: helpers may still be sleeping at exit

void forget_pool_after_fork() { pool = nullptr; }  // a forked child has no helper threads

Pool& get_pool() {
  static std::once_flag once;
  std::call_once(once, [] { pthread_atfork(nullptr, nullptr, forget_pool_after_fork); });
  if (pool == nullptr) pool = new Pool();
  return *pool;
}

}  // namespace

void run_parallel(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 1 || inside_task) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  Pool& p = get_pool();
  std::unique_lock<std::mutex> lock(p.busy, std::try_to_lock);
  if (!lock.owns_lock()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  p.ensure_threads(n - 1);
  p.fn = &fn;
  p.n = n;
  const int64_t helpers = static_cast<int64_t>(p.threads.size());
  p.pending.store(helpers, std::memory_order_relaxed);
  p.generation.fetch_add(1, std::memory_order_acq_rel);
  p.generation.notify_all();
  inside_task = true;
  fn(0);
  inside_task = false;
  int64_t left = p.pending.load(std::memory_order_acquire);
  const auto start = std::chrono::steady_clock::now();
  while (left != 0 && std::chrono::steady_clock::now() - start < kSpin) {
    left = p.pending.load(std::memory_order_acquire);
  }
  while (left != 0) {
    p.pending.wait(left, std::memory_order_acquire);
    left = p.pending.load(std::memory_order_acquire);
  }
}

}  // namespace fastrnn::cpu
