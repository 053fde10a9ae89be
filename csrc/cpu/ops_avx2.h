// The AVX2 + FMA vector ops kernels_impl.h is written over (Ops<float>, Ops<double>; 8 and 4
// lanes, 16 registers), shared by kernels_avx2.cpp and by the AVX-512 simulation
// (kernels_avx512sim.cpp), whose 16-lane vectors are pairs of these.
// Include only under #pragma GCC target("avx2,fma"): each including file compiles its own
// copy (anonymous namespace) for that target.
#pragma once

#include <immintrin.h>

#include "tanh_simd.h"

namespace fastrnn::cpu::avx2_ops {
namespace {

// The vector ops tanh_simd.h's tanh is written over, for 8 floats.
struct TanhOps {
  using V = __m256;
  static V set1(float x) { return _mm256_set1_ps(x); }
  static V abs(V x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V round(V x) {
    return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  // 2^n by building the exponent field (NaN lanes give garbage that the NaN in q dominates)
  static V scale2(V q, V n) {
    const __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(q, _mm256_castsi256_ps(bits));
  }
  static V select_lt(V a, V b, V x, V y) {
    return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ));
  }
  static V copysign(V r, V x) {
    const V sign_bit = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(sign_bit, r), _mm256_and_ps(x, sign_bit));
  }
};

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
  static constexpr int W = 8, NVMAX = 2, MBMAX = 6, REGS = 16;  // 12 accumulators
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
  static V tanh(V x) { return simd::tanh_poly<TanhOps>(x); }
  static V relu(V x) { return _mm256_max_ps(zero(), x); }
  static V relu_grad(V g, V y) { return _mm256_and_ps(_mm256_cmp_ps(y, zero(), _CMP_GT_OQ), g); }
  static T reduce_add(V v) {  // 8 -> 4 -> 2 -> 1 lanes
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
};

template <>
struct Ops<double> {
  using T = double;
  using V = __m256d;
  static constexpr int W = 4, NVMAX = 2, MBMAX = 6, REGS = 16;
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
  static T reduce_add(V v) {  // 4 -> 2 -> 1 lanes
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
};

}  // namespace
}  // namespace fastrnn::cpu::avx2_ops
