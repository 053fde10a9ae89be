// The device as the host code plans for it on a GPU (rnn_cuda.cpp host_device: cudaDeviceProp,
// device attributes and the compiled kernels' register counts), as one flat list of integers,
// so that the cost model's predictions on a GPU (cuda_plan_ops.cpp _cuda_cost_model, called by
// fastrnn/_cuda_choice.py) plan on exactly the device make_plan launches on -- its SMs, opt-in
// shared memory, registers -- and take only the per-architecture estimates from cost_model.h's
// table. Pure C++ (no CUDA, no torch).
#pragma once

#include <cstdint>
#include <vector>

#include "plan_types.h"

namespace fastrnn::plan {

struct HostDevice {
  Device dev;
  int kpt_regs[kNumKptFloat] = {};  // registers of the older family's kernels, per kpt_at(i)
  int tiled_regs = 0;               // the tiled kernels' largest register count
};

// [sm_count, smem_per_block, smem_optin, smem_per_sm, regs_per_sm, max_threads_per_sm,
//  max_blocks_per_sm, cooperative_launch, clock_khz, cc_major, cc_minor, l2_bytes, tiled_regs,
//  kpt_regs x kNumKptFloat (float64: the last one 0)]
constexpr int kHostDeviceFields = 13 + kNumKptFloat;

inline std::vector<int64_t> host_device_fields(const HostDevice& h) {
  const Device& d = h.dev;
  std::vector<int64_t> f = {d.sm_count, d.smem_per_block, d.smem_optin, d.smem_per_sm,
                            d.regs_per_sm, d.max_threads_per_sm, d.max_blocks_per_sm,
                            d.cooperative_launch ? 1 : 0, d.clock_khz, d.cc_major, d.cc_minor,
                            d.l2_bytes, h.tiled_regs};
  for (int r : h.kpt_regs) f.push_back(r);
  return f;
}

// The inverse of host_device_fields (f has kHostDeviceFields entries), named `name`.
inline HostDevice host_device_from_fields(const int64_t* f, const char* name) {
  HostDevice h;
  Device& d = h.dev;
  d.sm_count = int(f[0]);
  d.smem_per_block = int(f[1]);
  d.smem_optin = int(f[2]);
  d.smem_per_sm = int(f[3]);
  d.regs_per_sm = int(f[4]);
  d.max_threads_per_sm = int(f[5]);
  d.max_blocks_per_sm = int(f[6]);
  d.cooperative_launch = f[7] != 0;
  d.clock_khz = int(f[8]);
  d.cc_major = int(f[9]);
  d.cc_minor = int(f[10]);
  d.l2_bytes = int(f[11]);
  d.name = name;
  h.tiled_regs = int(f[12]);
  for (int i = 0; i < kNumKptFloat; ++i) h.kpt_regs[i] = int(f[13 + i]);
  return h;
}

}  // namespace fastrnn::plan
