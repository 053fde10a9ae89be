// The SIMT simulation's scheduler, barriers, shuffles and checkers (see simt_runtime.h).
#include "simt_runtime.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <vector>

#if !(defined(__x86_64__) && defined(__ELF__))
#include <ucontext.h>
#endif

namespace fastrnn::simt {

// ---------------------------------------------------------------------------- race checker state

constexpr uint32_t kNobody = 0xffffffffu;

// One access for the race checker: who, and in which barrier intervals.
struct Access {
  uint32_t thread = kNobody;  // global thread id: block * block_dim + tid
  uint32_t grid_epoch = 0;    // grid syncs passed
  uint32_t block_epoch = 0;   // __syncthreads (and grid syncs) passed by its block
};

struct Shadow {
  Access write, read1, read2;
};

namespace {

// ---------------------------------------------------------------------------- fibers
//
// A context switch saves the callee-saved registers on the current stack and moves to
// the other stack. On x86-64 (System V) a hand-written switch costs a few nanoseconds;
// ucontext's swapcontext (the portable fallback) makes a signal-mask system call on
// every switch, which is two orders of magnitude slower but equally correct.

#if defined(__x86_64__) && defined(__ELF__)

// fastrnn_simt_swap(void** save_sp, void* next_sp): pushes rbp, rbx, r12-r15 and the
// SSE/x87 control words, stores rsp in *save_sp, loads next_sp and pops the same.
asm(R"(
  .text
  .p2align 4
  .type fastrnn_simt_swap, @function
fastrnn_simt_swap:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size fastrnn_simt_swap, .-fastrnn_simt_swap
)");
extern "C" void fastrnn_simt_swap(void** save_sp, void* next_sp);

struct Context {
  void* sp = nullptr;
};

void switch_to(Context* from, Context* to) { fastrnn_simt_swap(&from->sp, to->sp); }

// A fresh stack whose first switch "returns" into entry, with rsp as after a call.
void make_context(Context* c, char* stack, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t(15);
  auto* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                  // entry's return address (never used)
  *--sp = reinterpret_cast<uint64_t>(entry);  // popped by ret
  for (int i = 0; i < 6; ++i) *--sp = 0;      // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr;
  uint16_t fpucw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--sp = uint64_t(mxcsr) | (uint64_t(fpucw) << 32);
  c->sp = sp;
}

#else

struct Context {
  ucontext_t uc;
};

void switch_to(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }

void make_context(Context* c, char* stack, size_t size, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, entry, 0);
}

#endif

constexpr size_t kStackBytes = 64 * 1024;  // reserved, touched on use: kernels need a few KiB
// Written at the lowest address of every fiber stack, checked when the fiber exits: reports an
// overflow that ended inside the stack's last bytes, or one into a stack beyond the guard page
// budget (below). Every stack within it has a PROT_NONE guard page just below it, so an
// overflow faults at once (SIGSEGV, reported by guard_page_handler) instead of corrupting the
// stack of the fiber below.
constexpr uint64_t kCanary = 0x5eedfa11c0ffee42ull;
constexpr int kWarpSize = 32;
constexpr size_t kMaxMessages = 8;

// ---------------------------------------------------------------------------- state

enum class Wait : uint8_t { kNone, kWarp, kBlock, kGrid, kDone };

struct SimThread : ThreadCoords {
  Context ctx;
  Wait wait = Wait::kNone;
  uint32_t id = 0, block = 0, tid = 0, warp = 0;
  uint32_t shuffles = 0;  // parity selects the warp's exchange buffer
  const char* bar_file = nullptr;
  int bar_line = 0;
  char* stack = nullptr;
};

// The fiber stacks of the running launch on this OS thread, for the SIGSEGV handler: slot i
// is [guard page][stack] at base + i * slot.
struct StackMap {
  const char* base = nullptr;
  size_t slot = 0, guard = 0, guarded = 0;  // guarded: slots with a guard page
  uint32_t block_dim = 1;
  const char* kernel = "";
};

struct Warp {
  uint32_t first = 0, size = 0, arrived = 0;
  unsigned char slots[2][kWarpSize][16];  // double-buffered shuffle values
  // Double-buffered warp_exchange data, allocated by the first collective that needs it.
  std::unique_ptr<unsigned char[]> wide;
  const char* at[kWarpSize] = {};  // the collective each lane of the current one called
};

// Dynamic shared memory's unit: 128-byte aligned, as simt.h declares it for nvcc.
struct alignas(128) SmemLine {
  unsigned char bytes[128];
};

struct Block {
  std::vector<SmemLine> smem;  // 128-byte aligned storage
  Region region;
  std::vector<Shadow> shadow;
  uint32_t arrived = 0;
  uint32_t epoch = 0;
};

thread_local Launch::State* t_launch = nullptr;
thread_local SimThread* t_thread = nullptr;
thread_local StackMap t_stacks;

std::mutex g_debug_mu;
DebugOptions g_debug;

}  // namespace

