// tanh for a SIMD vector of floats, written once over an ISA's vector ops (ops_avx2.h,
// kernels_avx512.cpp). < 2 ulp: an odd polynomial below 0.55 (fitted, max 0.8 ulp),
// 1 - 2 / (exp(2|x|) + 1) above, with exp from a Cody-Waite reduction and a degree-7
// Taylor polynomial on |r| <= ln2/2. NaN propagates. Included by each ISA's file after it
// defines its TanhOps (inside that ISA's target pragma), so each instance is compiled for
// its own ISA:
//   V, set1(float), abs(v), min(a, b), add, sub, mul, div, fma(a, b, c) = a*b + c,
//   fnma(a, b, c) = c - a*b, round(v) (to nearest), scale2(q, n) = q * 2^n (n integral,
//   0 <= n <= 26), select_lt(a, b, x, y) = lanewise a < b ? x : y, copysign(r, x).
#pragma once

namespace fastrnn::cpu::simd {

template <class O>
inline typename O::V tanh_poly(typename O::V x) {
  using V = typename O::V;
  const V ax = O::min(O::set1(9.0f), O::abs(x));  // NaN stays NaN
  // small |x|: x + x^3 P(x^2)
  const V x2 = O::mul(ax, ax);
  V p = O::set1(0.0024822435807436705f);
  p = O::fma(p, x2, O::set1(-0.008486535400152206f));
  p = O::fma(p, x2, O::set1(0.02180541679263115f));
  p = O::fma(p, x2, O::set1(-0.0539628304541111f));
  p = O::fma(p, x2, O::set1(0.13333313167095184f));
  p = O::fma(p, x2, O::set1(-0.3333333432674408f));
  const V small = O::fma(O::mul(ax, x2), p, ax);
  // large |x|: e = exp(2|x|) = 2^n exp(r)
  const V a2 = O::add(ax, ax);
  const V n = O::round(O::mul(a2, O::set1(1.44269504088896341f)));
  V r = O::fnma(n, O::set1(0.693145751953125f), a2);
  r = O::fnma(n, O::set1(1.428606820309417e-06f), r);
  V q = O::set1(1.0f / 5040);
  q = O::fma(q, r, O::set1(1.0f / 720));
  q = O::fma(q, r, O::set1(1.0f / 120));
  q = O::fma(q, r, O::set1(1.0f / 24));
  q = O::fma(q, r, O::set1(1.0f / 6));
  q = O::fma(q, r, O::set1(0.5f));
  q = O::fma(q, r, O::set1(1.0f));
  q = O::fma(q, r, O::set1(1.0f));
  const V e = O::scale2(q, n);
  const V one = O::set1(1.0f);
  const V large = O::sub(one, O::div(O::set1(2.0f), O::add(e, one)));
  // tanh is odd: put x's sign back
  return O::copysign(O::select_lt(ax, O::set1(0.55f), small, large), x);
}

}  // namespace fastrnn::cpu::simd
