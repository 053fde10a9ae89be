// The AVX-512 kernels' geometry run on AVX2: FASTRNN_CPU_ISA=avx512sim.
//
// kernels_impl.h decides everything about a kernel from its Ops' geometry: panel widths
// (NVMAX x W columns), row tiles (MBMAX), which tile shapes fit the register file (REGS),
// how many lanes an edge vector masks. This file compiles kernels_impl.h once more with the
// AVX-512 build's geometry (avx512_geometry.h: 16 float lanes, 4-vector panels, 6-row tiles,
// 32 registers) and a 16-lane vector made of two AVX2 vectors. So on a machine without
// AVX-512 every packing, tiling, threading and edge path of the AVX-512 build runs, and the
// test suite checks its results, with the same summation order per lane. What it cannot
// check: the one-line AVX-512 intrinsic wrappers of kernels_avx512.cpp (its Ops and TanhOps)
// and their speed. Its 16-lane vectors spill (16 ymm registers hold 8 of them): timings
// taken under it say nothing about either ISA. Never chosen by auto; it exists for the tests.
#include "avx512_geometry.h"
#include "kernels.h"

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
// Everything below (and nothing from the standard headers above) is built for AVX2.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "ops_avx2.h"

namespace fastrnn::cpu::avx512sim {
namespace {

// A vector of Avx512Geometry<T>::W lanes as two AVX2 vectors: lanes [0, W/2) in lo.
template <typename Scalar>
struct Ops {
  using Half = avx2_ops::Ops<Scalar>;
  using T = Scalar;
  using HV = typename Half::V;
  struct V {
    HV lo, hi;
  };
  static constexpr int W = Avx512Geometry<T>::W, NVMAX = Avx512Geometry<T>::NVMAX,
                       MBMAX = Avx512Geometry<T>::MBMAX, REGS = Avx512Geometry<T>::REGS;
  static constexpr int HW = Half::W;
  static_assert(W == 2 * HW, "an AVX-512 vector is two AVX2 vectors");

  static V zero() { return {Half::zero(), Half::zero()}; }
  static V set1(T x) { return {Half::set1(x), Half::set1(x)}; }
  static V load(const T* p) { return {Half::load(p), Half::load(p + HW)}; }
  // The first n (0 < n < W) lanes; the others zero, as AVX-512's masked load gives them.
  static V load_n(const T* p, int n) {
    if (n < HW) return {Half::load_n(p, n), Half::zero()};
    return {Half::load(p), n == HW ? Half::zero() : Half::load_n(p + HW, n - HW)};
  }
  static void store(T* p, V v) {
    Half::store(p, v.lo);
    Half::store(p + HW, v.hi);
  }
  static void store_n(T* p, V v, int n) {
    if (n < HW) return Half::store_n(p, v.lo, n);
    Half::store(p, v.lo);
    if (n > HW) Half::store_n(p + HW, v.hi, n - HW);
  }
  static V fma(V a, V b, V c) { return {Half::fma(a.lo, b.lo, c.lo), Half::fma(a.hi, b.hi, c.hi)}; }
  static V add(V a, V b) { return {Half::add(a.lo, b.lo), Half::add(a.hi, b.hi)}; }
  static V mul(V a, V b) { return {Half::mul(a.lo, b.lo), Half::mul(a.hi, b.hi)}; }
  static V one_minus_sq(V y) { return {Half::one_minus_sq(y.lo), Half::one_minus_sq(y.hi)}; }
  static V tanh(V x) { return {Half::tanh(x.lo), Half::tanh(x.hi)}; }
  static V relu(V x) { return {Half::relu(x.lo), Half::relu(x.hi)}; }
  static V relu_grad(V g, V y) {
    return {Half::relu_grad(g.lo, y.lo), Half::relu_grad(g.hi, y.hi)};
  }
  // 16 -> 8 lanes, then AVX2's 8 -> 1: the lane pairing of GCC's _mm512_reduce_add_ps.
  static T reduce_add(V v) { return Half::reduce_add(Half::add(v.lo, v.hi)); }
};

}  // namespace
}  // namespace fastrnn::cpu::avx512sim

#define FASTRNN_ISA avx512sim
#include "kernels_impl.h"
#undef FASTRNN_ISA

#pragma GCC pop_options
#endif  // x86-64
