// The kernels of kernels.h for any CPU: one lane per "vector" (the compiler may still
// vectorise for the baseline ISA) and libm's tanh. Also the reference the SIMD variants
// are tested against through FASTRNN_CPU_ISA=portable.
#include "kernels.h"

#include <cmath>
#include <cstdint>
#include <utility>

namespace fastrnn::cpu::portable {
namespace {

template <typename Scalar>
struct Ops {
  using T = Scalar;
  using V = Scalar;
  // Scalars: REGS only bounds the tile widths (the compiler keeps what fits).
  static constexpr int W = 1, NVMAX = 4, MBMAX = 4, REGS = 32;
  static V zero() { return V(0); }
  static V set1(T x) { return x; }
  static V load(const T* p) { return *p; }
  static V load_n(const T* p, int) { return *p; }
  static void store(T* p, V v) { *p = v; }
  static void store_n(T* p, V v, int) { *p = v; }
  static V fma(V a, V b, V c) { return a * b + c; }
  static V add(V a, V b) { return a + b; }
  static V mul(V a, V b) { return a * b; }
  static V one_minus_sq(V y) { return V(1) - y * y; }
  static V tanh(V x) { return std::tanh(x); }
  static V relu(V x) { return x > V(0) || x != x ? x : V(0); }  // NaN stays NaN
  static V relu_grad(V g, V y) { return y > V(0) ? g : V(0); }
  static T reduce_add(V v) { return v; }
};

}  // namespace
}  // namespace fastrnn::cpu::portable

#define FASTRNN_ISA portable
#include "kernels_impl.h"
#undef FASTRNN_ISA
