// A sense-reversing spin barrier for a team of threads that meet once per time step.
//
// The column split (rnn_cpu.cpp) needs a barrier per step of a few microseconds: an OS
// wait (futex) wakes too late and an OpenMP barrier is not guaranteed to spin. Each
// arriving thread counts itself in; the last one resets the count and flips the shared
// sense, which releases the others spinning on it. Counting up to the team size given at
// each wait (not at construction) lets the object live outside the parallel region while
// the team size is known only inside it. Spinners pause (x86 PAUSE) and, after a bounded
// spin, yield the core so that an oversubscribed machine still makes progress.
// Framework-free on purpose (used inside an OpenMP region, no ATen).
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace fastrnn::cpu {

class SpinBarrier {
 public:
  // Each thread keeps its own sense (false at the start) and passes it to every wait.
  // Memory: everything a thread wrote before wait() is visible to every thread after
  // it (release on arrival, acquire on the sense).
  void wait(int team, bool& local_sense) {
    local_sense = !local_sense;
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == team) {
      count_.store(0, std::memory_order_relaxed);
      sense_.store(local_sense, std::memory_order_release);
      return;
    }
    for (int spins = 0; sense_.load(std::memory_order_acquire) != local_sense; ++spins) {
      if (spins < kSpinsBeforeYield) {
        pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  // PAUSE takes ~10 to ~140 cycles depending on the core: this spins ~5 to ~50 us, about
  // the longest step a column split runs (H = 1024), before it starts yielding, which on
  // an idle core returns at once and on an oversubscribed one lets the laggard run.
  static constexpr int kSpinsBeforeYield = 1 << 10;
  static void pause() {
#if defined(__x86_64__) || defined(_M_X64)
    _mm_pause();
#endif
  }
  alignas(64) std::atomic<int> count_{0};
  alignas(64) std::atomic<bool> sense_{false};
};

}  // namespace fastrnn::cpu
