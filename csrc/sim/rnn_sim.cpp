// The cuda_sim backend: fastrnn_cuda_sim::rnn_forward / rnn_backward on CPU tensors run the
// CUDA host code (../cuda/recurrence_host.h, the same as the GPU's) with the kernels
// executed by the SIMT simulation (sim_kernels.cpp), for a simulated device
// (sim_device.h). A debugging and verification backend: slow by nature.
#include <torch/library.h>

#include <cstdlib>
#include <string>

#include "../cuda/recurrence_host.h"
#include "sim_device.h"
#include "sim_kernels.h"
#include "simt_runtime.h"

namespace fastrnn {
namespace {

// FASTRNN_SIM_DEVICE (default h100).
const sim::SimDevice& sim_device() {
  const char* env = std::getenv("FASTRNN_SIM_DEVICE");
  const std::string_view name = env && *env ? env : "h100";
  const sim::SimDevice* d = sim::find_sim_device(name);
  if (d == nullptr) {
    std::string names;
    for (const sim::SimDevice& k : sim::kSimDevices) names += std::string(names.empty() ? "" : ", ") + k.name;
    TORCH_CHECK_VALUE(false, "fastrnn: FASTRNN_SIM_DEVICE must be one of ", names, ", got '",
                      std::string(name), "'");
  }
  return *d;
}

struct SimTarget {
  struct Guard {
    explicit Guard(const at::Device&) {}
  };
  static constexpr int kTarget = 1;

  // CudaTarget::plan with the simulated device's properties (sim_device.h, the clock and
  // compute capability the cost model ranks with included). The register counts of the
  // kernels are those of the plan's model (launch_plan.h regs_model: the __launch_bounds__
  // cap), and the occupancy check is the plan's own blocks_per_sm. mma: the model's 16-bit
  // type (launch_plan.h MmaType), for the tensor-core tiles.
  static plan::Plan plan(const cost::Shape& shape, int mma) {
    return plan::make_plan(shape, cost::sim_plan_device(sim_device()), nullptr,
                           cuda_host::forced_path(), /*tiled_regs=*/0, mma);
  }

  template <typename T>
  static void fwd_persistent(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p) {
    sim_kernels::launch_fwd_persistent<T>(a, p);
  }
  template <typename T>
  static void bwd_persistent(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p) {
    sim_kernels::launch_bwd_persistent<T>(a, p);
  }
  template <typename T>
  static void fwd_tiled(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p) {
    sim_kernels::launch_fwd_tiled<T>(a, p);
  }
  template <typename T>
  static void bwd_tiled(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p) {
    sim_kernels::launch_bwd_tiled<T>(a, p);
  }
  template <typename T>
  static void fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t,
                            int64_t B, int64_t H, bool relu) {
    sim_kernels::launch_fwd_pointwise<T>(y_t, h_prev, lengths, t, B, H, relu);
  }
  template <typename T>
  static void bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                            const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu) {
    sim_kernels::launch_bwd_pointwise<T>(dz_t, carry_next, dy_t, y_t, carry, lengths, t, B, H,
                                         relu);
  }
};

// Planted-bug switches for tests/test_cuda_sim_checker.py (process-wide; "" and 0 reset).
void set_debug(std::string_view drop_barrier, int64_t smem_shortfall) {
  TORCH_CHECK_VALUE(smem_shortfall >= 0, "fastrnn: smem_shortfall must be >= 0, got ",
                    smem_shortfall);
  simt::DebugOptions o;
  o.drop_barrier = std::string(drop_barrier);
  o.smem_shortfall = size_t(smem_shortfall);
  simt::set_debug_options(o);
}

// The simulated device: [sm_count, smem_per_block, smem_per_block_optin, static_smem,
// smem_per_sm, regs_per_sm, max_threads_per_sm, max_blocks_per_sm, cooperative_launch].
std::vector<int64_t> device_properties() {
  const sim::SimDevice& d = sim_device();
  return {d.sm_count, d.smem_per_block, d.smem_per_block_optin, d.static_smem, d.smem_per_sm,
          d.regs_per_sm, d.max_threads_per_sm, d.max_blocks_per_sm, d.cooperative_launch};
}

std::string device_name() { return sim_device().description; }

}  // namespace

TORCH_LIBRARY(fastrnn_cuda_sim, m) {
  m.def(kRnnForwardSchema);
  m.def(kRnnBackwardSchema);
  m.def("_set_debug(str drop_barrier='', int smem_shortfall=0) -> ()", &set_debug);
  m.def("_device_properties() -> int[]", &device_properties);
  m.def("_device_name() -> str", &device_name);
}

TORCH_LIBRARY_IMPL(fastrnn_cuda_sim, CPU, m) {
  m.impl("rnn_forward", &cuda_host::rnn_forward<SimTarget>);
  m.impl("rnn_backward", &cuda_host::rnn_backward<SimTarget>);
}

}  // namespace fastrnn
