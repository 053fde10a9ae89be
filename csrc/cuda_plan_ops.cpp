// fastrnn::_cuda_launch_plan: the CUDA path selection (csrc/cuda/launch_plan.h)
// exposed as an op. Compiled in every build, with or without CUDA, so that CI machines
// without a GPU unit-test the same function the CUDA host code calls at run time.
// fastrnn::_last_cuda_plan: the record of the last CUDA or simulated CUDA launch on this
// thread (csrc/cuda/last_plan.h), read by fastrnn.backends.last_cuda_plan().
#include <ATen/core/ivalue.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cuda/candidates.h"
#include "cuda/cost_model.h"
#include "cuda/host_device.h"
#include "cuda/last_plan.h"
#include "cuda/launch_plan.h"
#include "cuda/path_override.h"

namespace fastrnn {

namespace plan {
namespace {
thread_local bool has_record = false;
thread_local LaunchRecord last_record;
// path_override.h: the per-thread path a caller forces (the measured choice).
thread_local bool has_override = false;
thread_local Force override_force = kAuto;
}  // namespace

bool path_override(Force* out) {
  if (has_override) *out = override_force;
  return has_override;
}

void record_launch(const LaunchRecord& r) {
  last_record = r;
  has_record = true;
}

std::vector<int64_t> last_launch_fields() {
  if (!has_record) return {};
  const LaunchRecord& r = last_record;
  return {r.target, r.backward, int(r.path), r.blocks, r.threads_per_block, r.tiles_per_step,
          r.kpt, r.ks, r.rows_per_tile, r.smem_bytes, r.launches, r.steps, r.batch, r.hidden,
          r.elem_size, r.tile_cols, r.micro_r, r.micro_c, r.grid_barrier, r.mma};
}
}  // namespace plan

namespace {

// Returns [path, grid, threads, kpt, ks, rows_per_tile, smem_bytes, blocks_per_sm, resident,
// tile_rows, tile_cols, lanes_r, micro_r, row_tiles, col_tiles, stride, k_chunk, micro_c, mma];
// path: 0 single block, 1 cooperative grid, 2 cuBLAS fallback, 3 tiled. backward=True plans
// the BPTT kernels (the old family has no resident mode). smem_optin: the opt-in per-block
// limit the tiled kernels may use (0: none, smem_per_block). The plan is ranked by the cost
// model (cost_model.h) for T steps (packed: lengths given) on `device`: a modelled GPU (h100,
// h200, a100) or a GPU's name; clock_khz, cc_major/cc_minor and l2_bytes (0: the device's)
// and the other arguments replace its properties, as the host reads them on a GPU. mma: the
// model's 16-bit type (launch_plan.h MmaType: 1 float16, 2 bfloat16) with elem_size 4, whose
// tensor-core tiles the plan weighs (a float16/bfloat16 model, as the host plans it).
// occupancy_smem_limit: plan with a measured occupancy of the tiled configurations (what
// CudaTarget::plan re-plans with when the model's figure proved optimistic) in which no block
// above this many bytes of shared memory fits; 0: the model's occupancy.
std::vector<int64_t> cuda_launch_plan(int64_t B, int64_t H, int64_t elem_size, int64_t sm_count,
                                      int64_t smem_per_block,
                                      at::OptionalIntArrayRef regs_per_kpt,
                                      std::string_view force, int64_t regs_per_sm,
                                      bool cooperative_launch, bool backward,
                                      int64_t smem_optin, int64_t T, std::string_view device,
                                      bool packed, int64_t clock_khz, int64_t cc_major,
                                      int64_t cc_minor, int64_t l2_bytes, int64_t mma,
                                      int64_t occupancy_smem_limit) {
  TORCH_CHECK_VALUE(elem_size == 4 || elem_size == 8,
                    "fastrnn: elem_size must be 4 (float32 compute) or 8 (float64), got ",
                    elem_size);
  TORCH_CHECK_VALUE(sm_count > 0 && smem_per_block > 0 && regs_per_sm > 0,
                    "fastrnn: sm_count, smem_per_block and regs_per_sm must be positive");
  plan::Force f = plan::kAuto;
  TORCH_CHECK_VALUE(plan::parse_force(force, &f),
                    "fastrnn: force must be auto, single, grid, gemm, tiled or tiled_mma, got '",
                    std::string(force), "'");
  std::vector<int> regs;
  if (regs_per_kpt.has_value()) {
    const int n = plan::num_kpt(int(elem_size));
    TORCH_CHECK_VALUE(int64_t(regs_per_kpt->size()) == n, "fastrnn: regs_per_kpt must have ",
                      n, " entries (one per kpt), got ", regs_per_kpt->size());
    regs.assign(regs_per_kpt->begin(), regs_per_kpt->end());
  }
  TORCH_CHECK_VALUE(T > 0, "fastrnn: T must be positive, got ", T);
  TORCH_CHECK_VALUE(clock_khz >= 0 && cc_major >= 0 && cc_minor >= 0 && l2_bytes >= 0,
                    "fastrnn: clock_khz, cc_major, cc_minor and l2_bytes must be >= 0");
  // A modelled device (h100, h200, a100) brings its sim_device.h properties; any other name
  // (a GPU's cudaDeviceProp::name) the properties of the entry it matches, under its own name,
  // so that it picks the estimates as on that GPU. Given properties replace either.
  const std::string device_name(device);
  const cost::DeviceEstimates* modelled = cost::find_device(device);
  const cost::DeviceEstimates* matched = cost::match_device(device);
  plan::Device dev = cost::plan_device(modelled ? *modelled
                                                : (matched ? *matched : cost::kOtherDevice));
  if (!modelled) dev.name = device_name.c_str();
  if (clock_khz > 0) dev.clock_khz = int(clock_khz);
  if (cc_major > 0) dev.cc_major = int(cc_major), dev.cc_minor = int(cc_minor);
  if (l2_bytes > 0) dev.l2_bytes = int(l2_bytes);
  dev.sm_count = int(sm_count);
  dev.smem_per_block = int(smem_per_block);
  TORCH_CHECK_VALUE(smem_optin >= 0, "fastrnn: smem_optin must be >= 0, got ", smem_optin);
  dev.smem_optin = int(smem_optin);
  dev.regs_per_sm = int(regs_per_sm);
  dev.cooperative_launch = cooperative_launch;
  TORCH_CHECK_VALUE(mma >= plan::kMmaNone && mma <= plan::kMmaBF16,
                    "fastrnn: mma must be 0 (none), 1 (float16) or 2 (bfloat16), got ", mma);
  cost::Shape s;
  s.T = T;
  s.B = B;
  s.H = H;
  // A float16/bfloat16 model computes in float32: its shape is 2-byte (recurrence_host.h
  // plan_shape); with float64 compute there is no 16-bit model and mma is ignored.
  s.elem_size = mma != plan::kMmaNone && elem_size == 4 ? 2 : int(elem_size);
  s.backward = backward;
  s.packed = packed;
  TORCH_CHECK_VALUE(occupancy_smem_limit >= 0, "fastrnn: occupancy_smem_limit must be >= 0, got ",
                    occupancy_smem_limit);
  // The runtime's occupancy as CudaTarget::plan re-plans with it: here, 0 blocks for a tiled
  // block above the limit (a driver that refuses it), the model's blocks per SM otherwise.
  const plan::MeasuredOccupancy measured = [&](const plan::Plan& q) {
    return q.smem_bytes > occupancy_smem_limit
               ? 0
               : plan::blocks_per_sm(plan::kTiledMaxRegsPerThread, q.smem_bytes, dev);
  };
  const plan::Plan p = plan::make_plan(s, dev, regs.empty() ? nullptr : regs.data(), f,
                                       /*tiled_regs=*/0, int(mma),
                                       occupancy_smem_limit > 0 ? &measured : nullptr);
  return {p.path, p.grid, p.threads, p.kpt, p.ks, p.rows_per_tile, p.smem_bytes,
          p.blocks_per_sm, p.resident, p.tile_rows, p.tile_cols, p.lanes_r, p.micro_r,
          p.row_tiles, p.col_tiles, p.stride, p.k_chunk, p.micro_c, p.mma};
}

// The kpt values kernels are instantiated for (what cuobjdump must list).
std::vector<int64_t> cuda_kernel_kpts(int64_t elem_size) {
  TORCH_CHECK_VALUE(elem_size == 4 || elem_size == 8,
                    "fastrnn: elem_size must be 4 or 8, got ", elem_size);
  std::vector<int64_t> out;
  for (int i = 0; i < plan::num_kpt(int(elem_size)); ++i) {
    out.push_back(plan::kpt_at(int(elem_size), i));
  }
  return out;
}

// Sets this thread's path override ("" clears it: FASTRNN_CUDA_PATH applies again);
// returns the previous one ("" if none), so callers can restore it.
std::string set_cuda_path_override(std::string_view path) {
  plan::Force f = plan::kAuto;
  TORCH_CHECK_VALUE(path.empty() || plan::parse_force(path, &f),
                    "fastrnn: path must be '', auto, single, grid, gemm, tiled or tiled_mma, got '",
                    std::string(path), "'");
  std::string prev = plan::has_override ? plan::kForceNames[plan::override_force] : "";
  plan::has_override = !path.empty();
  plan::override_force = f;
  return prev;
}

// The cost model (cuda/cost_model.h, candidates.h) for one shape on a modelled device: per
// candidate (single, grid, tiled, gemm, cudnn, tiled_mma) 16 numbers, [candidate, fits,
// recorded_path, grid, kpt, ks, rows_per_tile, tiles_per_step, compute, smem, latency, barrier,
// launch, total (ns/step), tile_cols, grid_barrier (tiled)]. live_rows: packed, the mean live
// rows per step (0: B). mma: a 16-bit model's type (launch_plan.h MmaType: 1 float16, 2
// bfloat16; 0 none) with elem_size 2. gpu: the device as the host plans on it on a GPU
// (host_device.h fields, from _cuda_host_device): then `device` is that GPU's name, which only
// picks the estimates (cost_model.h match_device), and every property is the GPU's own;
// without it `device` is a modelled GPU (h100, h200, a100) with its sim_device.h properties.
std::vector<double> cuda_cost_model(std::string_view device, int64_t T, int64_t B, int64_t H,
                                    int64_t elem_size, bool backward, bool packed,
                                    double live_rows, int64_t mma,
                                    at::OptionalIntArrayRef gpu) {
  const cost::DeviceEstimates* e = cost::find_device(device);
  TORCH_CHECK_VALUE(e != nullptr || gpu.has_value(),
                    "fastrnn: device must be one of h100, h200, a100 (or a GPU's name with gpu), "
                    "got '", std::string(device), "'");
  TORCH_CHECK_VALUE(T > 0 && B > 0 && H > 0, "fastrnn: T, B and H must be positive, got ", T,
                    ", ", B, ", ", H);
  TORCH_CHECK_VALUE(elem_size == 2 || elem_size == 4 || elem_size == 8,
                    "fastrnn: elem_size must be 2, 4 or 8, got ", elem_size);
  TORCH_CHECK_VALUE(mma >= plan::kMmaNone && mma <= plan::kMmaBF16,
                    "fastrnn: mma must be 0 (none), 1 (float16) or 2 (bfloat16), got ", mma);
  TORCH_CHECK_VALUE(mma == plan::kMmaNone || elem_size == 2,
                    "fastrnn: mma needs elem_size 2 (a 16-bit model), got ", elem_size);
  const std::string device_name(device);
  plan::HostDevice host;
  if (gpu.has_value()) {
    TORCH_CHECK_VALUE(int64_t(gpu->size()) == plan::kHostDeviceFields, "fastrnn: gpu must have ",
                      plan::kHostDeviceFields, " entries (host_device.h), got ", gpu->size());
    host = plan::host_device_from_fields(gpu->data(), device_name.c_str());
    TORCH_CHECK_VALUE(host.dev.sm_count > 0 && host.dev.regs_per_sm > 0,
                      "fastrnn: gpu's sm_count and regs_per_sm must be positive");
  } else {
    host.dev = cost::plan_device(*e);
  }
  cost::DeviceSpec d = cost::device_spec(host.dev);
  if (gpu.has_value()) {  // 0: not read (make_plan's model of the registers)
    d.kpt_regs = host.kpt_regs[0] > 0 ? host.kpt_regs : nullptr;
    d.tiled_regs = host.tiled_regs;
  }
  cost::Shape s;
  s.T = T;
  s.B = B;
  s.H = H;
  s.elem_size = int(elem_size);
  s.backward = backward;
  s.packed = packed;
  s.mma = int(mma);
  TORCH_CHECK_VALUE(live_rows >= 0 && live_rows <= double(B),
                    "fastrnn: live_rows must be in [0, B] (0: all rows), got ", live_rows);
  s.live_rows = live_rows;
  std::vector<double> out;
  for (int c = 0; c < cost::kNumCandidates; ++c) {
    const cost::Prediction p = cost::predict(d, s, cost::Candidate(c));
    out.insert(out.end(), {double(c), p.fits ? 1.0 : 0.0, double(p.recorded_path),
                           double(p.plan.grid), double(p.plan.kpt), double(p.plan.ks),
                           double(p.plan.rows_per_tile), double(p.tiles_per_step), p.compute,
                           p.smem, p.latency, p.barrier, p.launch, p.total,
                           double(p.plan.tile_cols), double(p.plan.col_tiles > 1)});
  }
  return out;
}

// The modelled device whose estimates a GPU of this name gets (cost_model.h match_device; an
// unnamed GPU: kOtherDevice's), the one matching rule of the plan and the choice layer.
std::string cuda_model_device(std::string_view device_name) {
  const cost::DeviceEstimates* m = cost::match_device(device_name);
  return (m ? m : &cost::kOtherDevice)->name;
}

std::vector<std::string> cuda_cost_devices() {
  std::vector<std::string> out;
  for (const cost::DeviceEstimates& d : cost::kDevices) out.emplace_back(d.name);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def(
      "_cuda_launch_plan(int B, int H, int elem_size, int sm_count, int smem_per_block, "
      "int[]? regs_per_kpt=None, str force='auto', int regs_per_sm=65536, "
      "bool cooperative_launch=True, bool backward=False, int smem_optin=0, int T=1, "
      "str device='h100', bool packed=False, int clock_khz=0, int cc_major=0, int cc_minor=0, "
      "int l2_bytes=0, int mma=0, int occupancy_smem_limit=0) -> int[]",
      &cuda_launch_plan);
  m.def("_cuda_kernel_kpts(int elem_size) -> int[]", &cuda_kernel_kpts);
  // [target, backward, path, blocks, threads_per_block, tiles_per_step, kpt, ks,
  //  rows_per_tile, smem_bytes, launches, steps, batch, hidden, elem_size, tile_cols, micro_r,
  //  micro_c, grid_barrier, mma] or [].
  m.def("_last_cuda_plan() -> int[]", &plan::last_launch_fields);
  m.def("_set_cuda_path_override(str path) -> str", &set_cuda_path_override);
  m.def(
      "_cuda_cost_model(str device, int T, int B, int H, int elem_size, bool backward=False, "
      "bool packed=False, float live_rows=0, int mma=0, int[]? gpu=None) -> float[]",
      &cuda_cost_model);
  m.def("_cuda_cost_devices() -> str[]", &cuda_cost_devices);
  m.def("_cuda_model_device(str device_name) -> str", &cuda_model_device);
}

}  // namespace fastrnn
