// The SIMT simulation's runtime: what the kernel bodies see through ../cuda/simt.h when
// they are compiled for the host (thread coordinates, barriers, warp shuffles, checked
// memory), and the launch API of the simulated kernels (sim_kernels.cpp).
//
// Execution model: every thread of every block is a user-space fiber with its own stack,
// run by one OS thread (the caller's). A fiber runs until it reaches a barrier
// (__syncthreads, a grid sync, or a warp shuffle, which exchanges values among the 32
// lanes of a warp), then the scheduler switches to the next runnable fiber. The schedule
// is fixed (warp by warp, block by block), so a run is deterministic. Each fiber stack has a
// PROT_NONE guard page below it (within the process's map-count budget) and a canary at its
// bottom: an overflow faults at once (SIGSEGV, the fiber named on stderr) or is reported.
//
// Checks (errors are collected and thrown as one std::runtime_error after the launch,
// which the dispatcher turns into a Python RuntimeError):
//   * bounds and alignment of every global and shared-memory access;
//   * the race checker (FASTRNN_SIM_RACECHECK=1, the default): per 4-byte word, the last
//     writer and up to two readers with the barrier interval they ran in; a write and a
//     read, or two writes, of one word by two threads with no barrier between them (a
//     __syncthreads for threads of one block, a grid sync for threads of different blocks)
//     is reported with the kernel, buffer, offset and both threads;
//   * barrier divergence: a __syncthreads reached from two call sites, or threads that
//     exit while others of their block wait (the launch would hang on a GPU);
//   * a grid sync in a launch that is not cooperative; partial-warp shuffles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <type_traits>

namespace fastrnn::simt {

struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};

struct Shadow;  // the race checker's record of one 4-byte word (simt_runtime.cpp)

// Memory a kernel may touch: a global buffer registered by the launcher, or one block's
// dynamic shared memory.
struct Region {
  const char* name = "";
  const char* base = nullptr;
  size_t bytes = 0;
  bool shared = false;       // shared memory of block `block` (else global)
  bool writable = false;     // a const kernel argument is read-only
  Shadow* shadow = nullptr;  // per 4-byte word; null when not tracked
  int block = -1;
};

// The coordinates of the running thread and of its launch (threadIdx & co. in simt.h).
struct ThreadCoords {
  uint3 thread_idx;
  uint3 block_idx;
};
struct LaunchDims {
  dim3 grid_dim;
  dim3 block_dim;
};
ThreadCoords* current_thread();
const LaunchDims* current_launch();
// For the self-test kernels (checker_selftest.cpp): the lowest address of the calling
// fiber's stack, where its overflow canary lives (nullptr outside a fiber).
void* fiber_stack_bottom();

// Slow paths of a checked access (simt_runtime.cpp): record an error; check a store into a
// read-only buffer and feed the race checker (false: the access must not happen).
bool report_bad_access(const Region* r, const void* p, size_t bytes, bool write);
bool track_access(const Region* r, size_t offset, size_t bytes, bool write);
// __ldg reads through the non-coherent cache: only valid for memory no thread of the
// launch writes.
void check_ldg(const Region* r);

// True when the access may happen (else the error is recorded: a load gives 0, a store
// is dropped, and the launch fails when it ends).
inline bool access(const Region* r, const void* p, size_t bytes, bool write) {
  const char* c = static_cast<const char*>(p);
  if (r == nullptr || c < r->base || c + bytes > r->base + r->bytes ||
      (reinterpret_cast<uintptr_t>(c) % bytes) != 0) {
    return report_bad_access(r, p, bytes, write);
  }
  if (r->shadow != nullptr || (write && !r->writable)) {
    return track_access(r, size_t(c - r->base), bytes, write);
  }
  return true;
}

// A reference to one element through a checked pointer: loads and stores are checked.
template <class T>
class Ref {
  using V = std::remove_const_t<T>;

 public:
  Ref(T* p, const Region* r) : p_(p), r_(r) {}
  operator V() const { return access(r_, p_, sizeof(V), false) ? *p_ : V(0); }
  const Ref& operator=(V v) const {
    static_assert(!std::is_const_v<T>, "store through a pointer to const");
    if (access(r_, p_, sizeof(V), true)) *p_ = v;
    return *this;
  }
  const Ref& operator=(const Ref& o) const { return *this = V(o); }

 private:
  T* p_;
  const Region* r_;
};