struct Launch::State {
  LaunchConfig cfg;
  LaunchDims dims;
  std::deque<Region> globals;  // stable addresses
  std::deque<std::vector<Shadow>> global_shadows;
  std::vector<Block> blocks;
  std::vector<Warp> warps;
  std::vector<SimThread> threads;
  uint32_t grid_arrived = 0, grid_epoch = 0;
  Context scheduler;
  const std::function<void()>* body = nullptr;
  bool racecheck = true;
  std::string drop_file;  // debug: the __syncthreads to skip
  int drop_line = -1;
  size_t smem_shortfall = 0;
  std::vector<std::string> messages;
  size_t errors = 0;

  void error(std::string msg) {
    ++errors;
    if (messages.size() < kMaxMessages) messages.push_back(std::move(msg));
  }
};

namespace {

Launch::State& launch() { return *t_launch; }

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

std::string thread_name(const Launch::State& L, uint32_t id) {
  const uint32_t bd = L.dims.block_dim.x;
  return format("block %u thread %u (warp %u lane %u)", id / bd, id % bd, (id % bd) / kWarpSize,
                id % kWarpSize);
}

std::string where(const Region* r, size_t offset) {
  if (r->shared) {
    return format("shared memory of block %d (%zu bytes) at byte offset %zu", r->block, r->bytes,
                  offset);
  }
  return format("global buffer '%s' (%zu bytes) at byte offset %zu (4-byte word %zu)",
                r->name, r->bytes, offset, offset / 4);
}

// Two accesses may race when no barrier orders them: threads of one block need a
// __syncthreads between them, threads of different blocks a grid sync.
bool concurrent(const Launch::State& L, const Access& prev, const Access& cur) {
  if (prev.thread == kNobody || prev.thread == cur.thread) return false;
  const uint32_t bd = L.dims.block_dim.x;
  if (prev.thread / bd != cur.thread / bd) return prev.grid_epoch == cur.grid_epoch;
  return prev.block_epoch == cur.block_epoch;
}

void report_race(Launch::State& L, const Region* r, size_t word, const Access& prev,
                 const char* prev_kind, const Access& cur, const char* cur_kind) {
  const bool same_block = prev.thread / L.dims.block_dim.x == cur.thread / L.dims.block_dim.x;
  L.error(format("race in %s on %s: %s by %s and %s by %s with no %s between them",
                 L.cfg.kernel.c_str(), where(r, word * 4).c_str(), prev_kind,
                 thread_name(L, prev.thread).c_str(), cur_kind, thread_name(L, cur.thread).c_str(),
                 same_block ? "__syncthreads" : "grid sync")
              .c_str());
}

void release(Launch::State& L, uint32_t first, uint32_t count, Wait kind) {
  for (uint32_t i = first; i < first + count; ++i) {
    if (L.threads[i].wait == kind) L.threads[i].wait = Wait::kNone;
  }
}

void yield(SimThread* t) { switch_to(&t->ctx, &launch().scheduler); }

void fiber_main() {
  SimThread* t = t_thread;
  (*t_launch->body)();
  t->wait = Wait::kDone;
  switch_to(&t->ctx, &t_launch->scheduler);
  std::abort();  // a finished fiber is never resumed
}

bool barrier_allowed(Launch::State& L, const char* what) {
  if (!L.cfg.barrier_free) return true;
  L.error(format("%s: %s in a kernel the simulation runs as barrier-free", L.cfg.kernel.c_str(),
                 what));
  return false;
}

std::string base_name(const char* path) {
  const char* slash = std::strrchr(path, '/');
  return slash ? slash + 1 : path;
}

}  // namespace

// ---------------------------------------------------------------------------- kernel side

