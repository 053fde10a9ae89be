// The GPUs the simulation can pretend to be (FASTRNN_SIM_DEVICE, default h100): the
// properties the CUDA host code reads from cudaDeviceProp for the launch plan
// and the cost model that ranks it (../cuda/rnn_cuda.cpp, CudaTarget::plan), from the vendors' published specifications.
// static_smem is what the toolchain reserves per block of the persistent kernels (the
// cubins built here report 1024 bytes for sm_90 and none for sm_80, cuobjdump
// --dump-resource-usage); the plan leaves it out of the dynamic tile, as on a GPU.
#pragma once

#include <string_view>

namespace fastrnn::sim {

struct SimDevice {
  const char* name;
  const char* description;
  int sm_count;
  int smem_per_block;        // cudaDeviceProp::sharedMemPerBlock (no opt-in)
  int smem_per_block_optin;  // sharedMemPerBlockOptin (the tiled kernels opt in)
  int static_smem;
  int smem_per_sm;
  int regs_per_sm;
  int max_threads_per_sm;
  int max_blocks_per_sm;
  bool cooperative_launch;
  // The rest of what the cost model reads from a GPU (cudaDeviceGetAttribute): the peak SM
  // clock in kHz (the boost clock of the specification), the compute capability, the L2 size.
  int clock_khz;
  int cc_major;
  int cc_minor;
  int l2_bytes;
};

inline constexpr SimDevice kSimDevices[] = {
    {"h100", "NVIDIA H100 SXM5 (sm_90)", 132, 48 * 1024, 227 * 1024, 1024, 228 * 1024, 65536,
     2048, 32, true, 1980000, 9, 0, 50 * 1024 * 1024},
    {"a100", "NVIDIA A100 SXM4 (sm_80)", 108, 48 * 1024, 163 * 1024, 0, 164 * 1024, 65536, 2048,
     32, true, 1410000, 8, 0, 40 * 1024 * 1024},
};

// nullptr when the name is unknown.
inline const SimDevice* find_sim_device(std::string_view name) {
  for (const SimDevice& d : kSimDevices) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

}  // namespace fastrnn::sim
