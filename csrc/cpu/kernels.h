// fastrnn CPU micro-kernels: framework-free (no ATen), one instance per ISA.
//
// The per-step recurrences of ../rnn.h, for a contiguous block of batch rows
// [b_begin, b_end). Rows never interact, so threads split the batch once per
// sequence and run their blocks with no synchronisation at all.
//
// Every kernel reads a recurrent matrix packed once per call as M[H, Hp]
// (row-major, Hp = round_up(H, kPadCols), columns >= H zero) so that every
// SIMD load of a row of M is full width:
//   forward:  M = W_hh^T   (out[b, j] = sum_k h[b, k] * M[k, j])
//   backward: M = W_hh     (carry[b, k] = sum_j dz[b, j] * M[j, k])
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

// Columns of packed matrices are padded to a multiple of this (covers every ISA's width).
constexpr int64_t kPadCols = 16;

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };
enum class Act { Tanh = 0, Relu = 1 };

template <typename T>
struct ForwardArgs {
  int64_t T_, B, H, Hp;
  const T* m;              // [H, Hp]   W_hh^T, zero-padded columns
  const T* h0;             // [B, H]
  T* y;                    // [T, B, H] on entry x W_ih^T + biases, on exit the outputs
  const int64_t* lengths;  // [B] or nullptr
  bool reverse;
  Act act;
};

template <typename T>
struct BackwardArgs {
  int64_t T_, B, H, Hp;
  const T* m;              // [H, Hp]   W_hh, zero-padded columns
  const T* dy;             // [T, B, H]
  const T* y;              // [T, B, H]
  T* dz;                   // [T, B, H] out: gradient of the pre-activations
  T* carry;                // [B, H]    out: dLoss/dh0
  T* scratch;              // [B, H]    g of inactive rows
  const int64_t* lengths;  // [B] or nullptr
  bool reverse;
  Act act;
};

// Runs the forward recurrence for rows [b_begin, b_end) with the given ISA.
// The ISA must be supported by the running CPU (see best_isa / isa_supported).
void forward_rows(Isa isa, const ForwardArgs<float>& a, int64_t b_begin, int64_t b_end);
void forward_rows(Isa isa, const ForwardArgs<double>& a, int64_t b_begin, int64_t b_end);
// Runs BPTT's recurrence for rows [b_begin, b_end): fills dz and carry.
void backward_rows(Isa isa, const BackwardArgs<float>& a, int64_t b_begin, int64_t b_end);
void backward_rows(Isa isa, const BackwardArgs<double>& a, int64_t b_begin, int64_t b_end);

bool isa_supported(Isa isa);
// The ISA to use: FASTRNN_CPU_ISA=portable|avx2|avx512 (read at every call) if set,
// else the best one the CPU supports. Asking for an unsupported ISA is an error
// (the caller reports it); returns false then and leaves *isa untouched.
bool select_isa(Isa* isa, const char** requested);
const char* isa_name(Isa isa);

// Per-ISA entry points (kernels_<isa>.cpp); callers go through forward_rows/backward_rows.
namespace portable {
template <typename T> void forward_rows(const ForwardArgs<T>&, int64_t, int64_t);
template <typename T> void backward_rows(const BackwardArgs<T>&, int64_t, int64_t);
}  // namespace portable
namespace avx2 {
template <typename T> void forward_rows(const ForwardArgs<T>&, int64_t, int64_t);
template <typename T> void backward_rows(const BackwardArgs<T>&, int64_t, int64_t);
}  // namespace avx2
namespace avx512 {
template <typename T> void forward_rows(const ForwardArgs<T>&, int64_t, int64_t);
template <typename T> void backward_rows(const BackwardArgs<T>&, int64_t, int64_t);
}  // namespace avx512

}  // namespace fastrnn::cpu
