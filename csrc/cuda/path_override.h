// A per-thread override of the CUDA path, for callers that choose the path per call (the
// measured choice, fastrnn/_cuda_choice.py, times each candidate and then runs the winner).
// It takes precedence over FASTRNN_CUDA_PATH (recurrence_host.h forced_path reads both).
// Stored in ../cuda_plan_ops.cpp (compiled in every build), set through the op
// fastrnn::_set_cuda_path_override, so the GPU host code and the cuda_sim simulation see it.
#pragma once

#include "plan_types.h"

namespace fastrnn::plan {

// True and *out set when an override is active on this thread.
bool path_override(Force* out);

}  // namespace fastrnn::plan