ThreadCoords* current_thread() { return t_thread; }
const LaunchDims* current_launch() { return &t_launch->dims; }
void* fiber_stack_bottom() { return t_thread ? t_thread->stack : nullptr; }

bool report_bad_access(const Region* r, const void* p, size_t bytes, bool write) {
  Launch::State& L = launch();
  const char* what = write ? "store" : "load";
  const std::string who = thread_name(L, t_thread->id);
  if (r == nullptr) {
    L.error(format("%s: %zu-byte %s by %s through a pointer into no buffer of the launch (%p)",
                   L.cfg.kernel.c_str(), bytes, what, who.c_str(), p));
  } else {
    const ptrdiff_t off = static_cast<const char*>(p) - r->base;
    const bool inside = off >= 0 && size_t(off) + bytes <= r->bytes;
    if (inside) {
      L.error(format("%s: misaligned %zu-byte %s by %s on %s", L.cfg.kernel.c_str(), bytes,
                     what, who.c_str(), where(r, size_t(off)).c_str()));
    } else {
      L.error(format("%s: out-of-bounds %zu-byte %s by %s at byte offset %td of %s '%s' "
                     "(%zu bytes%s)",
                     L.cfg.kernel.c_str(), bytes, what, who.c_str(), off,
                     r->shared ? "shared memory" : "global buffer", r->name, r->bytes,
                     r->shared ? format(", block %d", r->block).c_str() : ""));
    }
  }
  return false;
}

bool track_access(const Region* r, size_t offset, size_t bytes, bool write) {
  Launch::State& L = launch();
  const SimThread* t = t_thread;
  if (write && !r->writable) {
    L.error(format("%s: store by %s into read-only %s", L.cfg.kernel.c_str(),
                   thread_name(L, t->id).c_str(), where(r, offset).c_str()));
    return false;
  }
  const Access cur{t->id, L.grid_epoch, L.blocks[t->block].epoch};
  for (size_t w = offset / 4; w < (offset + bytes + 3) / 4; ++w) {
    Shadow& s = r->shadow[w];
    if (write) {
      if (concurrent(L, s.write, cur)) report_race(L, r, w, s.write, "write", cur, "write");
      else if (concurrent(L, s.read1, cur)) report_race(L, r, w, s.read1, "read", cur, "write");
      else if (concurrent(L, s.read2, cur)) report_race(L, r, w, s.read2, "read", cur, "write");
      s.write = cur;
    } else {
      if (concurrent(L, s.write, cur)) report_race(L, r, w, s.write, "write", cur, "read");
      // Keep up to two readers that are concurrent with each other; an older read that a
      // barrier separates from this one can no longer race with a later write. With more
      // concurrent readers than slots, keep two from different blocks: a later write then
      // has a kept reader in another block (a race without a grid sync), or, in a block of
      // its own, one of two readers it is not ordered after -- either way it is reported.
      const uint32_t bd = L.dims.block_dim.x;
      if (s.read1.thread == cur.thread || !concurrent(L, s.read1, cur)) s.read1 = cur;
      else if (s.read2.thread == cur.thread || !concurrent(L, s.read2, cur)) s.read2 = cur;
      else if (s.read1.thread / bd == s.read2.thread / bd && cur.thread / bd != s.read1.thread / bd)
        s.read2 = cur;
    }
  }
  return true;
}

void check_ldg(const Region* r) {
  if (r == nullptr || !r->writable) return;  // a bad pointer is reported by the load itself
  Launch::State& L = launch();
  L.error(format("%s: __ldg by %s of %s '%s', which the kernel may write (the read-only "
                 "cache is not coherent with stores of the same launch)",
                 L.cfg.kernel.c_str(), thread_name(L, t_thread->id).c_str(),
                 r->shared ? "shared memory" : "global buffer", r->name));
}

const Region* find_global(const void* p) {
  Launch::State& L = launch();
  const char* c = static_cast<const char*>(p);
  for (const Region& r : L.globals) {
    if (c >= r.base && c < r.base + r.bytes) return &r;
  }
  for (const Region& r : L.globals) {
    if (c == r.base) return &r;  // an empty buffer
  }
  return nullptr;  // every access through it is reported
}

const Region* block_smem() {
  Launch::State& L = launch();
  return &L.blocks[t_thread->block].region;
}

