// fastrnn::_cpu_last_plan: the record of last_plan.h as an op, for tests and reports.
#include "last_plan.h"

#include <torch/library.h>

#include <string>
#include <tuple>

namespace fastrnn::cpu {
namespace {

thread_local LastPlan last_plan;

// (op, path, isa, threads, project_first, active_rows, own_gemm, own_weight_grads); op is ""
// before the first call on this thread.
std::tuple<std::string, std::string, std::string, int64_t, bool, bool, bool, bool> cpu_last_plan() {
  return {last_plan.op, last_plan.path, last_plan.isa, last_plan.threads,
          last_plan.project_first, last_plan.active_rows, last_plan.own_gemm,
          last_plan.own_weight_grads};
}

}  // namespace

void record_plan(const LastPlan& plan) { last_plan = plan; }
void note_own_gemm(bool own, bool own_weight_grads) {
  last_plan.own_gemm = own;
  last_plan.own_weight_grads = own_weight_grads;
}

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("_cpu_last_plan() -> (str, str, str, int, bool, bool, bool, bool)", &cpu_last_plan);
}

}  // namespace fastrnn::cpu
