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

template <typename S>
void weight_grads_typed(Isa isa, const at::Tensor& dz, const at::Tensor& x, const at::Tensor& y,
                        const at::Tensor& h0, bool reverse, at::Tensor& dw_ih,
                        at::Tensor& dw_hh, at::Tensor& db) {
  const int64_t T = dz.size(0), B = dz.size(1), H = dz.size(2), I = x.size(2);
  const S* dzp = dz.data_ptr<S>();  // [T*B, H]
  const S* xp = x.data_ptr<S>();    // [T*B, I]
  const S* yp = y.data_ptr<S>();    // [T*B, H]
  const S* h0p = h0.data_ptr<S>();  // [B, H]
  S* gi = dw_ih.data_ptr<S>();
  S* gh = dw_hh.data_ptr<S>();
  S* gb = db.data_ptr<S>();
  const int64_t TB = T * B, rest = (T - 1) * B;
  // A k block of one column panel of x (a tile's columns) fills half the L1d.
  const int64_t panel_bytes = panel_cols(isa, std::is_same_v<S, double>) * int64_t(sizeof(S));
  const int64_t k_block = std::max<int64_t>(16, caches().l1d_bytes / 2 / panel_bytes);
  // A block of dz (k_block of its rows, a row H elements apart, m_block contiguous columns
  // each: its own cache lines per row) takes a quarter of the L2 while the panels of x pass.
  const int64_t m_block = std::max<int64_t>(
      8, caches().l2_bytes / 4 / (k_block * int64_t(sizeof(S))));
  const int64_t grain = isa == Isa::Portable ? 4 : 6;  // a row tile (MBMAX)
  at::parallel_for(0, H, grain, [&](int64_t r0, int64_t r1) {
    gemm_tn(isa, dzp, H, xp, I, TB, gi, I, I, r0, r1, false, k_block, m_block);
    // h_prev: forward, h0 for the first B rows then y shifted by one step; reverse, y shifted
    // the other way for the first (T-1)*B rows, then h0.
    const S* dz_h0 = dzp + (reverse ? rest * H : 0);
    const S* dz_y = dzp + (reverse ? 0 : B * H);
    const S* y_prev = yp + (reverse ? B * H : 0);
    gemm_tn(isa, dz_h0, H, h0p, H, B, gh, H, H, r0, r1, false, k_block, m_block);
    gemm_tn(isa, dz_y, H, y_prev, H, rest, gh, H, H, r0, r1, true, k_block, m_block);
    column_sums(isa, dzp, H, TB, gb, r0, r1);
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

void own_weight_grads(Isa isa, const at::Tensor& dz, const at::Tensor& x, const at::Tensor& y,
                      const at::Tensor& h0, bool reverse, at::Tensor& dw_ih, at::Tensor& dw_hh,
                      at::Tensor& db) {
  if (dz.scalar_type() == at::kDouble) {
    weight_grads_typed<double>(isa, dz, x, y, h0, reverse, dw_ih, dw_hh, db);
  } else {
    weight_grads_typed<float>(isa, dz, x, y, h0, reverse, dw_ih, dw_hh, db);
  }
}

namespace {

// FASTRNN_CPU_GEMM (read at every call): 1 own, 0 library, -1 auto (unset or "auto").
int forced_gemm() {
  const char* forced = std::getenv("FASTRNN_CPU_GEMM");
  if (forced == nullptr || *forced == '\0') return -1;
  const std::string_view v(forced);
  if (v == "own") return 1;
  if (v == "library") return 0;
  TORCH_CHECK(v == "auto", "fastrnn: FASTRNN_CPU_GEMM='", v,
              "' is unknown; expected one of auto|own|library");
  return -1;
}

}  // namespace

bool prefer_own_weight_grads(Isa isa, int64_t K, int64_t I, int64_t H) {
  const int forced = forced_gemm();
  if (forced >= 0) return forced == 1;
  return own_weight_grads_faster(isa, K, I, H);
}

bool prefer_own_gemm(Isa isa, int64_t R, int64_t K, int64_t N) {
  const int forced = forced_gemm();
  if (forced >= 0) return forced == 1;
  const Costs& c = costs(isa);
  // Both sides on torch's threads (the packing splits panels, the GEMM rows).
  const double threads = double(std::max(1, at::get_num_threads()));
  const double own_ns = double(R) * double(K) * double(N) / (c.madd_per_ns * threads);
  const double pack_ns = double(K) * double(N) * c.pack_ns_per_element / threads;
  return own_ns * (c.own_gemm_speedup - 1.0) > pack_ns;
}

}  // namespace fastrnn::cpu