void syncthreads(const char* file, int line) {
  Launch::State& L = launch();
  SimThread* t = t_thread;
  if (line == L.drop_line && base_name(file) == L.drop_file) return;  // planted bug
  if (!barrier_allowed(L, "__syncthreads")) return;
  Block& b = L.blocks[t->block];
  t->bar_file = file;
  t->bar_line = line;
  t->wait = Wait::kBlock;
  if (++b.arrived < L.dims.block_dim.x) {
    yield(t);
    return;
  }
  // The last thread of the block arrived: every thread must be at this same barrier.
  const uint32_t first = t->block * L.dims.block_dim.x;
  for (uint32_t i = first; i < first + L.dims.block_dim.x; ++i) {
    const SimThread& o = L.threads[i];
    if (o.bar_line != line || std::strcmp(o.bar_file, file) != 0) {
      L.error(format("%s: divergent __syncthreads in block %u: %s waits at %s:%d, %s at %s:%d",
                     L.cfg.kernel.c_str(), t->block, thread_name(L, o.id).c_str(),
                     base_name(o.bar_file).c_str(), o.bar_line, thread_name(L, t->id).c_str(),
                     base_name(file).c_str(), line));
      break;
    }
  }
  b.arrived = 0;
  ++b.epoch;
  release(L, first, L.dims.block_dim.x, Wait::kBlock);
}

void grid_sync(const char* file, int line) {
  Launch::State& L = launch();
  SimThread* t = t_thread;
  if (line == L.drop_line && base_name(file) == L.drop_file) return;  // planted bug
  if (!barrier_allowed(L, "grid sync")) return;
  if (!L.cfg.cooperative) {
    L.error(format("%s: grid sync by %s in a launch that is not cooperative (undefined on a GPU)",
                   L.cfg.kernel.c_str(), thread_name(L, t->id).c_str()));
    return;
  }
  t->wait = Wait::kGrid;
  if (++L.grid_arrived < L.threads.size()) {
    yield(t);
    return;
  }
  L.grid_arrived = 0;
  ++L.grid_epoch;
  for (Block& b : L.blocks) ++b.epoch;  // a grid sync orders the threads of a block too
  release(L, 0, uint32_t(L.threads.size()), Wait::kGrid);
}

void shfl_xor(unsigned mask, const void* in, void* out, size_t bytes, int lane_mask) {
  Launch::State& L = launch();
  SimThread* t = t_thread;
  std::memcpy(out, in, bytes);
  if (!barrier_allowed(L, "warp shuffle")) return;
  Warp& w = L.warps[t->warp];
  if (mask != 0xffffffffu || w.size != kWarpSize || bytes > 16) {
    L.error(format("%s: __shfl_xor_sync with mask %#x in a warp of %u threads (%zu bytes): only "
                   "full-warp shuffles of up to 16 bytes are simulated",
                   L.cfg.kernel.c_str(), mask, w.size, bytes));
    return;
  }
  const uint32_t lane = t->tid % kWarpSize;
  const int phase = t->shuffles++ & 1;
  std::memcpy(w.slots[phase][lane], in, bytes);
  t->wait = Wait::kWarp;
  if (++w.arrived < w.size) {
    yield(t);
  } else {
    w.arrived = 0;
    release(L, w.first, w.size, Wait::kWarp);
  }
  const uint32_t src = lane ^ uint32_t(lane_mask);
  if (src < kWarpSize) std::memcpy(out, w.slots[phase][src], bytes);
}

const unsigned char* warp_exchange(const char* what, const void* in, size_t bytes) {
  Launch::State& L = launch();
  SimThread* t = t_thread;
  if (!barrier_allowed(L, what)) return nullptr;
  Warp& w = L.warps[t->warp];
  if (w.size != kWarpSize || bytes > kExchangeBytes) {
    L.error(format("%s: %s in a warp of %u threads (%zu bytes): only full warps of 32 are "
                   "simulated", L.cfg.kernel.c_str(), what, w.size, bytes));
    return nullptr;
  }
  if (!w.wide) w.wide.reset(new unsigned char[2 * kWarpSize * kExchangeBytes]());
  const uint32_t lane = t->tid % kWarpSize;
  // The same parity as the shuffles: a lane cannot run two collectives ahead of its warp.
  unsigned char* slots = w.wide.get() + (t->shuffles++ & 1) * kWarpSize * kExchangeBytes;
  if (bytes > 0) std::memcpy(slots + lane * kExchangeBytes, in, bytes);
  w.at[lane] = what;
  t->wait = Wait::kWarp;
  if (++w.arrived < w.size) {
    yield(t);
  } else {
    w.arrived = 0;
    // Every lane must have called the same operation (a lane that skipped one is now at the
    // next: on a GPU the warp would exchange the wrong registers or hang).
    for (uint32_t l = 0; l < kWarpSize; ++l) {
      if (std::strcmp(w.at[l], what) != 0) {
        L.error(format("%s: lanes of warp %u of block %u are at different warp collectives: "
                       "lane %u at %s, lane %u at %s", L.cfg.kernel.c_str(), t->tid / kWarpSize,
                       t->block, l, w.at[l], lane, what));
        break;
      }
    }
    release(L, w.first, w.size, Wait::kWarp);
  }
  return slots;
}

