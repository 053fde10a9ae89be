// Run-time choice of the kernels' ISA (kernels.h): the CPU's own features, or the
// FASTRNN_CPU_ISA environment variable (portable|avx2|avx512|avx512sim) read at every call, so
// tests can run each variant in one process.
#include "kernels.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace fastrnn::cpu {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::Portable:
      return true;
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Avx512Sim:  // the AVX-512 geometry on AVX2 instructions
      return isa_supported(Isa::Avx2);
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
#endif
    default:
      return false;
  }
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx512Sim: return "avx512sim";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

bool select_isa(Isa* isa, const char** requested) {
  const char* env = std::getenv("FASTRNN_CPU_ISA");
  *requested = env;
  if (env == nullptr || *env == '\0' || std::strcmp(env, "auto") == 0) {
    *isa = isa_supported(Isa::Avx512) ? Isa::Avx512
           : isa_supported(Isa::Avx2) ? Isa::Avx2
                                      : Isa::Portable;
    return true;
  }
  for (Isa cand : {Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Avx512Sim}) {
    if (std::strcmp(env, isa_name(cand)) == 0) {
      if (!isa_supported(cand)) return false;
      *isa = cand;
      return true;
    }
  }
  return false;
}

int64_t panel_cols(Isa isa, bool is_double) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: return avx512::panel_cols(is_double);
    case Isa::Avx512Sim: return avx512sim::panel_cols(is_double);
    case Isa::Avx2: return avx2::panel_cols(is_double);
#endif
    default: return portable::panel_cols(is_double);
  }
}

int64_t packed_size(Isa isa, int64_t K, int64_t N, bool is_double) {
  const int64_t P = panel_cols(isa, is_double);
  return (N + P - 1) / P * P * K;
}

// One switch from the run-time ISA to its namespace's entry point (kernels.h).
#if defined(__x86_64__) || defined(_M_X64)
#define FASTRNN_ISA_DISPATCH(fn, ...)                              \
  switch (isa) {                                                   \
    case Isa::Avx512: avx512::fn(__VA_ARGS__); return;             \
    case Isa::Avx512Sim: avx512sim::fn(__VA_ARGS__); return;       \
    case Isa::Avx2: avx2::fn(__VA_ARGS__); return;                 \
    default: portable::fn(__VA_ARGS__); return;                    \
  }
#else
#define FASTRNN_ISA_DISPATCH(fn, ...) portable::fn(__VA_ARGS__);
#endif

double fma_loop(Isa isa, int64_t iters) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: return avx512::fma_loop(iters);
    case Isa::Avx512Sim: return avx512sim::fma_loop(iters);
    case Isa::Avx2: return avx2::fma_loop(iters);
#endif
    default: return portable::fma_loop(iters);
  }
}

#define FASTRNN_GEMM_ENTRY(T)                                                                \
  void gemm_packed(Isa isa, const T* a, int64_t lda, int64_t K, const T* m, const T* bias,  \
                   T* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1, int64_t row_block) { \
    FASTRNN_ISA_DISPATCH(gemm_packed, a, lda, K, m, bias, c, ldc, N, r0, r1, row_block)      \
  }
FASTRNN_GEMM_ENTRY(float)
FASTRNN_GEMM_ENTRY(double)
#undef FASTRNN_GEMM_ENTRY

#define FASTRNN_GEMM_NT_ENTRY(T)                                                              \
  void gemm_nt(Isa isa, const T* a, int64_t lda, int64_t K, const T* w, int64_t ldw,          \
               const T* bias, T* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,           \
               int64_t row_block) {                                                           \
    FASTRNN_ISA_DISPATCH(gemm_nt, a, lda, K, w, ldw, bias, c, ldc, N, r0, r1, row_block)      \
  }
FASTRNN_GEMM_NT_ENTRY(float)
FASTRNN_GEMM_NT_ENTRY(double)
#undef FASTRNN_GEMM_NT_ENTRY

#define FASTRNN_GEMM_TN_ENTRY(T)                                                              \
  void gemm_tn(Isa isa, const T* a, int64_t lda, const T* x, int64_t ldx, int64_t K, T* c,     \
               int64_t ldc, int64_t N, int64_t r0, int64_t r1, bool accumulate,               \
               int64_t k_block, int64_t m_block) {                                            \
    FASTRNN_ISA_DISPATCH(gemm_tn, a, lda, x, ldx, K, c, ldc, N, r0, r1, accumulate, k_block,  \
                         m_block)                                                             \
  }                                                                                           \
  void column_sums(Isa isa, const T* a, int64_t lda, int64_t K, T* out, int64_t r0,           \
                   int64_t r1) {                                                              \
    FASTRNN_ISA_DISPATCH(column_sums, a, lda, K, out, r0, r1)                                 \
  }
FASTRNN_GEMM_TN_ENTRY(float)
FASTRNN_GEMM_TN_ENTRY(double)
#undef FASTRNN_GEMM_TN_ENTRY

#define FASTRNN_PACK_ENTRY(T)                                                              \
  void pack(Isa isa, const T* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,     \
            int64_t k0, T* out, int64_t p0, int64_t p1) {                                  \
    FASTRNN_ISA_DISPATCH(pack, w, transpose, K, N, Ktotal, k0, out, p0, p1)                \
  }
FASTRNN_PACK_ENTRY(float)
FASTRNN_PACK_ENTRY(double)
#undef FASTRNN_PACK_ENTRY

#define FASTRNN_ROWS_ENTRY(fn, Args)                                     \
  void fn(Isa isa, const Args& a, int64_t b0, int64_t b1) {              \
    FASTRNN_ISA_DISPATCH(fn, a, b0, b1)                                  \
  }
FASTRNN_ROWS_ENTRY(forward_rows, ForwardArgs<float>)
FASTRNN_ROWS_ENTRY(forward_rows, ForwardArgs<double>)
FASTRNN_ROWS_ENTRY(backward_rows, BackwardArgs<float>)
FASTRNN_ROWS_ENTRY(backward_rows, BackwardArgs<double>)
#undef FASTRNN_ROWS_ENTRY

#define FASTRNN_STEP_ENTRY(fn, Args)                                                   \
  void fn(Isa isa, const Args& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,      \
          int64_t c1) {                                                                \
    FASTRNN_ISA_DISPATCH(fn, a, s, b0, b1, c0, c1)                                     \
  }
FASTRNN_STEP_ENTRY(forward_step, ForwardArgs<float>)
FASTRNN_STEP_ENTRY(forward_step, ForwardArgs<double>)
FASTRNN_STEP_ENTRY(forward_gemv_step, ForwardArgs<float>)
FASTRNN_STEP_ENTRY(forward_gemv_step, ForwardArgs<double>)
FASTRNN_STEP_ENTRY(backward_dz, BackwardArgs<float>)
FASTRNN_STEP_ENTRY(backward_dz, BackwardArgs<double>)
FASTRNN_STEP_ENTRY(backward_carry, BackwardArgs<float>)
FASTRNN_STEP_ENTRY(backward_carry, BackwardArgs<double>)
FASTRNN_STEP_ENTRY(backward_gemv_carry, BackwardArgs<float>)
FASTRNN_STEP_ENTRY(backward_gemv_carry, BackwardArgs<double>)
#undef FASTRNN_STEP_ENTRY
#undef FASTRNN_ISA_DISPATCH

}  // namespace fastrnn::cpu
