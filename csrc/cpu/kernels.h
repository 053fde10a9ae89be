// fastrnn CPU micro-kernels: framework-free (no ATen), one instance per ISA.
//
// The per-step recurrences of ../rnn.h, for a contiguous block of batch rows
// [b_begin, b_end). Rows never interact, so threads split the batch once per
// sequence and run their blocks with no synchronisation at all. With fewer rows than
// threads, the caller splits the columns instead and calls the single-step entry points
// (forward_step, backward_dz, backward_carry) between barriers.
//
// Every kernel reads its weights M [K, H] packed once per call by pack() into the ISA's
// column panels: panel p holds columns [p*P, p*P + P) as a contiguous [K, P] block
// (P = the ISA's register-tile width, columns >= H zero). A tile then streams its panel
// linearly and every SIMD load is full width, whatever H is (a row-major M with a
// power-of-two row stride thrashes the caches' sets at H = 1024).
//   forward:  M = [W_ih^T; W_hh^T]  [I + H, H]: the input projection is fused into the step,
//             out[b, j] = act(bias[j] + sum_k x[b, k] M[k, j] + sum_k h[b, k] M[I + k, j])
//   backward: M = W_hh              [H, H]:     carry[b, k] = sum_j dz[b, j] M[j, k]
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

// Avx512Sim: the AVX-512 kernels' geometry on AVX2 instructions (kernels_avx512sim.cpp), for
// testing the AVX-512 build's tiling on machines without AVX-512; auto never picks it.
enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2, Avx512Sim = 3 };
enum class Act { Tanh = 0, Relu = 1 };

template <typename T>
struct ForwardArgs {
  int64_t T_, B, I, H;
  const T* m;              // [W_ih^T; W_hh^T] packed (two pack() calls, transpose=true)
  const T* w_hh;           // [H, H] row-major, unpacked: read by forward_gemv_step only
  const T* x;              // [T, B, I]  (I = 0: none, see y_holds_pre)
  const T* h0;             // [B, H]
  const T* bias;           // [H] b_ih + b_hh, or nullptr
  T* y;                    // [T, B, H] out
  // Large weights: the caller computed y = x W_ih^T + bias as one GEMM beforehand and
  // passes I = 0, m = packed W_hh^T only; each step then starts from y_t.
  bool y_holds_pre;
  const int64_t* lengths;  // [B] or nullptr
  // lengths non-increasing (a PackedSequence's sorted order): the rows active at a step are
  // a prefix of any row range, and the GEMMs run on that prefix only.
  bool active_prefix;
  bool reverse;
  Act act;
};

template <typename T>
struct BackwardArgs {
  int64_t T_, B, H;
  const T* m;              // W_hh packed by pack(isa, W_hh, transpose=false)
  const T* w_hh;           // [H, H] row-major, unpacked: read by backward_gemv_carry only
  const T* dy;             // [T, B, H]
  const T* y;              // [T, B, H]
  T* dz;                   // [T, B, H] out: gradient of the pre-activations
  T* carry;                // [B, H]    out: dLoss/dh0
  T* scratch;              // [B, H]    g of inactive rows
  const int64_t* lengths;  // [B] or nullptr
  bool active_prefix;      // as in ForwardArgs
  bool reverse;
  Act act;
};

// Elements of the packed form of a [K, N] matrix.
int64_t packed_size(Isa isa, int64_t K, int64_t N, bool is_double);
// Columns per panel (P above): the unit a column split (forward_step etc.) works in.
int64_t panel_cols(Isa isa, bool is_double);
// Fills rows [k0, k0 + K) of column panels [p_begin, p_end) of the packed [Ktotal, N]
// matrix at out with M = (transpose ? w^T : w), w row-major [N, K] (transpose) or [K, N].
// Threads may pack disjoint panel ranges at once.
void pack(Isa isa, const float* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
          int64_t k0, float* out, int64_t p_begin, int64_t p_end);
void pack(Isa isa, const double* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
          int64_t k0, double* out, int64_t p_begin, int64_t p_end);

// Runs the forward recurrence for rows [b_begin, b_end) with the given ISA.
// The ISA must be supported by the running CPU (see select_isa / isa_supported).
void forward_rows(Isa isa, const ForwardArgs<float>& a, int64_t b_begin, int64_t b_end);
void forward_rows(Isa isa, const ForwardArgs<double>& a, int64_t b_begin, int64_t b_end);
// Runs BPTT's recurrence for rows [b_begin, b_end): fills dz and carry.
void backward_rows(Isa isa, const BackwardArgs<float>& a, int64_t b_begin, int64_t b_end);
void backward_rows(Isa isa, const BackwardArgs<double>& a, int64_t b_begin, int64_t b_end);