void report_error(const std::string& msg) {
  Launch::State& L = launch();
  L.error(format("%s: %s: ", L.cfg.kernel.c_str(), thread_name(L, t_thread->id).c_str()) + msg);
}

// ---------------------------------------------------------------------------- launching

Launch::Launch(LaunchConfig cfg) : s_(std::make_unique<State>()) {
  s_->cfg = std::move(cfg);
  s_->dims.grid_dim.x = s_->cfg.grid;
  s_->dims.block_dim.x = s_->cfg.block;
  s_->racecheck = racecheck_enabled();
  const DebugOptions d = debug_options();
  if (!d.drop_barrier.empty()) {
    const size_t colon = d.drop_barrier.rfind(':');
    if (colon != std::string::npos) {
      s_->drop_file = d.drop_barrier.substr(0, colon);
      s_->drop_line = std::atoi(d.drop_barrier.c_str() + colon + 1);
    }
  }
  s_->smem_shortfall = d.smem_shortfall;
}

Launch::~Launch() = default;

void Launch::add_buffer(const char* name, const void* p, size_t bytes, bool writable) {
  if (p == nullptr) return;
  Region r;
  r.name = name;
  r.base = static_cast<const char*>(p);
  r.bytes = bytes;
  r.writable = writable;
  if (writable && s_->racecheck) {
    s_->global_shadows.emplace_back((bytes + 3) / 4);
    r.shadow = s_->global_shadows.back().data();
  }
  s_->globals.push_back(r);
}

