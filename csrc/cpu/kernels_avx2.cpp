// The kernels of kernels.h compiled for AVX2 + FMA. Only called after
// isa_supported(Isa::Avx2) said the CPU has these instructions.
#include "kernels.h"

#include <cmath>
#include <cstdint>
#include <utility>

#if defined(__x86_64__) || defined(_M_X64)
// Everything below (and nothing from the standard headers above) is built for AVX2.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#include "ops_avx2.h"

namespace fastrnn::cpu::avx2 {
namespace {

template <typename T>
using Ops = avx2_ops::Ops<T>;

}  // namespace
}  // namespace fastrnn::cpu::avx2

#define FASTRNN_ISA avx2
#include "kernels_impl.h"
#undef FASTRNN_ISA

#pragma GCC pop_options
#endif  // x86-64
