// fastrnn_cuda_sim::_checker_selftest: tiny kernels that each break one rule the SIMT
// simulation enforces beyond races and bounds (tests/test_cuda_sim_checker.py shows the
// report for each). They exist only in the simulation; nvcc never sees them.
#define FASTRNN_SIMT_HOST 1

#include <torch/library.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "../cuda/simt.h"
#include "simt_runtime.h"

namespace fastrnn::sim_kernels {
namespace {

__global__ void divergent_barrier(simt::ptr<float> out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.f;
}

__global__ void exit_before_barrier(simt::ptr<float> out) {
  if (threadIdx.x == 0) return;  // the others wait for it forever
  __syncthreads();
  out[threadIdx.x] = 1.f;
}

__global__ void ldg_of_written(simt::ptr<float> out) {
  out[threadIdx.x] = 1.f;
  out[threadIdx.x] = __ldg(simt::ptr<const float>(out) + threadIdx.x) + 1.f;
}

__global__ void store_to_read_only(simt::ptr<float> in) { in[threadIdx.x] = 0.f; }

__global__ void grid_sync_not_cooperative(simt::ptr<float> out) {
  out[threadIdx.x] = 1.f;
  simt::grid_sync();
}

__global__ void partial_warp_shuffle(simt::ptr<float> out) {
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}

// One warp-level matrix product of a 16 x 16 bf16 tile (the first 128 floats of the
// buffer) with itself into floats [256, 512) of the buffer. skip_lane: a lane that skips the
// mma (a divergent collective); ldm: the leading dimension of the loads (wmma needs a
// multiple of 8 for 16-bit types); odd_lane: a lane whose load of B names another tile
// (odd_ldm 0: a pointer 16 elements on, else that ldm): arguments the hardware needs
// warp-uniform.
template <int kSkipLane, unsigned kLdm, int kOddLane = -1, unsigned kOddLdm = 0>
__global__ void wmma_tile(simt::ptr<float> buf) {
  namespace wmma = simt::wmma;
  const simt::ptr<const simt::bf16> a = simt::reinterpret<const simt::bf16>(buf);
  wmma::fragment<wmma::matrix_a, 16, 16, 16, simt::bf16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, simt::bf16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
  wmma::fill_fragment(acc, 0.0f);
  wmma::load_matrix_sync(fa, a, kLdm);
  const bool odd = int(threadIdx.x) == kOddLane;
  wmma::load_matrix_sync(fb, odd && kOddLdm == 0 ? a + 16 : a, odd && kOddLdm ? kOddLdm : kLdm);
  if (int(threadIdx.x) != kSkipLane) wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(buf + 256, acc, 16, wmma::mem_row_major);
}

// A fiber stack overflow (the runtime's guard page and canary, simt_runtime.cpp): thread 63
// recurses through ~128 KiB of frames, twice its 64 KiB stack. Without a guard page it would
// run on through the stacks of threads 62 and 61 (already exited: nothing notices); with one
// it faults at the first byte below its stack.
__attribute__((noinline)) int deep_frames(int n) {
  volatile char pad[1024];
  pad[0] = char(n);
  pad[sizeof pad - 1] = char(n >> 8);
  return n == 0 ? pad[0] : deep_frames(n - 1) + pad[sizeof pad - 1];
}

__global__ void stack_overflow(simt::ptr<float> out) {
  out[threadIdx.x] = threadIdx.x == 63 ? float(deep_frames(128)) : 0.f;
}

// An overflow that ended in the stack's last bytes (above the guard page): the canary the
// runtime checks when the fiber exits is overwritten.
__global__ void stack_canary_clobbered(simt::ptr<float> out) {
  if (threadIdx.x == 5) std::memset(simt::fiber_stack_bottom(), 0, 8);
  out[threadIdx.x] = 1.f;
}

// Runs kernel `name` on a 64-float buffer (512 for the wmma kernels), 32-byte aligned as
// device memory is (cudaMalloc: 256); returns the simulation's report ("" if none).
// wmma_unaligned_buffer: the wmma kernel on a buffer that starts 16 bytes past that (its tiles
// sit at offset 0 of the buffer, but their addresses are not 32-byte aligned).
std::string checker_selftest(std::string_view name) {
  const bool wmma = name.substr(0, 5) == "wmma_";
  struct alignas(32) Line {
    float f[8];
  };
  const bool unaligned = name == "wmma_unaligned_buffer";
  std::vector<Line> storage((wmma ? 512 : 64) / 8 + (unaligned ? 1 : 0), Line{});
  struct {
    float* ptr;
    size_t n;
    float* data() const { return ptr; }
    size_t size() const { return n; }
  } buf{storage[0].f + (unaligned ? 4 : 0), size_t(wmma ? 512 : 64)};
  simt::LaunchConfig cfg;
  cfg.kernel = std::string(name);
  cfg.grid = 1;
  cfg.block = 64;
  bool writable = true;
  void (*kernel)(simt::ptr<float>) = nullptr;
  if (name == "divergent_barrier") kernel = &divergent_barrier;
  else if (name == "exit_before_barrier") kernel = &exit_before_barrier;
  else if (name == "ldg_of_written") kernel = &ldg_of_written;
  else if (name == "grid_sync_not_cooperative") kernel = &grid_sync_not_cooperative;
  else if (name == "store_to_read_only") kernel = &store_to_read_only, writable = false;
  else if (name == "partial_warp_shuffle") kernel = &partial_warp_shuffle, cfg.block = 16;
  else if (name == "wmma_tile" || unaligned) kernel = &wmma_tile<-1, 16>, cfg.block = 32;
  else if (name == "wmma_lane_skips_mma") kernel = &wmma_tile<5, 16>, cfg.block = 32;
  else if (name == "wmma_bad_ldm") kernel = &wmma_tile<-1, 12>, cfg.block = 32;
  else if (name == "wmma_lane_pointer") kernel = &wmma_tile<-1, 16, 3, 0>, cfg.block = 32;
  else if (name == "wmma_lane_ldm") kernel = &wmma_tile<-1, 16, 3, 24>, cfg.block = 32;
  else if (name == "stack_overflow") kernel = &stack_overflow;
  else if (name == "stack_canary_clobbered") kernel = &stack_canary_clobbered;
  TORCH_CHECK_VALUE(kernel != nullptr, "fastrnn: no checker self-test named '", std::string(name),
                    "'");
  simt::Launch launch(cfg);
  launch.add_buffer("buf", buf.data(), buf.size() * sizeof(float), writable);
  try {
    launch.run([&] { kernel(simt::global(buf.data())); });
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn_cuda_sim, m) {
  m.def("_checker_selftest(str name) -> str", &checker_selftest);
}

}  // namespace fastrnn::sim_kernels
