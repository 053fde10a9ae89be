// The kernels of kernels.h compiled for AVX2 + FMA. Only called after
// isa_supported(Isa::Avx2) said the CPU has these instructions.
#include "kernels.h"

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
// Everything below (and nothing from the standard headers above) is built for AVX2.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include <immintrin.h>

namespace fastrnn::cpu::avx2 {
namespace {

// tanh for 8 floats; the same method as the AVX-512 version (see kernels_avx512.cpp).
inline __m256 tanh8(__m256 x) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 ax = _mm256_min_ps(_mm256_set1_ps(9.0f), _mm256_andnot_ps(sign_bit, x));
  const __m256 x2 = _mm256_mul_ps(ax, ax);
  __m256 p = _mm256_set1_ps(0.0024822435807436705f);
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.008486535400152206f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(0.02180541679263115f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.0539628304541111f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(0.13333313167095184f));
  p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(-0.3333333432674408f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(ax, x2), p, ax);
  const __m256 a2 = _mm256_add_ps(ax, ax);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(a2, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), a2);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606820309417e-06f), r);
  __m256 q = _mm256_set1_ps(1.0f / 5040);
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 720));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 120));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 24));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f / 6));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.0f));
  // 2^n by building the exponent field (0 <= n <= 26 here; NaN lanes give garbage that
  // the NaN in q still dominates)
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 e = _mm256_mul_ps(q, _mm256_castsi256_ps(bits));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 large =
      _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  const __m256 is_small = _mm256_cmp_ps(ax, _mm256_set1_ps(0.55f), _CMP_LT_OQ);
  const __m256 res = _mm256_blendv_ps(large, small, is_small);
  return _mm256_or_ps(res, _mm256_and_ps(x, sign_bit));
}

// Lane mask with the first n of `lanes` lanes set (as 32/64-bit integers).
inline __m256i first_lanes32(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i first_lanes64(int n) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

template <typename T>
struct Ops;

template <>
struct Ops<float> {
  using T = float;
  using V = __m256;
  static constexpr int W = 8, NVMAX = 2, MBMAX = 6;  // 12 accumulators of 16 registers
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(T x) { return _mm256_set1_ps(x); }
  static V load(const T* p) { return _mm256_loadu_ps(p); }
  static V load_n(const T* p, int n) { return _mm256_maskload_ps(p, first_lanes32(n)); }
  static void store(T* p, V v) { _mm256_storeu_ps(p, v); }
  static void store_n(T* p, V v, int n) { _mm256_maskstore_ps(p, first_lanes32(n), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V one_minus_sq(V y) { return _mm256_fnmadd_ps(y, y, _mm256_set1_ps(1.0f)); }
  static V tanh(V x) { return tanh8(x); }
  static V relu(V x) { return _mm256_max_ps(zero(), x); }
  static V relu_grad(V g, V y) { return _mm256_and_ps(_mm256_cmp_ps(y, zero(), _CMP_GT_OQ), g); }
};

template <>
struct Ops<double> {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4, NVMAX = 2, MBMAX = 6;
  static V zero() { return _mm256_setzero_pd(); }
  static V set1(T x) { return _mm256_set1_pd(x); }
  static V load(const T* p) { return _mm256_loadu_pd(p); }
  static V load_n(const T* p, int n) { return _mm256_maskload_pd(p, first_lanes64(n)); }
  static void store(T* p, V v) { _mm256_storeu_pd(p, v); }
  static void store_n(T* p, V v, int n) { _mm256_maskstore_pd(p, first_lanes64(n), v); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V one_minus_sq(V y) { return _mm256_fnmadd_pd(y, y, _mm256_set1_pd(1.0)); }
  static V tanh(V x) {  // float64 must match to 1e-10: libm's tanh, lane by lane
    alignas(32) double lanes[W];
    _mm256_store_pd(lanes, x);
    for (double& v : lanes) v = ::tanh(v);
    return _mm256_load_pd(lanes);
  }
  static V relu(V x) { return _mm256_max_pd(zero(), x); }
  static V relu_grad(V g, V y) { return _mm256_and_pd(_mm256_cmp_pd(y, zero(), _CMP_GT_OQ), g); }
};

}  // namespace
}  // namespace fastrnn::cpu::avx2

#define FASTRNN_ISA avx2
#include "kernels_impl.h"
#undef FASTRNN_ISA

#pragma GCC pop_options
#endif  // x86-64
