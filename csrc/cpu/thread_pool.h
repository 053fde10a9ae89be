// A tiny persistent thread pool for the CPU kernels: run_parallel(n, fn) calls fn(0..n-1),
// fn(0) on the caller, the rest on helper threads that stay alive between calls.
//
// Why not at::parallel_for: in an extension built without -fopenmp its OpenMP
// implementation (an inline header template) compiles to a serial loop. A sequence needs
// one dispatch per call (threads own batch rows for the whole time loop), so a simple pool
// with a short spin and then a futex wait (std::atomic::wait) is enough.
#pragma once

#include <cstdint>
#include <functional>

namespace fastrnn::cpu {

// Calls fn(i) for every i in [0, n) concurrently and returns when all are done. Serial
// when n <= 1, when called from inside another run_parallel, or while another thread of
// the process is using the pool.
void run_parallel(int64_t n, const std::function<void(int64_t)>& fn);

}  // namespace fastrnn::cpu
