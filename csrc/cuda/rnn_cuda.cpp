// TORCH_LIBRARY_IMPL(fastrnn, CUDA): the GPU target of the shared host code
// (recurrence_host.h: checks, GEMMs, plan, launch record). What is GPU-specific lives
// here: the device's properties and the compiled kernels' attributes for the plan, the
// occupancy check of a grid plan, the current stream.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <array>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "host_device.h"
#include "kernels.h"
#include "launch_plan.h"
#include "recurrence_host.h"

namespace fastrnn {
namespace {

namespace ck = cuda_kernels;

struct KernelAttrs {
  std::array<int, plan::kNumKptFloat> regs{};  // per kpt, launch_plan order
  int static_smem = 0;                         // bytes, the largest of the kernels
  int tiled_regs = 0;                          // the tiled kernels' largest register count
  int tiled_static_smem = 0;
  int clock_khz = 0;  // the device's peak SM clock and L2 size, for the cost model
  int l2_bytes = 0;   //   (cudaDeviceProp no longer carries the clock in CUDA 13)
};

// Attributes of the compiled kernels on one device, and the device attributes the cost
// model reads, once per device.
KernelAttrs kernel_attrs(int device, int elem_size, bool backward) {
  static std::mutex mu;
  static std::unordered_map<int, KernelAttrs> cache;
  const int key = (device * 16 + elem_size) * 2 + (backward ? 1 : 0);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it == cache.end()) {
    KernelAttrs a;
    a.static_smem = backward ? ck::bwd_kernel_attrs(elem_size, a.regs.data())
                             : ck::fwd_kernel_attrs(elem_size, a.regs.data());
    cudaDeviceProp prop;
    C10_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    a.tiled_static_smem = ck::tiled_kernel_attrs(elem_size, backward,
                                                 int(prop.sharedMemPerBlockOptin), &a.tiled_regs);
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&a.clock_khz, cudaDevAttrClockRate, device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&a.l2_bytes, cudaDevAttrL2CacheSize, device));
    it = cache.emplace(key, a).first;
  }
  return it->second;
}

// The device as the host plans for it (the one place: CudaTarget::plan launches on it, and
// the measured choice's predictions read it through _cuda_host_device): the current device's
// properties, the compiled kernels' registers and static shared memory for this compute type
// and direction.
plan::HostDevice host_device(int elem_size, bool backward) {
  const cudaDeviceProp* prop = at::cuda::getCurrentDeviceProperties();
  const int device = at::cuda::current_device();
  const KernelAttrs attrs = kernel_attrs(device, elem_size, backward);
  plan::HostDevice h;
  plan::Device& dev = h.dev;
  dev.sm_count = prop->multiProcessorCount;
  // Dynamic shared memory up to the default per-block limit (no opt-in needed).
  dev.smem_per_block = int(prop->sharedMemPerBlock) - attrs.static_smem;
  // The tiled kernels opt in to the device's larger per-block limit (kernel_attrs set the
  // attribute); dynamic memory is what their static shared memory leaves of it.
  dev.smem_optin = int(prop->sharedMemPerBlockOptin) - attrs.tiled_static_smem;
  dev.smem_per_sm = int(prop->sharedMemPerMultiprocessor);
  dev.regs_per_sm = prop->regsPerMultiprocessor;
  dev.max_threads_per_sm = prop->maxThreadsPerMultiProcessor;
  dev.max_blocks_per_sm = prop->maxBlocksPerMultiProcessor;
  dev.cooperative_launch = prop->cooperativeLaunch != 0;
  // What the cost model (cost_model.h device_spec) ranks the plans with: the name picks its
  // estimates; the clock, the compute capability and the L2 size are this device's.
  dev.name = prop->name;
  dev.clock_khz = attrs.clock_khz;
  dev.l2_bytes = attrs.l2_bytes;
  dev.cc_major = prop->major;
  dev.cc_minor = prop->minor;
  for (int i = 0; i < plan::kNumKptFloat; ++i) h.kpt_regs[i] = attrs.regs[i];
  h.tiled_regs = attrs.tiled_regs;
  return h;
}

// _cuda_host_device: host_device on the current GPU as host_device.h fields.
std::vector<int64_t> cuda_host_device(int64_t elem_size, bool backward) {
  TORCH_CHECK_VALUE(elem_size == 4 || elem_size == 8,
                    "fastrnn: elem_size must be 4 (float32 compute) or 8 (float64), got ",
                    elem_size);
  return plan::host_device_fields(host_device(int(elem_size), backward));
}

