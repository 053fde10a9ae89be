// The warp matrix API (CUDA's nvcuda::wmma) as the SIMT simulation runs it: what
// ../cuda/simt.h names simt::wmma when the kernel bodies are compiled for the host.
//
// Only what the bodies use: m16n16k16 tiles, 16-bit operands (c10::BFloat16 / c10::Half,
// the bits of __nv_bfloat16 / __half) and float accumulators; load_matrix_sync,
// mma_sync, store_matrix_sync and fill_fragment. On a GPU a fragment's elements sit in the
// lanes' registers in an opaque, architecture-specific layout; the bodies never index a
// fragment, so the simulation may choose its own: lane l holds the elements e = l + 32 i
// (i < 8) of the tile in row-major order (e = row * 16 + col of the logical matrix: A is
// m x k, B is k x n, the accumulator m x n).
//
// As on the GPU, load / mma / store are warp collectives: every one of the 32 lanes must
// reach the call (simt_runtime.h warp_exchange; a lane that skips it deadlocks the warp,
// which the simulation reports), and the operands' rules are checked: ldm a multiple of 8
// (16-bit) or 4 (float) elements, the tile's first element 32-byte aligned (its address,
// as the hardware checks it, and its offset in the buffer), and the pointer and ldm the same
// in all 32 lanes (warp-uniform arguments: a lane with another tile is reported). Each lane loads and stores its own elements through the checked pointers, so
// bounds and the race checker see every element and which lane touched it.
//
// Arithmetic: d = c + sum_k a[m][k] * b[k][n] in float, k in order, with fmaf. The tensor
// cores' products of 16-bit operands are exact in fp32 as here; their fp32 accumulation
// order and rounding are the hardware's (not bit-identical to this, equally accurate to a
// few fp32 ulps).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "simt_runtime.h"

namespace fastrnn::simt::wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

constexpr int kTile = 16;                             // m = n = k
constexpr int kPerLane = kTile * kTile / 32;          // elements of a tile per lane

template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static_assert(M == kTile && N == kTile && K == kTile, "the simulation implements m16n16k16");
  static_assert(std::is_same_v<Use, accumulator> ? std::is_same_v<T, float> : sizeof(T) == 2,
                "operands are 16-bit, accumulators float");
  static constexpr int num_elements = kPerLane;
  T x[kPerLane];
};

namespace detail {

inline int lane() { return int(current_thread()->thread_idx.x % 32); }

// The offset of element (r, c) of a tile stored with leading dimension ldm.
inline int64_t at(int r, int c, unsigned ldm, bool row_major) {
  return row_major ? int64_t(r) * ldm + c : int64_t(c) * ldm + r;
}

template <class T>
bool valid(const char* what, ptr<T> p, unsigned ldm) {
  const unsigned step = sizeof(T) == 2 ? 8 : 4;
  const Region* r = p.region();
  const size_t offset = r ? size_t(reinterpret_cast<const char*>(p.raw()) - r->base) : 0;
  const uintptr_t address = reinterpret_cast<uintptr_t>(p.raw());
  if (ldm % step != 0 || offset % 32 != 0 || address % 32 != 0) {
    report_error(std::string(what) + ": ldm " + std::to_string(ldm) + " must be a multiple of " +
                 std::to_string(step) + " and the tile 32-byte aligned (byte offset " +
                 std::to_string(offset) + ", address % 32 = " + std::to_string(address % 32) +
                 ")");
    return false;
  }
  return true;
}

// A load or store: the warp's collective, with each lane's pointer and ldm, which must be
// the same in every lane (warp-uniform on the hardware); a lane that differs is reported.
template <class T>
void uniform_collective(const char* what, ptr<T> p, unsigned ldm) {
  struct Args {
    uintptr_t address;
    uint64_t ldm;
  } mine{reinterpret_cast<uintptr_t>(p.raw()), ldm};
  const unsigned char* all = warp_exchange(what, &mine, sizeof(mine));
  if (all == nullptr) return;
  Args first;
  std::memcpy(&first, all, sizeof(first));
  const int me = lane();
  Args other;
  for (int l = 1; l < 32; ++l) {
    std::memcpy(&other, all + size_t(l) * kExchangeBytes, sizeof(other));
    if (other.address != first.address || other.ldm != first.ldm) {
      if (me == 0) {  // one report per warp
        report_error(std::string(what) + ": pointer and ldm must be warp-uniform: lane 0 has " +
                     "address " + std::to_string(first.address) + " ldm " +
                     std::to_string(first.ldm) + ", lane " + std::to_string(l) + " address " +
                     std::to_string(other.address) + " ldm " + std::to_string(other.ldm));
      }
      return;
    }
  }
}

template <class L>
constexpr bool is_row_major() {
  return std::is_same_v<L, row_major>;
}

}  // namespace detail