// simt::ptr<T> of the simulation: a pointer that knows the region it points into.
template <class T>
class ptr {
 public:
  ptr() = default;
  ptr(std::nullptr_t) {}
  ptr(T* p, const Region* r) : p_(p), r_(r) {}
  template <class U, class = std::enable_if_t<std::is_convertible_v<U*, T*>>>
  ptr(const ptr<U>& o) : p_(o.raw()), r_(o.region()) {}

  ptr operator+(int64_t i) const { return ptr(p_ + i, r_); }
  ptr operator-(int64_t i) const { return ptr(p_ - i, r_); }
  Ref<T> operator[](int64_t i) const { return Ref<T>(p_ + i, r_); }
  Ref<T> operator*() const { return Ref<T>(p_, r_); }
  bool operator==(std::nullptr_t) const { return p_ == nullptr; }
  bool operator!=(std::nullptr_t) const { return p_ != nullptr; }

  T* raw() const { return p_; }
  const Region* region() const { return r_; }

 private:
  T* p_ = nullptr;
  const Region* r_ = nullptr;
};

// reinterpret_cast<const V*>(p)[i], checked as one access of sizeof(V) bytes.
template <class V, class T>
V load_vec(ptr<T> p, int i) {
  const char* c = reinterpret_cast<const char*>(p.raw()) + size_t(i) * sizeof(V);
  V v{};
  if (access(p.region(), c, sizeof(V), false)) std::memcpy(&v, c, sizeof(V));
  return v;
}

// The registered global buffer that contains p (an error for an unknown pointer).
const Region* find_global(const void* p);
template <class T>
ptr<T> global(T* p) {
  return p == nullptr ? ptr<T>() : ptr<T>(p, find_global(p));
}

// This block's dynamic shared memory.
const Region* block_smem();
template <class T>
ptr<T> dynamic_smem() {
  const Region* r = block_smem();
  return ptr<T>(reinterpret_cast<T*>(const_cast<char*>(r->base)), r);
}

void syncthreads(const char* file, int line);
// The caller's file and line name the barrier (a planted-bug test may drop one).
void grid_sync(const char* file = __builtin_FILE(), int line = __builtin_LINE());
void shfl_xor(unsigned mask, const void* in, void* out, size_t bytes, int lane_mask);
// A warp collective (the simulated warp matrix operations, simt_wmma.h): publishes the lane's
// `bytes` (<= kExchangeBytes) at `in`, waits for all 32 lanes of the warp, and returns the
// 32 lanes' data ([32][kExchangeBytes], valid until the lane's next collective); nullptr
// after recording an error (a warp of fewer than 32 threads, too many bytes).
constexpr size_t kExchangeBytes = 64;
const unsigned char* warp_exchange(const char* what, const void* in, size_t bytes);
// Records an error of the running launch (prefixed with the kernel and the thread).
void report_error(const std::string& msg);

// ---------------------------------------------------------------------------- launching

struct LaunchConfig {
  std::string kernel;       // for messages, e.g. "fwd_persistent_kernel<float, 16>"
  unsigned grid = 1;        // blocks (x only: the kernels use one-dimensional launches)
  unsigned block = 1;       // threads per block
  size_t smem_bytes = 0;    // dynamic shared memory per block
  bool cooperative = false; // launched with cudaLaunchCooperativeKernel: grid syncs allowed
  bool barrier_free = false;  // no barriers or shuffles: threads run one after another
};

class Launch {
 public:
  explicit Launch(LaunchConfig cfg);
  ~Launch();
  // A buffer the kernel may access (its pointer arguments must point into one).
  void add_buffer(const char* name, const void* p, size_t bytes, bool writable);
  // Runs `body` (the kernel call) once per simulated thread; throws std::runtime_error
  // naming the kernel and listing the errors found, if any.
  void run(const std::function<void()>& body);

  struct State;  // simt_runtime.cpp

 private:
  std::unique_ptr<State> s_;
};

// Debug switches for the planted-bug tests (process-wide).
struct DebugOptions {
  std::string drop_barrier;  // "file_name:line": that __syncthreads / grid sync does nothing
  size_t smem_shortfall = 0; // allocate this many bytes less dynamic shared memory
};
void set_debug_options(const DebugOptions& o);
DebugOptions debug_options();

// FASTRNN_SIM_RACECHECK=0 turns the race checker off (bounds checks stay on).
bool racecheck_enabled();

}  // namespace fastrnn::simt