struct CudaTarget {
  using Guard = c10::cuda::CUDAGuard;
  static constexpr int kTarget = 0;

  // The plan for this shape on the current device; a grid plan is only kept when the
  // runtime's occupancy calculator confirms that all of its blocks are co-resident.
  // mma: the model's 16-bit type (launch_plan.h MmaType), for the tensor-core tiles.
  static plan::Plan plan(const cost::Shape& shape, int mma) {
    const int elem_size = cost::compute_elem(shape.elem_size);
    const bool backward = shape.backward;
    const plan::HostDevice host = host_device(elem_size, backward);
    const plan::Device& dev = host.dev;
    const plan::Force force = cuda_host::forced_path();
    plan::Plan p = plan::make_plan(shape, dev, host.kpt_regs, force, host.tiled_regs, mma);
    // A plain launch (one column tile) needs one block per SM; a cooperative one all.
    const auto tiled_runs = [&](const plan::Plan& q) {
      const int occ = ck::tiled_occupancy(elem_size, backward, q);
      return occ >= 1 && (q.col_tiles == 1 || int64_t(occ) * dev.sm_count >= q.grid);
    };
    if (p.path == plan::kTiled && !tiled_runs(p)) {
      // The model's blocks per SM were optimistic for this kernel: re-plan with the runtime's
      // occupancy of every tiled configuration (the next best plan, not straight to gemm).
      const plan::MeasuredOccupancy measured = [&](const plan::Plan& q) {
        return ck::tiled_occupancy(elem_size, backward, q);
      };
      p = plan::make_plan(shape, dev, host.kpt_regs, force, host.tiled_regs, mma, &measured);
    }
    if (p.path == plan::kTiled) {
      if (!tiled_runs(p)) p = plan::Plan{};  // kGemmFallback
    } else if (p.path != plan::kGemmFallback) {
      const int occ = backward ? ck::bwd_occupancy(elem_size, p) : ck::fwd_occupancy(elem_size, p);
      if (occ < 1 || (p.grid > 1 && int64_t(occ) * dev.sm_count < p.grid)) {
        p = plan::Plan{};  // kGemmFallback
      }
    }
    return p;
  }

  template <typename T>
  static void fwd_persistent(const ck::FwdArgs<T>& a, const plan::Plan& p) {
    ck::launch_fwd_persistent<T>(a, p, at::cuda::getCurrentCUDAStream());
  }
  template <typename T>
  static void bwd_persistent(const ck::BwdArgs<T>& a, const plan::Plan& p) {
    ck::launch_bwd_persistent<T>(a, p, at::cuda::getCurrentCUDAStream());
  }
  template <typename T>
  static void fwd_tiled(const ck::FwdArgs<T>& a, const plan::Plan& p) {
    ck::launch_fwd_tiled<T>(a, p, at::cuda::getCurrentCUDAStream());
  }
  template <typename T>
  static void bwd_tiled(const ck::BwdArgs<T>& a, const plan::Plan& p) {
    ck::launch_bwd_tiled<T>(a, p, at::cuda::getCurrentCUDAStream());
  }
  template <typename T>
  static void fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t,
                            int64_t B, int64_t H, bool relu) {
    ck::launch_fwd_pointwise<T>(y_t, h_prev, lengths, t, B, H, relu,
                                at::cuda::getCurrentCUDAStream());
  }
  template <typename T>
  static void bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                            const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu) {
    ck::launch_bwd_pointwise<T>(dz_t, carry_next, dy_t, y_t, carry, lengths, t, B, H, relu,
                                at::cuda::getCurrentCUDAStream());
  }
};

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  // CUDA builds only: the current GPU as the plan sees it (fastrnn/_cuda_choice.py).
  m.def("_cuda_host_device(int elem_size, bool backward) -> int[]", &cuda_host_device);
}

TORCH_LIBRARY_IMPL(fastrnn, CUDA, m) {
  m.impl("rnn_forward", &cuda_host::rnn_forward<CudaTarget>);
  m.impl("rnn_backward", &cuda_host::rnn_backward<CudaTarget>);
}

}  // namespace fastrnn
