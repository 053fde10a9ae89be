// The kernels of kernels.h compiled for AVX-512 (F, BW, DQ, VL) + FMA. Only called after
// isa_supported(Isa::Avx512) said the CPU has these instructions.
#include "avx512_geometry.h"
#include "kernels.h"

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
// Everything below (and nothing from the standard headers above) is built for AVX-512.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")
// GCC 12 warns inside its own avx512fintrin.h (_mm512_setzero_* via an "uninitialized" __Y).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include "tanh_simd.h"

namespace fastrnn::cpu::avx512 {
namespace {

// The vector ops tanh_simd.h's tanh is written over, for 16 floats.
struct TanhOps {
  using V = __m512;
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V abs(V x) { return _mm512_abs_ps(x); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V fnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
  static V round(V x) {
    return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static V scale2(V q, V n) { return _mm512_scalef_ps(q, n); }
  static V select_lt(V a, V b, V x, V y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  static V copysign(V r, V x) {
    const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_abs_ps(r)), sign));
  }
};

template <typename T>
struct Ops;

template <>
struct Ops<float> {
  using T = float;
  using V = __m512;
  static constexpr int W = Avx512Geometry<T>::W, NVMAX = Avx512Geometry<T>::NVMAX,
                       MBMAX = Avx512Geometry<T>::MBMAX, REGS = Avx512Geometry<T>::REGS;
  static_assert(W == 16);
  static __mmask16 mask(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(T x) { return _mm512_set1_ps(x); }
  static V load(const T* p) { return _mm512_loadu_ps(p); }
  static V load_n(const T* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static void store_n(T* p, V v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V one_minus_sq(V y) { return _mm512_fnmadd_ps(y, y, _mm512_set1_ps(1.0f)); }
  static V tanh(V x) { return simd::tanh_poly<TanhOps>(x); }
  static V relu(V x) { return _mm512_max_ps(zero(), x); }  // NaN in x is returned
  static V relu_grad(V g, V y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, zero(), _CMP_GT_OQ), g);
  }
  static T reduce_add(V v) { return _mm512_reduce_add_ps(v); }
};

template <>
struct Ops<double> {
  using T = double;
  using V = __m512d;
  static constexpr int W = Avx512Geometry<T>::W, NVMAX = Avx512Geometry<T>::NVMAX,
                       MBMAX = Avx512Geometry<T>::MBMAX, REGS = Avx512Geometry<T>::REGS;
  static_assert(W == 8);
  static __mmask8 mask(int n) { return static_cast<__mmask8>((1u << n) - 1); }
  static V zero() { return _mm512_setzero_pd(); }
  static V set1(T x) { return _mm512_set1_pd(x); }
  static V load(const T* p) { return _mm512_loadu_pd(p); }
  static V load_n(const T* p, int n) { return _mm512_maskz_loadu_pd(mask(n), p); }
  static void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static void store_n(T* p, V v, int n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static V one_minus_sq(V y) { return _mm512_fnmadd_pd(y, y, _mm512_set1_pd(1.0)); }
  // float64 must match to 1e-10: libm's tanh, lane by lane.
  static V tanh(V x) {
    alignas(64) double lanes[W];
    _mm512_store_pd(lanes, x);
    for (double& v : lanes) v = ::tanh(v);
    return _mm512_load_pd(lanes);
  }
  static V relu(V x) { return _mm512_max_pd(zero(), x); }
  static V relu_grad(V g, V y) {
    return _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(y, zero(), _CMP_GT_OQ), g);
  }
  static T reduce_add(V v) { return _mm512_reduce_add_pd(v); }
};

}  // namespace
}  // namespace fastrnn::cpu::avx512

#define FASTRNN_ISA avx512
#include "kernels_impl.h"
#undef FASTRNN_ISA

#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif  // x86-64
