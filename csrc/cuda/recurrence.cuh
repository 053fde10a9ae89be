// Device building blocks shared by the persistent forward and backward kernels, compiled
// by nvcc and by the SIMT simulation (simt.h says how).
//
// Layout (launch_plan.h): thread tid = col * ks + lane, col < kThreads / ks. A block
// owns output columns [blockIdx.x * cols, +cols). Lane `lane` of a column holds the
// matrix entries M(out, k) for k in chunks c = lane + i * ks (i < KPT / VEC), each
// chunk VEC consecutive k, so every shared-memory load is a VEC-wide vector that the
// `cols` columns of a warp read at the same address (a broadcast, no bank conflict).
#pragma once

#include <cstdint>

#include "plan_types.h"
#include "simt.h"

namespace fastrnn::FASTRNN_KERNEL_NS {

template <typename T> struct VecOf;
template <> struct VecOf<float> { using type = float4; static constexpr int n = 4; };
template <> struct VecOf<double> { using type = double2; static constexpr int n = 2; };

// Exact IEEE math on purpose (no --use_fast_math): results must match nn.RNN within 1e-5.
__device__ __forceinline__ float act_fn(float z, bool relu) {
  return relu ? (z < 0.f ? 0.f : z) : tanhf(z);
}
__device__ __forceinline__ double act_fn(double z, bool relu) {
  return relu ? (z < 0.0 ? 0.0 : z) : tanh(z);
}
// act'(z) written as a function of y = act(z): tanh' = 1 - y^2, relu' = [y > 0].
template <typename T>
__device__ __forceinline__ T act_grad_from_output(T y, bool relu) {
  return relu ? (y > T(0) ? T(1) : T(0)) : T(1) - y * y;
}

__device__ __forceinline__ float fma_(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_(double a, double b, double c) { return fma(a, b, c); }

template <typename T, int VEC> struct VecFma;
template <typename T> struct VecFma<T, 4> {
  template <typename V>
  __device__ __forceinline__ static T apply(const T* w, const V& h, T acc) {
    acc = fma_(w[0], h.x, acc);
    acc = fma_(w[1], h.y, acc);
    acc = fma_(w[2], h.z, acc);
    return fma_(w[3], h.w, acc);
  }
};
template <typename T> struct VecFma<T, 2> {
  template <typename V>
  __device__ __forceinline__ static T apply(const T* w, const V& h, T acc) {
    acc = fma_(w[0], h.x, acc);
    return fma_(w[1], h.y, acc);
  }
};

// Loads this lane's slice of M into registers, where M(out, k) = m[out * s_out + k * s_in]
// (forward: M = W_hh; backward: M = W_hh^T). Entries outside [0, H)^2 are zero, so the
// padded dot product needs no bounds checks.
template <typename T, int KPT>
__device__ __forceinline__ void load_weights(T (&w)[KPT], simt::ptr<const T> __restrict__ m, int64_t H,
                                             int64_t out, int lane, int ks, int64_t s_out,
                                             int64_t s_in) {
  constexpr int VEC = VecOf<T>::n;
#pragma unroll
  for (int i = 0; i < KPT / VEC; ++i) {
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const int64_t k = int64_t(lane + i * ks) * VEC + v;
      w[i * VEC + v] = (out < H && k < H) ? m[out * s_out + k * s_in] : T(0);
    }
  }
}

// Batch rows a lane accumulates at once: kRowsPerPass, halved when the weights take 64
// or more registers, so that the kernel stays within 128 registers without spilling
// (__launch_bounds__(kThreads, 2)). Either way it divides the plan's rows_per_tile.
template <typename T, int KPT>
constexpr int pass_rows() {
  return KPT * int(sizeof(T)) / 4 >= 64 ? plan::kRowsPerPass / 2 : plan::kRowsPerPass;
}

// acc[r] = sum_k M(out, k) * s[(row0 + r) * hp + k] for R rows, reduced over the ks
// lanes of the column with a fixed butterfly (deterministic; every lane ends with the
// full sum).
template <typename T, int KPT, int R>
__device__ __forceinline__ void dot_rows(T (&acc)[R], const T (&w)[KPT], simt::ptr<const T> s,
                                         int row0, int hp, int lane, int ks) {
  using V = typename VecOf<T>::type;
  constexpr int VEC = VecOf<T>::n;
#pragma unroll
  for (int r = 0; r < R; ++r) acc[r] = T(0);
#pragma unroll
  for (int i = 0; i < KPT / VEC; ++i) {
    const int c = lane + i * ks;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const V h = simt::load_vec<V>(s + (row0 + r) * hp, c);
      acc[r] = VecFma<T, VEC>::apply(&w[i * VEC], h, acc[r]);
    }
  }
  for (int off = ks >> 1; off > 0; off >>= 1) {
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  }
}

__device__ __forceinline__ bool row_active(simt::ptr<const int64_t> lengths, int64_t b, int64_t t) {
  return lengths == nullptr || t < lengths[b];
}

}  // namespace fastrnn::FASTRNN_KERNEL_NS