// Column split (batch too small to give every thread rows): one step at a time for
// rows [b0, b1) and columns [c0, c1), c0 a multiple of panel_cols, c1 a multiple or H.
// forward_step(s) reads h_prev of those rows in all columns and writes y_t [rows, cols].
// BPTT step s is backward_dz (dz_t [rows, cols] from carry [rows, cols]; g of inactive
// rows) then backward_carry (carry [rows, cols] from dz_t [rows, all columns]).
// forward_rows / backward_rows are exactly these over all columns, step after step.
void forward_step(Isa isa, const ForwardArgs<float>& a, int64_t s, int64_t b0, int64_t b1,
                  int64_t c0, int64_t c1);
void forward_step(Isa isa, const ForwardArgs<double>& a, int64_t s, int64_t b0, int64_t b1,
                  int64_t c0, int64_t c1);
void backward_dz(Isa isa, const BackwardArgs<float>& a, int64_t s, int64_t b0, int64_t b1,
                 int64_t c0, int64_t c1);
void backward_dz(Isa isa, const BackwardArgs<double>& a, int64_t s, int64_t b0, int64_t b1,
                 int64_t c0, int64_t c1);
void backward_carry(Isa isa, const BackwardArgs<float>& a, int64_t s, int64_t b0, int64_t b1,
                    int64_t c0, int64_t c1);
void backward_carry(Isa isa, const BackwardArgs<double>& a, int64_t s, int64_t b0, int64_t b1,
                    int64_t c0, int64_t c1);

// The gemv path (few rows, weights read unpacked): forward_step for y_holds_pre with
// a.w_hh (row-major) instead of a.m; any column range [c0, c1).
void forward_gemv_step(Isa isa, const ForwardArgs<float>& a, int64_t s, int64_t b0, int64_t b1,
                       int64_t c0, int64_t c1);
void forward_gemv_step(Isa isa, const ForwardArgs<double>& a, int64_t s, int64_t b0,
                       int64_t b1, int64_t c0, int64_t c1);
// backward_carry of the gemv path: W_hh read in place (a.w_hh) instead of a.m.
void backward_gemv_carry(Isa isa, const BackwardArgs<float>& a, int64_t s, int64_t b0,
                         int64_t b1, int64_t c0, int64_t c1);
void backward_gemv_carry(Isa isa, const BackwardArgs<double>& a, int64_t s, int64_t b0,
                         int64_t b1, int64_t c0, int64_t c1);
// c [r, :N] = bias + a [r, :K] w^T for rows r in [r0, r1), w [N, K] row-major (row stride
// ldw) read as it is (no packing): the dot form of the gemv path's input projection. Rows
// go row_block at a time (a block of a that stays in L2, sized by the caller).
void gemm_nt(Isa isa, const float* a, int64_t lda, int64_t K, const float* w, int64_t ldw,
             const float* bias, float* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,
             int64_t row_block);
void gemm_nt(Isa isa, const double* a, int64_t lda, int64_t K, const double* w, int64_t ldw,
             const double* bias, double* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,
             int64_t row_block);

// c [r, :N] = bias + a [r, :K] M for rows r in [r0, r1): M [K, N] packed by pack(); bias [N]
// or nullptr. The project-first input projection (x W_ih^T + b over all T*B rows) and BPTT's
// dx = dz W_ih as one GEMM on this ISA's register tiles. Rows go row_block at a time, every
// panel of M passing over a block of a that stays in L2 (the caller sizes it from the L2).
void gemm_packed(Isa isa, const float* a, int64_t lda, int64_t K, const float* m,
                 const float* bias, float* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,
                 int64_t row_block);
void gemm_packed(Isa isa, const double* a, int64_t lda, int64_t K, const double* m,
                 const double* bias, double* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,
                 int64_t row_block);

// c [r, :N] = (accumulate ? c [r, :N] : 0) + sum_k a[k, r] x[k, :N] for rows r in [r0, r1):
// c = a^T x with a [K, M] (row stride lda) and x [K, N] (row stride ldx) both read in place,
// row-major over k. BPTT's weight gradients dW_ih = dz^T x and dW_hh = dz^T h_prev over the
// T*B rows, with no transposed or packed copy. K goes k_block rows at a time (a block of a
// column panel of x stays in L1), rows m_block at a time (their block of a stays in L2);
// the caller sizes both. Every element of c sums its k in order, so results do not depend
// on how threads split the rows.
void gemm_tn(Isa isa, const float* a, int64_t lda, const float* x, int64_t ldx, int64_t K,
             float* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1, bool accumulate,
             int64_t k_block, int64_t m_block);