namespace {

void run_barrier_free(Launch::State& L) {
  // No barriers: each thread runs to completion on the caller's stack, in order.
  SimThread t;
  t_thread = &t;
  L.blocks.resize(L.cfg.grid);
  for (uint32_t b = 0; b < L.cfg.grid; ++b) {
    t.block = b;
    t.block_idx.x = b;
    for (uint32_t i = 0; i < L.cfg.block; ++i) {
      t.tid = i;
      t.id = b * L.cfg.block + i;
      t.warp = i / kWarpSize;
      t.thread_idx.x = i;
      (*L.body)();
    }
  }
}

void report_stuck(Launch::State& L) {
  // Nothing can run, yet some threads wait: on a GPU the launch would hang.
  for (uint32_t b = 0; b < L.cfg.grid; ++b) {
    uint32_t n[5] = {0, 0, 0, 0, 0};
    const SimThread* example[5] = {};
    for (uint32_t i = b * L.cfg.block; i < (b + 1) * L.cfg.block; ++i) {
      const int k = int(L.threads[i].wait);
      if (n[k]++ == 0) example[k] = &L.threads[i];
    }
    if (n[int(Wait::kDone)] == L.cfg.block) continue;
    std::string msg = format("%s: deadlock (the launch would hang on a GPU) in block %u:",
                             L.cfg.kernel.c_str(), b);
    if (n[int(Wait::kBlock)]) {
      msg += format(" %u threads wait at __syncthreads (%s:%d);", n[int(Wait::kBlock)],
                    base_name(example[int(Wait::kBlock)]->bar_file).c_str(),
                    example[int(Wait::kBlock)]->bar_line);
    }
    if (n[int(Wait::kWarp)]) {
      msg += format(" %u threads wait in a warp collective (shuffle or wmma);",
                    n[int(Wait::kWarp)]);
    }
    if (n[int(Wait::kGrid)]) msg += format(" %u threads wait at a grid sync;", n[int(Wait::kGrid)]);
    if (n[int(Wait::kDone)]) msg += format(" %u threads have exited", n[int(Wait::kDone)]);
    L.error(msg);
    return;
  }
}

// Guard pages the process can still afford: each splits the stack mapping, adding up to two
// entries to the kernel's per-process map count (vm.max_map_count, 65530 by default), and
// malloc needs some too. Stacks beyond the budget keep the canary only.
size_t guard_page_budget() {
  static const long max_maps = [] {
    long v = 65530;
    if (FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
      if (std::fscanf(f, "%ld", &v) != 1) v = 65530;
      std::fclose(f);
    }
    return v;
  }();
  long used = 0;
  if (FILE* f = std::fopen("/proc/self/maps", "r")) {
    for (int c; (c = std::fgetc(f)) != EOF;) used += c == '\n';
    std::fclose(f);
  } else {
    used = max_maps / 2;  // unknown: be modest
  }
  const long headroom = 4096;
  const long left = max_maps - used - headroom;
  return left > 0 ? size_t(left / 2) : 0;
}

// SIGSEGV on a guard page of this thread's fiber stacks: names the fiber, then lets the fault
// kill the process as SIGSEGV (the default action, re-armed, runs when the faulting
// instruction repeats). Any other SIGSEGV goes to the handler that was installed before.
struct sigaction g_prev_segv;

void guard_page_handler(int sig, siginfo_t* info, void* uctx) {
  const StackMap& m = t_stacks;
  const char* a = static_cast<const char*>(info->si_addr);
  if (m.base != nullptr && a >= m.base && a < m.base + m.guarded * m.slot &&
      size_t(a - m.base) % m.slot < m.guard) {
    const size_t id = size_t(a - m.base) / m.slot;
    char msg[512];
    const int len = std::snprintf(
        msg, sizeof msg,
        "fastrnn cuda_sim: %s: block %zu thread %zu overflowed its %zu-byte fiber stack "
        "(guard page hit); the process stops here\n",
        m.kernel, id / m.block_dim, id % m.block_dim, kStackBytes);
    if (len > 0) {
      ssize_t ignored = write(2, msg, size_t(len) < sizeof msg ? size_t(len) : sizeof msg - 1);
      (void)ignored;
    }
    signal(SIGSEGV, SIG_DFL);
    return;
  }
  if (g_prev_segv.sa_flags & SA_SIGINFO) {
    if (g_prev_segv.sa_sigaction != nullptr) return g_prev_segv.sa_sigaction(sig, info, uctx);
  } else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN &&
             g_prev_segv.sa_handler != nullptr) {
    return g_prev_segv.sa_handler(sig);
  }
  signal(SIGSEGV, SIG_DFL);
}

// Installs guard_page_handler once (on an alternate stack: the faulting one is exhausted).
void install_guard_page_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_sigaction = &guard_page_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_prev_segv);
  });
}

