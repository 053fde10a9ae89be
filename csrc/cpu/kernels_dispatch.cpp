// Run-time choice of the kernels' ISA (kernels.h): the CPU's own features, or the
// FASTRNN_CPU_ISA environment variable (portable|avx2|avx512) read at every call, so
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
  for (Isa cand : {Isa::Portable, Isa::Avx2, Isa::Avx512}) {
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
    case Isa::Avx2: return avx2::panel_cols(is_double);
#endif
    default: return portable::panel_cols(is_double);
  }
}

int64_t packed_size(Isa isa, int64_t K, int64_t N, bool is_double) {
  const int64_t P = panel_cols(isa, is_double);
  return (N + P - 1) / P * P * K;
}

template <typename T>
static void run_pack(Isa isa, const T* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
                     int64_t k0, T* out, int64_t p0, int64_t p1) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: avx512::pack(w, transpose, K, N, Ktotal, k0, out, p0, p1); return;
    case Isa::Avx2: avx2::pack(w, transpose, K, N, Ktotal, k0, out, p0, p1); return;
#endif
    default: portable::pack(w, transpose, K, N, Ktotal, k0, out, p0, p1); return;
  }
}
void pack(Isa isa, const float* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
          int64_t k0, float* out, int64_t p0, int64_t p1) {
  run_pack(isa, w, transpose, K, N, Ktotal, k0, out, p0, p1);
}
void pack(Isa isa, const double* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
          int64_t k0, double* out, int64_t p0, int64_t p1) {
  run_pack(isa, w, transpose, K, N, Ktotal, k0, out, p0, p1);
}

template <typename Args>
static void run_forward(Isa isa, const Args& a, int64_t b0, int64_t b1) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: avx512::forward_rows(a, b0, b1); return;
    case Isa::Avx2: avx2::forward_rows(a, b0, b1); return;
#endif
    default: portable::forward_rows(a, b0, b1); return;
  }
}

template <typename Args>
static void run_backward(Isa isa, const Args& a, int64_t b0, int64_t b1) {
  switch (isa) {
#if defined(__x86_64__) || defined(_M_X64)
    case Isa::Avx512: avx512::backward_rows(a, b0, b1); return;
    case Isa::Avx2: avx2::backward_rows(a, b0, b1); return;
#endif
    default: portable::backward_rows(a, b0, b1); return;
  }
}

void forward_rows(Isa isa, const ForwardArgs<float>& a, int64_t b0, int64_t b1) {
  run_forward(isa, a, b0, b1);
}
void forward_rows(Isa isa, const ForwardArgs<double>& a, int64_t b0, int64_t b1) {
  run_forward(isa, a, b0, b1);
}
void backward_rows(Isa isa, const BackwardArgs<float>& a, int64_t b0, int64_t b1) {
  run_backward(isa, a, b0, b1);
}
void backward_rows(Isa isa, const BackwardArgs<double>& a, int64_t b0, int64_t b1) {
  run_backward(isa, a, b0, b1);
}

// One switch for the three step functions of a column split.
#if defined(__x86_64__) || defined(_M_X64)
#define FASTRNN_STEP_DISPATCH(fn, a, ...)                          \
  switch (isa) {                                                   \
    case Isa::Avx512: avx512::fn(a, __VA_ARGS__); return;          \
    case Isa::Avx2: avx2::fn(a, __VA_ARGS__); return;              \
    default: portable::fn(a, __VA_ARGS__); return;                 \
  }
#else
#define FASTRNN_STEP_DISPATCH(fn, a, ...) portable::fn(a, __VA_ARGS__);
#endif
#define FASTRNN_STEP_ENTRY(fn, Args)                                                   \
  void fn(Isa isa, const Args& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,      \
          int64_t c1) {                                                                \
    FASTRNN_STEP_DISPATCH(fn, a, s, b0, b1, c0, c1)                                    \
  }
FASTRNN_STEP_ENTRY(forward_step, ForwardArgs<float>)
FASTRNN_STEP_ENTRY(forward_step, ForwardArgs<double>)
FASTRNN_STEP_ENTRY(backward_dz, BackwardArgs<float>)
FASTRNN_STEP_ENTRY(backward_dz, BackwardArgs<double>)
FASTRNN_STEP_ENTRY(backward_carry, BackwardArgs<float>)
FASTRNN_STEP_ENTRY(backward_carry, BackwardArgs<double>)
#undef FASTRNN_STEP_ENTRY
#undef FASTRNN_STEP_DISPATCH

}  // namespace fastrnn::cpu
