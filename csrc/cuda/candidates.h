// Every candidate of the measured choice (fastrnn/_cuda_choice.py) with its predicted time
// per step: fastrnn's persistent paths (tiled_mma: a bfloat16 model's tensor-core
// tiles; it does not fit for other types) as the plan make_plan returns with that path forced
// (exactly what would launch), the per-step cuBLAS path and cuDNN, all from cost_model.h --
// the scale make_plan's own unforced ranking uses, so its `auto` plan is the argmin of the
// fastrnn candidates here (tests/test_cuda_choice.py). Pure C++ (no CUDA, no torch).
#pragma once

#include "cost_model.h"
#include "launch_plan.h"

namespace fastrnn::cost {

inline Prediction predict_plan(const DeviceSpec& d, const Shape& s, Candidate which) {
  const plan::Force force = which == kSingle ? plan::kForceSingle
                            : which == kGrid ? plan::kForceGrid
                            : which == kTiled ? plan::kForceTiled
                                              : plan::kForceTiledMma;
  // The plan the host would launch: it does not read lengths (on a GPU they are device
  // memory), so it plans for every row; the prediction then credits the live rows.
  Shape host = s;
  host.live_rows = 0;
  // A 16-bit model's tensor-core tiles (bfloat16 only: make_tiled_mma_plan).
  const int mma = s.elem_size == 2 ? s.mma : plan::kMmaNone;
  const plan::Plan p = plan::make_plan(host, d.dev, d.kpt_regs, force, d.tiled_regs, mma);
  if (p.path == plan::kGemmFallback) {  // does not fit
    Prediction r;
    r.candidate = which;
    return r;
  }
  return plan_cost(d, s, p);
}

inline Prediction predict(const DeviceSpec& d, const Shape& s, Candidate c) {
  switch (c) {
    case kSingle:
    case kGrid:
    case kTiled:
    case kTiledMma:
      return predict_plan(d, s, c);
    case kGemm:
      return predict_gemm(d, s);
    default:
      return predict_cudnn(d, s);
  }
}

}  // namespace fastrnn::cost
