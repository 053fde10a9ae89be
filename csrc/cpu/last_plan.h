// What the last CPU rnn_forward / rnn_backward on this thread ran: the path, the ISA and
// the number of threads. Tests read it (fastrnn.backends.last_cpu_plan()) to prove that a
// parametrization really reached the path it is named after; no kernel depends on it.
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

struct LastPlan {
  const char* op = "";         // "forward" | "backward"; "" before the first call
  const char* path = "";       // "rows" | "columns" | "stepwise"
  const char* isa = "";        // isa_name() of the ISA the kernels ran with
  int64_t threads = 0;         // threads that ran the recurrence
  bool project_first = false;  // forward, fused paths: x W_ih^T + b ran first as one GEMM
  bool active_rows = false;    // fused paths, sorted lengths: only each step's active rows ran
  bool own_gemm = false;       // the batched GEMM (projection / dx) ran on batched_gemm.h's kernel
  bool own_weight_grads = false;  // backward: dW_ih, dW_hh and the bias gradient ran on gemm_tn
};

// Records plan as this thread's last (a thread_local copy: concurrent callers do not mix).
void record_plan(const LastPlan& plan);
// Sets own_gemm (and own_weight_grads) of this thread's last record (the GEMMs run after
// the path is recorded).
void note_own_gemm(bool own, bool own_weight_grads = false);

}  // namespace fastrnn::cpu
