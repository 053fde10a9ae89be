// See batched_gemm.h.
#include "batched_gemm.h"

#include "machine.h"
#include "../rnn.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <type_traits>

namespace fastrnn::cpu {
namespace {

template <typename T>
at::Tensor pack_typed(Isa isa, const at::Tensor& w, bool transpose) {
  const int64_t K = transpose ? w.size(1) : w.size(0), N = transpose ? w.size(0) : w.size(1);
  constexpr bool is_double = std::is_same_v<T, double>;
  const int64_t P = panel_cols(isa, is_double);
  at::Tensor m = new_buffer({packed_size(isa, K, N, is_double)}, w);  // [ceil(N/P)*K*P]
  const T* wp = w.data_ptr<T>();
  T* mp = m.data_ptr<T>();
  at::parallel_for(0, (N + P - 1) / P, 1, [&](int64_t p0, int64_t p1) {
    pack(isa, wp, transpose, K, N, K, 0, mp, p0, p1);
  });
  return m;
}

template <typename T>
void run_typed(Isa isa, const at::Tensor& a, const at::Tensor& m, int64_t N,
               const at::Tensor& bias, at::Tensor& out) {
  const int64_t R = a.size(0), K = a.size(1);
  const T* mp = m.data_ptr<T>();
  // A block of a's rows takes a quarter of the L2 (the rest: the panel streaming through
  // and the output tile), at least one register tile's rows.
  // And at most an equal share of the rows per thread, so that every thread gets some.
  const int64_t threads = std::max(1, at::get_num_threads());
  const int64_t row_block = std::max<int64_t>(
      8, std::min(caches().l2_bytes / 4 / std::max<int64_t>(1, K * int64_t(sizeof(T))),
                  (R + threads - 1) / threads));
  const T* ap = a.data_ptr<T>();
  const T* bp = bias.defined() ? bias.data_ptr<T>() : nullptr;
  T* cp = out.data_ptr<T>();
  at::parallel_for(0, R, row_block, [&](int64_t r0, int64_t r1) {
    gemm_packed(isa, ap, K, K, mp, bp, cp, N, N, r0, r1, row_block);
  });
}

}  // namespace

at::Tensor pack_for_gemm(Isa isa, const at::Tensor& w, bool transpose) {
  return w.scalar_type() == at::kDouble ? pack_typed<double>(isa, w, transpose)
                                        : pack_typed<float>(isa, w, transpose);
}

void packed_gemm(Isa isa, const at::Tensor& a, const at::Tensor& m, int64_t N,
                 const at::Tensor& bias, at::Tensor& out) {
  if (a.scalar_type() == at::kDouble) {
    run_typed<double>(isa, a, m, N, bias, out);
  } else {
    run_typed<float>(isa, a, m, N, bias, out);
  }
}

void own_gemm(Isa isa, const at::Tensor& a, const at::Tensor& w, bool transpose,
              const at::Tensor& bias, at::Tensor& out) {
  packed_gemm(isa, a, pack_for_gemm(isa, w, transpose), transpose ? w.size(0) : w.size(1), bias,
              out);
}

bool prefer_own_gemm(Isa isa, int64_t R, int64_t K, int64_t N) {
  const char* forced = std::getenv("FASTRNN_CPU_GEMM");
  if (forced != nullptr && *forced != '\0') {
    const std::string_view v(forced);
    if (v == "own") return true;
    if (v == "library") return false;
    TORCH_CHECK(v == "auto", "fastrnn: FASTRNN_CPU_GEMM='", v,
                "' is unknown; expected one of auto|own|library");
  }
  const Costs& c = costs(isa);
  // Both sides on torch's threads (the packing splits panels, the GEMM rows).
  const double threads = double(std::max(1, at::get_num_threads()));
  const double own_ns = double(R) * double(K) * double(N) / (c.madd_per_ns * threads);
  const double pack_ns = double(K) * double(N) * c.pack_ns_per_element / threads;
  return own_ns * (c.own_gemm_speedup - 1.0) > pack_ns;
}

}  // namespace fastrnn::cpu
