// fastrnn::_cuda_launch_plan: the CUDA path selection (csrc/cuda/launch_plan.h)
// exposed as an op. Compiled in every build, with or without CUDA, so that CI machines
// without a GPU unit-test the same function the CUDA host code calls at run time.
// fastrnn::_last_cuda_plan: the record of the last CUDA or simulated CUDA launch on this
// thread (csrc/cuda/last_plan.h), read by fastrnn.backends.last_cuda_plan().
#include <ATen/core/ivalue.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "cuda/cost_model.h"
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
// limit the tiled kernels may use (0: none, smem_per_block). mma: the model's 16-bit type
// (launch_plan.h MmaType) for the tensor-core tiles.
std::vector<int64_t> cuda_launch_plan(int64_t B, int64_t H, int64_t elem_size, int64_t sm_count,
                                      int64_t smem_per_block,
                                      at::OptionalIntArrayRef regs_per_kpt,
                                      std::string_view force, int64_t regs_per_sm,
                                      bool cooperative_launch, bool backward,
                                      int64_t smem_optin, int64_t mma) {
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
  plan::Device dev;
  dev.sm_count = int(sm_count);
  dev.smem_per_block = int(smem_per_block);
  TORCH_CHECK_VALUE(smem_optin >= 0, "fastrnn: smem_optin must be >= 0, got ", smem_optin);
  dev.smem_optin = int(smem_optin);
  dev.regs_per_sm = int(regs_per_sm);
  dev.cooperative_launch = cooperative_launch;
  TORCH_CHECK_VALUE(mma >= plan::kMmaNone && mma <= plan::kMmaBF16,
                    "fastrnn: mma must be 0 (none), 1 (float16) or 2 (bfloat16), got ", mma);
  const plan::Plan p = plan::make_plan(B, H, int(elem_size), dev,
                                       regs.empty() ? nullptr : regs.data(), f,
                                       /*allow_resident=*/!backward, /*tiled_regs=*/0, int(mma));
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

// The cost model (cuda/cost_model.h) for one shape on a modelled device: per candidate
// (single, grid, tiled, gemm, cudnn, tiled_mma) 16 numbers, [candidate, fits, recorded_path,
// grid, kpt, ks,
// rows_per_tile, tiles_per_step, compute, smem, latency, barrier, launch, total (ns/step),
// tile_cols, grid_barrier (tiled)].
std::vector<double> cuda_cost_model(std::string_view device, int64_t T, int64_t B, int64_t H,
                                    int64_t elem_size, bool backward, bool packed) {
  const cost::DeviceSpec* d = cost::find_device(device);
  TORCH_CHECK_VALUE(d != nullptr, "fastrnn: device must be one of h100, h200, a100, got '",
                    std::string(device), "'");
  TORCH_CHECK_VALUE(T > 0 && B > 0 && H > 0, "fastrnn: T, B and H must be positive, got ", T,
                    ", ", B, ", ", H);
  TORCH_CHECK_VALUE(elem_size == 2 || elem_size == 4 || elem_size == 8,
                    "fastrnn: elem_size must be 2, 4 or 8, got ", elem_size);
  cost::Shape s;
  s.T = T;
  s.B = B;
  s.H = H;
  s.elem_size = int(elem_size);
  s.backward = backward;
  s.packed = packed;
  std::vector<double> out;
  for (int c = 0; c < cost::kNumCandidates; ++c) {
    const cost::Prediction p = cost::predict(*d, s, cost::Candidate(c));
    out.insert(out.end(), {double(c), p.fits ? 1.0 : 0.0, double(p.recorded_path),
                           double(p.plan.grid), double(p.plan.kpt), double(p.plan.ks),
                           double(p.plan.rows_per_tile), double(p.tiles_per_step), p.compute,
                           p.smem, p.latency, p.barrier, p.launch, p.total,
                           double(p.plan.tile_cols), double(p.plan.col_tiles > 1)});
  }
  return out;
}

std::vector<std::string> cuda_cost_devices() {
  std::vector<std::string> out;
  for (const cost::DeviceSpec& d : cost::kDevices) out.emplace_back(d.name);
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def(
      "_cuda_launch_plan(int B, int H, int elem_size, int sm_count, int smem_per_block, "
      "int[]? regs_per_kpt=None, str force='auto', int regs_per_sm=65536, "
      "bool cooperative_launch=True, bool backward=False, int smem_optin=0, int mma=0) -> int[]",
      &cuda_launch_plan);
  m.def("_cuda_kernel_kpts(int elem_size) -> int[]", &cuda_kernel_kpts);
  // [target, backward, path, blocks, threads_per_block, tiles_per_step, kpt, ks,
  //  rows_per_tile, smem_bytes, launches, steps, batch, hidden, elem_size, tile_cols, micro_r,
  //  micro_c, grid_barrier] or [].
  m.def("_last_cuda_plan() -> int[]", &plan::last_launch_fields);
  m.def("_set_cuda_path_override(str path) -> str", &set_cuda_path_override);
  m.def(
      "_cuda_cost_model(str device, int T, int B, int H, int elem_size, bool backward=False, "
      "bool packed=False) -> float[]",
      &cuda_cost_model);
  m.def("_cuda_cost_devices() -> str[]", &cuda_cost_devices);
}

}  // namespace fastrnn