void run_fibers(Launch::State& L) {
  const uint32_t bt = L.cfg.block, n = L.cfg.grid * bt;
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  const size_t stack_bytes = (kStackBytes + page - 1) / page * page;
  const size_t slot = page + stack_bytes;  // [guard page][stack]
  const size_t map_bytes = size_t(n) * slot;
  void* map = mmap(nullptr, map_bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (map == MAP_FAILED) {
    L.error(format("%s: cannot map %zu bytes of fiber stacks for %u threads",
                   L.cfg.kernel.c_str(), map_bytes, n));
    return;
  }
  char* stacks = static_cast<char*>(map);
  size_t guarded = std::min<size_t>(n, guard_page_budget());
  for (size_t i = 0; i < guarded; ++i) {
    if (mprotect(stacks + i * slot, page, PROT_NONE) != 0) guarded = i;  // out of map entries
  }
  install_guard_page_handler();
  // The handler's own stack, for this OS thread while the fibers run.
  std::vector<char> alt(size_t(SIGSTKSZ) > 64 * 1024 ? size_t(SIGSTKSZ) : 64 * 1024);
  stack_t ss = {}, prev_ss = {};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, &prev_ss);
  const StackMap prev_stacks = t_stacks;
  t_stacks = StackMap{stacks, slot, page, guarded, bt, L.cfg.kernel.c_str()};
  L.threads.resize(n);
  const uint32_t warps_per_block = (bt + kWarpSize - 1) / kWarpSize;
  L.warps.resize(size_t(L.cfg.grid) * warps_per_block);
  for (uint32_t b = 0; b < L.cfg.grid; ++b) {
    for (uint32_t w = 0; w < warps_per_block; ++w) {
      Warp& warp = L.warps[b * warps_per_block + w];
      warp.first = b * bt + w * kWarpSize;
      warp.size = std::min<uint32_t>(kWarpSize, bt - w * kWarpSize);
    }
  }
  for (uint32_t i = 0; i < n; ++i) {
    SimThread& t = L.threads[i];
    t.id = i;
    t.block = i / bt;
    t.tid = i % bt;
    t.warp = t.block * warps_per_block + t.tid / kWarpSize;
    t.thread_idx.x = t.tid;
    t.block_idx.x = t.block;
    t.stack = stacks + size_t(i) * slot + page;
    std::memcpy(t.stack, &kCanary, sizeof(kCanary));
    make_context(&t.ctx, t.stack, stack_bytes, &fiber_main);
  }
  size_t done = 0;
  while (done < n) {
    bool progress = false;
    for (const Warp& w : L.warps) {
      // Run the warp's lanes round-robin until all of them wait beyond a shuffle.
      for (bool ran = true; ran;) {
        ran = false;
        for (uint32_t i = w.first; i < w.first + w.size; ++i) {
          SimThread& t = L.threads[i];
          if (t.wait != Wait::kNone) continue;
          t_thread = &t;
          switch_to(&L.scheduler, &t.ctx);
          ran = progress = true;
          if (t.wait == Wait::kDone) {
            ++done;
            uint64_t canary;
            std::memcpy(&canary, t.stack, sizeof(canary));
            if (canary != kCanary) {
              L.error(format("%s: %s overflowed its %zu-byte fiber stack",
                             L.cfg.kernel.c_str(), thread_name(L, t.id).c_str(), kStackBytes));
            }
          }
        }
      }
    }
    if (!progress) {
      report_stuck(L);
      break;
    }
  }
  t_stacks = prev_stacks;
  sigaltstack(&prev_ss, nullptr);
  munmap(map, map_bytes);
}

}  // namespace

void Launch::run(const std::function<void()>& body) {
  State& L = *s_;
  L.body = &body;
  if (!L.cfg.barrier_free) {
    L.blocks.resize(L.cfg.grid);
    const size_t smem = L.cfg.smem_bytes > L.smem_shortfall ? L.cfg.smem_bytes - L.smem_shortfall : 0;
    for (uint32_t b = 0; b < L.cfg.grid; ++b) {
      Block& blk = L.blocks[b];
      blk.smem.resize((smem + sizeof(SmemLine) - 1) / sizeof(SmemLine));
      blk.region.name = "dynamic shared memory";
      blk.region.base = reinterpret_cast<const char*>(blk.smem.data());
      blk.region.bytes = smem;
      blk.region.shared = true;
      blk.region.writable = true;
      blk.region.block = int(b);
      if (L.racecheck) {
        blk.shadow.resize((smem + 3) / 4);
        blk.region.shadow = blk.shadow.data();
      }
    }
  }
  Launch::State* prev_launch = t_launch;
  SimThread* prev_thread = t_thread;
  t_launch = &L;
  if (L.cfg.barrier_free) run_barrier_free(L);
  else run_fibers(L);
  t_launch = prev_launch;
  t_thread = prev_thread;
  if (L.errors == 0) return;
  std::string msg = format("fastrnn cuda_sim: %zu error(s) in %s (grid %u x %u threads, %zu bytes of "
                           "dynamic shared memory per block):",
                           L.errors, L.cfg.kernel.c_str(), L.cfg.grid, L.cfg.block,
                           L.cfg.smem_bytes);
  for (const std::string& m : L.messages) msg += "\n  " + m;
  if (L.errors > L.messages.size()) {
    msg += format("\n  ... and %zu more", L.errors - L.messages.size());
  }
  throw std::runtime_error(msg);
}

// ---------------------------------------------------------------------------- options

void set_debug_options(const DebugOptions& o) {
  std::lock_guard<std::mutex> lock(g_debug_mu);
  g_debug = o;
}

DebugOptions debug_options() {
  std::lock_guard<std::mutex> lock(g_debug_mu);
  return g_debug;
}

bool racecheck_enabled() {
  const char* env = std::getenv("FASTRNN_SIM_RACECHECK");
  return env == nullptr || std::strcmp(env, "0") != 0;
}

}  // namespace fastrnn::simt