void gemm_tn(Isa isa, const double* a, int64_t lda, const double* x, int64_t ldx, int64_t K,
             double* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1, bool accumulate,
             int64_t k_block, int64_t m_block);
// out[r] = sum_k a[k, r] for r in [r0, r1) (a [K, M], row stride lda): the bias gradient.
void column_sums(Isa isa, const float* a, int64_t lda, int64_t K, float* out, int64_t r0,
                 int64_t r1);
void column_sums(Isa isa, const double* a, int64_t lda, int64_t K, double* out, int64_t r0,
                 int64_t r1);

// The FMA-throughput probe: `iters` iterations of 12 independent chains of vector FMAs
// (enough to cover the FMA latency x pipes of every x86 core); returns the FLOPs it did
// (2 per lane per FMA). Its rate is the ISA's per-core peak the benchmarks compare with.
double fma_loop(Isa isa, int64_t iters);

bool isa_supported(Isa isa);
// The ISA to use: FASTRNN_CPU_ISA=auto|portable|avx2|avx512|avx512sim (read at every call) if
// set, else the best one the CPU supports (never avx512sim). Asking for an unsupported ISA is
// an error (the caller reports it); returns false then and leaves *isa untouched.
bool select_isa(Isa* isa, const char** requested);
const char* isa_name(Isa isa);

// Per-ISA entry points (kernels_<isa>.cpp), declared once for every ISA namespace; callers
// go through the dispatching functions above. Ranges: rows [b0, b1), columns [c0, c1),
// column panels [p0, p1), step s (the s-th visited step).
#define FASTRNN_DECLARE_ISA_ENTRY_POINTS(isa_ns)                                              \
  namespace isa_ns {                                                                          \
  int64_t panel_cols(bool is_double);                                                         \
  double fma_loop(int64_t iters);                                                             \
  template <typename T>                                                                       \
  void gemm_packed(const T* a, int64_t lda, int64_t K, const T* m, const T* bias, T* c,       \
                   int64_t ldc, int64_t N, int64_t r0, int64_t r1, int64_t row_block);        \
  template <typename T>                                                                       \
  void gemm_tn(const T* a, int64_t lda, const T* x, int64_t ldx, int64_t K, T* c, int64_t ldc, \
               int64_t N, int64_t r0, int64_t r1, bool accumulate, int64_t k_block,           \
               int64_t m_block);                                                              \
  template <typename T>                                                                       \
  void column_sums(const T* a, int64_t lda, int64_t K, T* out, int64_t r0, int64_t r1);       \
  template <typename T>                                                                       \
  void gemm_nt(const T* a, int64_t lda, int64_t K, const T* w, int64_t ldw, const T* bias,    \
               T* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1, int64_t row_block);      \
  template <typename T>                                                                       \
  void backward_gemv_carry(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1,       \
                           int64_t c0, int64_t c1);                                           \
  template <typename T>                                                                       \
  void forward_gemv_step(const ForwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1,          \
                         int64_t c0, int64_t c1);                                             \
  template <typename T>                                                                       \
  void pack(const T* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal, int64_t k0,     \
            T* out, int64_t p0, int64_t p1);                                                  \
  template <typename T>                                                                       \
  void forward_rows(const ForwardArgs<T>& a, int64_t b0, int64_t b1);                         \
  template <typename T>                                                                       \
  void backward_rows(const BackwardArgs<T>& a, int64_t b0, int64_t b1);                       \
  template <typename T>                                                                       \
  void forward_step(const ForwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,   \
                    int64_t c1);                                                              \
  template <typename T>                                                                       \
  void backward_dz(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,   \
                   int64_t c1);                                                               \
  template <typename T>                                                                       \
  void backward_carry(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1,            \
                      int64_t c0, int64_t c1);                                                \
  }
FASTRNN_DECLARE_ISA_ENTRY_POINTS(portable)
FASTRNN_DECLARE_ISA_ENTRY_POINTS(avx2)
FASTRNN_DECLARE_ISA_ENTRY_POINTS(avx512)
FASTRNN_DECLARE_ISA_ENTRY_POINTS(avx512sim)
#undef FASTRNN_DECLARE_ISA_ENTRY_POINTS

}  // namespace fastrnn::cpu