template <class Use, class T, class L, class U>
void load_matrix_sync(fragment<Use, kTile, kTile, kTile, T, L>& f, ptr<U> p, unsigned ldm) {
  static_assert(std::is_same_v<std::remove_const_t<U>, T>, "the fragment's element type");
  static_assert(!std::is_same_v<Use, accumulator>, "accumulators: the overload with a layout");
  const bool ok = detail::valid("wmma::load_matrix_sync", p, ldm);
  const int lane = detail::lane();
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    // A (m x k) row-major: row = m; B (k x n) col-major: stored by column n.
    f.x[i] = ok ? T(p[detail::at(e / kTile, e % kTile, ldm, detail::is_row_major<L>())]) : T(0.f);
  }
  detail::uniform_collective("wmma::load_matrix_sync", p, ldm);
}

template <class T>
void fill_fragment(fragment<accumulator, kTile, kTile, kTile, float>& f, T v) {
  for (float& x : f.x) x = float(v);
}

template <class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, kTile, kTile, kTile, float>& d,
              const fragment<matrix_a, kTile, kTile, kTile, TA, LA>& a,
              const fragment<matrix_b, kTile, kTile, kTile, TB, LB>& b,
              const fragment<accumulator, kTile, kTile, kTile, float>& c) {
  static_assert(std::is_same_v<TA, TB>, "A and B of one element type");
  // Each lane publishes its share of A, B and C (2 + 2 + 4 bytes per element); every lane
  // then computes its elements of D from the gathered tiles.
  constexpr size_t kA = sizeof(a.x), kB = sizeof(b.x), kC = sizeof(c.x);
  static_assert(kA + kB + kC <= kExchangeBytes, "exchange size");
  unsigned char mine[kA + kB + kC];
  std::memcpy(mine, a.x, kA);
  std::memcpy(mine + kA, b.x, kB);
  std::memcpy(mine + kA + kB, c.x, kC);
  const unsigned char* all = warp_exchange("wmma::mma_sync", mine, sizeof(mine));
  if (all == nullptr) return;
  // element e of a tile: lane e % 32, index e / 32
  auto elem = [&](size_t base, size_t size, int e) {
    return all + (e % 32) * kExchangeBytes + base + size * (e / 32);
  };
  auto a_at = [&](int m, int k) {
    TA v;
    std::memcpy(&v, elem(0, sizeof(TA), m * kTile + k), sizeof(TA));
    return float(v);
  };
  auto b_at = [&](int k, int n) {
    TB v;
    std::memcpy(&v, elem(kA, sizeof(TB), k * kTile + n), sizeof(TB));
    return float(v);
  };
  const int lane = detail::lane();
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i, m = e / kTile, n = e % kTile;
    float acc;
    std::memcpy(&acc, elem(kA + kB, sizeof(float), e), sizeof(float));
    for (int k = 0; k < kTile; ++k) acc = std::fmaf(a_at(m, k), b_at(k, n), acc);
    d.x[i] = acc;
  }
}

inline void store_matrix_sync(ptr<float> p,
                              const fragment<accumulator, kTile, kTile, kTile, float>& f,
                              unsigned ldm, layout_t layout) {
  const bool ok = detail::valid("wmma::store_matrix_sync", p, ldm);
  const int lane = detail::lane();
  for (int i = 0; ok && i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[detail::at(e / kTile, e % kTile, ldm, layout == mem_row_major)] = f.x[i];
  }
  detail::uniform_collective("wmma::store_matrix_sync", p, ldm);
}

}  // namespace fastrnn::simt::wmma
