// The recurrences of kernels.h written once over a SIMD "ops" type; included by each
// kernels_<isa>.cpp after it defines, in namespace fastrnn::cpu::FASTRNN_ISA (inside an
// anonymous namespace, so nothing compiled for one ISA can be linked into another):
//   template <typename T> struct Ops;   // T = float, double
// with members
//   T, V (vector of W lanes), W, NVMAX (vectors per packed panel), MBMAX (rows per tile),
//   REGS (vector registers the tiles may use),
//   zero(), set1(T), load(p), load_n(p, n), store(p, v), store_n(p, v, n) (n < W lanes),
//   fma(a, b, c) = a*b + c, add(a, b), mul(a, b), one_minus_sq(y) = 1 - y*y,
//   tanh(v), relu(v), relu_grad(g, y) = y > 0 ? g : 0  (tanh/relu keep NaN),
//   reduce_add(v) = the sum of v's lanes.
// This header has no include guard on purpose: it is meant to be included once per ISA.
#ifndef FASTRNN_ISA
#error "define FASTRNN_ISA (the ISA namespace) before including kernels_impl.h"
#endif

namespace fastrnn::cpu::FASTRNN_ISA {
namespace {

enum class Epi { Tanh, Relu, None };

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

// Loads / stores the first n (> 0) lanes of a vector at p.
template <class O>
inline typename O::V load_cols(const typename O::T* p, int64_t n) {
  return n >= O::W ? O::load(p) : O::load_n(p, static_cast<int>(n));
}
template <class O>
inline void store_cols(typename O::T* p, typename O::V v, int64_t n) {
  if (n >= O::W) O::store(p, v); else O::store_n(p, v, static_cast<int>(n));
}

// One operand pair of a tile's sum: a [rows, K] (row stride lda) times the K panel rows
// that follow in m.
template <typename T>
struct Operand {
  const T* a;
  int64_t lda, K;
};

// Keeps a weight vector that MB > 1 rows use in a register. Without this GCC folds its load
// into each row's FMA when registers are short (the 2- and 3-row tiles), so one k costs
// MB * NV loads: the 2x4 AVX2 tile issued 10 loads per 8 FMAs, more than the two 256-bit
// loads a cycle a core serves alongside its two FMAs (measured: 2-row steps 8-11% faster
// with the loads kept in registers; results bitwise unchanged). An empty asm that claims to
// modify v makes it a value only a register holds ("v": any SSE/AVX/AVX-512 register).
// A simulated vector (kernels_avx512sim.cpp: a pair of O::Half vectors) is not one register.
template <class O, int MB>
inline void in_register(typename O::V& v) {
#if defined(__GNUC__)
  if constexpr (O::W > 1 && MB > 1 && !requires { typename O::Half; }) asm("" : "+v"(v));
#endif
}

// acc[r][v] += a[r, :] m[0:K, vector v], vector v's column k at mv[v] + k * ldm (ldm = P
// when packed, the matrix's row length when read in place).
// Each load of m feeds MB FMAs; each broadcast of a feeds NV FMAs.
template <class O, int MB, int NV>
inline void accumulate(typename O::V (&acc)[MB][NV], Operand<typename O::T> op,
                       const typename O::T* const (&mv)[NV], int64_t ldm) {
  using V = typename O::V;
  for (int64_t k = 0; k < op.K; ++k) {
    V w[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      w[v] = O::load(mv[v] + k * ldm);
      in_register<O, MB>(w[v]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MB; ++r) {
      const V av = O::set1(op.a[r * op.lda + k]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = O::fma(av, w[v], acc[r][v]);
    }
  }
}

// Where a tile's sum starts: zero (p == nullptr), one row broadcast to every row (ld == 0,
// the bias), or a [rows, ncols] block with row stride ld (a pre-activation).
template <typename T>
struct Init {
  const T* p;
  int64_t ld;
};

// Where the column panels of M [K, N] (P = NVMAX*W columns each) lie: panel p at
// m + p * panel_stride, its row k at + k * ldm. Packed by pack_impl: {K * P, P}; read in
// place from a row-major M: {P, N's row stride}.
template <typename T>
struct Panels {
  const T* m;
  int64_t panel_stride, ldm;
};

// One register tile: MB rows x NV vectors of output columns starting at column c0 (a
// multiple of W) of M, ncols in (NV-1)*W+1 .. NV*W:
//   c [MB, ncols] = epi(init + a1 [MB, K1] M[0:K1] + a2 [MB, K2] M[K1:K1+K2])
// M [K1 + K2, N] in column panels (m); a tile may span panels. c row stride ldc (init may
// alias c). Each output's sum runs over k in the same order whatever the tile's shape, so
// the results do not depend on how rows and columns were split into tiles (or threads).
// InPlace: m is read in place (panel_stride == P), every vector at m.m + its column, so one
// base register serves them all (a wide one-row tile would otherwise spill its NV bases).
template <class O, int MB, int NV, Epi E, bool InPlace = false>
void tile(Operand<typename O::T> a1, Operand<typename O::T> a2, Panels<typename O::T> m,
          int64_t c0, Init<typename O::T> init, typename O::T* c, int64_t ldc, int64_t ncols) {
  using T = typename O::T;
  using V = typename O::V;
  constexpr int W = O::W;
  constexpr int64_t P = O::NVMAX * W;
  const T* mv[NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
    const int64_t col = c0 + v * W;
    mv[v] = InPlace ? m.m + col : m.m + (col / P) * m.panel_stride + col % P;
  }
  V acc[MB][NV];
#pragma GCC unroll 16
  for (int v = 0; v < NV; ++v) {
#pragma GCC unroll 16
    for (int r = 0; r < MB; ++r) {
      acc[r][v] = init.p == nullptr ? O::zero()
                                    : load_cols<O>(init.p + r * init.ld + v * W, ncols - v * W);
    }
  }
  accumulate<O, MB, NV>(acc, a1, mv, m.ldm);
  if (a2.K > 0) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) mv[v] += a1.K * m.ldm;
    accumulate<O, MB, NV>(acc, a2, mv, m.ldm);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MB; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      V o = acc[r][v];
      if constexpr (E == Epi::Tanh) o = O::tanh(o);
      if constexpr (E == Epi::Relu) o = O::relu(o);
      store_cols<O>(c + r * ldc + v * W, o, ncols - v * W);
    }
  }
}

template <class O>
using TileFn = void (*)(Operand<typename O::T>, Operand<typename O::T>, Panels<typename O::T>,
                        int64_t, Init<typename O::T>, typename O::T*, int64_t, int64_t);

// Vectors of columns per tile for mb rows. The ISA's full tile (MBMAX x NVMAX) keeps
// MBMAX * NVMAX FMA chains in flight, enough to cover the FMA latency x pipes; with fewer
// rows (a thread's share of a small batch, the active rows of a packed batch's tail) a tile
// of NVMAX vectors would have too few chains and stall on the FMA latency (2 rows x 2
// vectors: 4 chains, half of what an AVX2 core needs), so the tile widens instead, as far
// as its accumulators, one k's weight vectors and a broadcast fit the REGS registers, at
// most kTileVectorsMax (a bound on the table's size, not measured as optimal; the in-place
// GEMV tiles of gemm_in_place choose their own, wider, widths).
constexpr int kTileVectorsMax = 6;
template <class O>
constexpr int tile_vectors(int mb) {
  int nv = O::MBMAX * O::NVMAX / mb;
  if (nv > kTileVectorsMax) nv = kTileVectorsMax;
  while (nv > 1 && (mb + 1) * nv + 1 > O::REGS) --nv;
  return nv;
}
// Fewer rows never get a narrower tile, and a full block keeps the ISA's full tile.
template <class O, int MB = 1>
constexpr bool tile_vectors_ok() {
  if constexpr (MB == O::MBMAX) {
    return tile_vectors<O>(MB) == O::NVMAX;
  } else {
    return tile_vectors<O>(MB) >= tile_vectors<O>(MB + 1) && tile_vectors_ok<O, MB + 1>();
  }
}

// The tile for (MB, NV), or nullptr for a shape tile_vectors never asks for (not compiled).
template <class O, int MB, int NV, Epi E>
constexpr TileFn<O> tile_fn() {
  if constexpr (NV <= tile_vectors<O>(MB)) {
    return &tile<O, MB, NV, E>;
  } else {
    return nullptr;
  }
}

// TileTable<O, E, seq>::fns[(mb - 1) * kTileVectorsMax + (nv - 1)] = tile<O, mb, nv, E>
template <class O, Epi E, class Seq>
struct TileTable;
template <class O, Epi E, int... I>
struct TileTable<O, E, std::integer_sequence<int, I...>> {
  static constexpr TileFn<O> fns[] = {
      tile_fn<O, I / kTileVectorsMax + 1, I % kTileVectorsMax + 1, E>()...};
};

// c [R, N] = epi(init + a1 [R, K1] M1 + a2 [R, K2] M2) in register tiles, M = [M1; M2]
// ([K1 + K2, N]) in column panels (see Panels). Rows go in balanced blocks of at most MBMAX
// (8 rows = 4 + 4, not 6 + 2: a thin tile wastes its loads), columns in balanced groups of
// at most tile_vectors(the largest block) vectors; the column group is the outer loop so
// that its weights stay in cache while every row block uses them. Read in place, M has no
// zero padding, so N must then be a multiple of W (the caller does the last N % W columns).
template <class O, Epi E>
void gemm_rows(Operand<typename O::T> a1, Operand<typename O::T> a2, Panels<typename O::T> m,
               Init<typename O::T> init, typename O::T* c, int64_t ldc, int64_t R, int64_t N) {
  constexpr int W = O::W, MBMAX = O::MBMAX;
  static_assert(tile_vectors_ok<O>(), "tile_vectors must be non-increasing, NVMAX at MBMAX");
  const TileFn<O>* table =
      TileTable<O, E, std::make_integer_sequence<int, MBMAX * kTileVectorsMax>>::fns;
  if (R <= 0 || N <= 0) return;
  const int64_t blocks = (R + MBMAX - 1) / MBMAX;
  const int64_t mb_top = (R + blocks - 1) / blocks;  // the largest block's rows
  // Blocks have mb_top or mb_top - 1 rows: tile_vectors is non-increasing, so both have
  // tiles nv_top wide.
  const int64_t nv_top = tile_vectors<O>(static_cast<int>(mb_top));
  const int64_t vectors = (N + W - 1) / W;
  const int64_t groups = (vectors + nv_top - 1) / nv_top;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t v0 = g * vectors / groups, nv = (g + 1) * vectors / groups - v0;
    const int64_t c0 = v0 * W, ncols = min64(nv * W, N - c0);
    for (int64_t blk = 0, r0 = 0; blk < blocks; ++blk) {
      const int64_t mb = (R - r0) / (blocks - blk);
      const Operand<typename O::T> b1{a1.a + r0 * a1.lda, a1.lda, a1.K};
      const Operand<typename O::T> b2{a2.a + r0 * a2.lda, a2.lda, a2.K};
      const Init<typename O::T> in{init.p ? init.p + r0 * init.ld + c0 : nullptr, init.ld};
      table[(mb - 1) * kTileVectorsMax + (nv - 1)](b1, b2, m, c0, in, c + r0 * ldc + c0, ldc,
                                                   ncols);
      r0 += mb;
    }
  }
}

// ---- The dot form: weights read in their own row-major layout, nothing packed ----------
// c [R, N] = init + a [R, K] w^T with w [N, K] row-major: every output is the dot product of
// a row of a with a row of w, both contiguous along k, so a weight row streams straight from
// where the caller holds it. For few rows (a GEMV) this is what the step is bound by: each
// weight element is read once per step and feeds RB FMAs, with no per-call packing pass.

// One tile: RB rows of a x JR rows of w, K in vectors of W (the tail masked, zero-filled),
// each sum reduced across its lanes once at the end.
template <class O, int RB, int JR>
void tile_nt(const typename O::T* a, int64_t lda, const typename O::T* w, int64_t ldw,
             int64_t K, Init<typename O::T> init, typename O::T* c, int64_t ldc) {
  using V = typename O::V;
  constexpr int W = O::W;
  V acc[RB][JR];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < JR; ++j) acc[r][j] = O::zero();
  }
  const auto step = [&](int64_t k, int n) {
    V wv[JR];
#pragma GCC unroll 16
    for (int j = 0; j < JR; ++j) wv[j] = n == W ? O::load(w + j * ldw + k) : O::load_n(w + j * ldw + k, n);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const V av = n == W ? O::load(a + r * lda + k) : O::load_n(a + r * lda + k, n);
#pragma GCC unroll 16
      for (int j = 0; j < JR; ++j) acc[r][j] = O::fma(av, wv[j], acc[r][j]);
    }
  };
  int64_t k = 0;
  for (; k + W <= K; k += W) step(k, W);
  if (k < K) step(k, static_cast<int>(K - k));
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < JR; ++j) {
      const typename O::T start = init.p == nullptr ? typename O::T(0) : init.p[r * init.ld + j];
      c[r * ldc + j] = start + O::reduce_add(acc[r][j]);
    }
  }
}

template <class O>
using TileNtFn = void (*)(const typename O::T*, int64_t, const typename O::T*, int64_t, int64_t,
                          Init<typename O::T>, typename O::T*, int64_t);

// Rows per dot-form tile (at most), and w rows per tile for rb rows: as many independent
// accumulators as 16 vector registers allow next to the w vectors (8 for one row, whose w
// loads fold into the FMAs; 8 or 12 otherwise), and more w rows means more weight rows
// streaming at once (more loads in flight from L3).
constexpr int kNtRows = 4;
constexpr int nt_cols(int rb) { return rb == 1 ? 8 : rb == 4 ? 3 : 4; }
// Weight rows per chunk: a multiple of every nt_cols, small enough that the chunk stays in
// L2 while each row block passes over it (24 rows of K <= 4096 floats: <= 384 KiB).
constexpr int64_t kNtChunk = 24;

template <class O>
TileNtFn<O> tile_nt_fn(int64_t rb, bool full) {
  switch (rb) {
    case 1: return full ? &tile_nt<O, 1, nt_cols(1)> : &tile_nt<O, 1, 1>;
    case 2: return full ? &tile_nt<O, 2, nt_cols(2)> : &tile_nt<O, 2, 1>;
    case 3: return full ? &tile_nt<O, 3, nt_cols(3)> : &tile_nt<O, 3, 1>;
    default: return full ? &tile_nt<O, 4, nt_cols(4)> : &tile_nt<O, 4, 1>;
  }
}

// c [R, N] = init + a [R, K] w^T (see tile_nt). Chunks of kNtChunk weight rows are the outer
// loop, so a chunk read from beyond L2 by the first row block stays in cache for the others;
// row blocks are balanced (5 rows = 2 + 3, not 4 + 1: a thin tile wastes its weight loads).
template <class O>
void gemm_nt_rows(const typename O::T* a, int64_t lda, int64_t K, const typename O::T* w,
                  int64_t ldw, Init<typename O::T> init, typename O::T* c, int64_t ldc, int64_t R,
                  int64_t N) {
  if (R <= 0 || N <= 0) return;
  const int64_t blocks = (R + kNtRows - 1) / kNtRows;
  for (int64_t q0 = 0; q0 < N; q0 += kNtChunk) {
    const int64_t q1 = min64(N, q0 + kNtChunk);
    for (int64_t blk = 0, r0 = 0; blk < blocks; ++blk) {
      const int64_t mb = (R - r0) / (blocks - blk);
      const int64_t jr = nt_cols(static_cast<int>(mb));
      for (int64_t j0 = q0; j0 < q1;) {
        const bool full = j0 + jr <= q1;  // whole tiles while they last, then one row at a time
        const Init<typename O::T> in{init.p ? init.p + r0 * init.ld + j0 : nullptr, init.ld};
        tile_nt_fn<O>(mb, full)(a + r0 * lda, lda, w + j0 * ldw, ldw, K, in, c + r0 * ldc + j0,
                                ldc);
        j0 += full ? jr : 1;
      }
      r0 += mb;
    }
  }
}

// Applies the activation to y [R, N] (row stride ld) in place.
template <class O>
void activate_rows(typename O::T* y, int64_t ld, int64_t R, int64_t N, Act act) {
  for (int64_t r = 0; r < R; ++r) {
    typename O::T* row = y + r * ld;
    for (int64_t j = 0; j < N; j += O::W) {
      const int64_t left = N - j;
      const auto v = load_cols<O>(row + j, left);
      store_cols<O>(row + j, act == Act::Tanh ? O::tanh(v) : O::relu(v), left);
    }
  }
}

template <class O>
void copy_row(typename O::T* dst, const typename O::T* src, int64_t n) {
  for (int64_t j = 0; j < n; j += O::W) store_cols<O>(dst + j, load_cols<O>(src + j, n - j), n - j);
}

// dz [n] = (dy + carry) * act'(y); the chain rule of rnn.h for one active row.
template <class O>
void dz_row(const typename O::T* dy, const typename O::T* carry, const typename O::T* y,
            typename O::T* dz, int64_t n, Act act) {
  for (int64_t j = 0; j < n; j += O::W) {
    const int64_t left = n - j;
    const auto g = O::add(load_cols<O>(dy + j, left), load_cols<O>(carry + j, left));
    const auto yv = load_cols<O>(y + j, left);
    const auto d = act == Act::Tanh ? O::mul(g, O::one_minus_sq(yv)) : O::relu_grad(g, yv);
    store_cols<O>(dz + j, d, left);
  }
}

// g [n] = dy + carry; dz [n] = 0   (an inactive row: its gradient passes through).
template <class O>
void pass_row(const typename O::T* dy, const typename O::T* carry, typename O::T* g,
              typename O::T* dz, int64_t n) {
  for (int64_t j = 0; j < n; j += O::W) {
    const int64_t left = n - j;
    store_cols<O>(g + j, O::add(load_cols<O>(dy + j, left), load_cols<O>(carry + j, left)), left);
    store_cols<O>(dz + j, O::zero(), left);
  }
}

// Writes rows [k0, k0 + K) of column panels [p0, p1) of a packed [Ktotal, N] matrix:
// out [ceil(N/P), Ktotal, P] gets M = (transpose ? w^T : w) with w [N, K] (transposed)
// or [K, N], row-major; columns >= N are zero.
template <class O>
void pack_impl(const typename O::T* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal,
               int64_t k0, typename O::T* out, int64_t p0, int64_t p1) {
  constexpr int64_t P = O::NVMAX * O::W;
  for (int64_t c0 = p0 * P; c0 < min64(N, p1 * P); c0 += P) {
    typename O::T* panel = out + (c0 / P) * Ktotal * P + k0 * P;
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t c = 0; c < P; ++c) {
        const int64_t j = c0 + c;
        *panel++ = j < N ? (transpose ? w[j * K + k] : w[k * N + j]) : typename O::T(0);
      }
    }
  }
}

inline bool active(const int64_t* lengths, int64_t b, int64_t t) {
  return lengths == nullptr || t < lengths[b];
}

// How many of rows [b0, b1) the GEMM of step t computes: all of them, or with non-increasing
// lengths (prefix) only the active ones, which are then rows [b0, b0 + n) (binary search).
inline int64_t rows_to_compute(const int64_t* lengths, bool prefix, int64_t b0, int64_t b1,
                               int64_t t) {
  if (lengths == nullptr || !prefix) return b1 - b0;
  int64_t lo = b0, hi = b1;  // first row with lengths[b] <= t
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (t < lengths[mid]) lo = mid + 1; else hi = mid;
  }
  return lo - b0;
}

// One forward step s for rows [b0, b1) and columns [c0, c1) (c0 a multiple of P): reads
// h_prev of those rows in every column, writes only y_t [rows, cols].
template <class O>
void forward_step_impl(const ForwardArgs<typename O::T>& a, int64_t s, int64_t b0, int64_t b1,
                       int64_t c0, int64_t c1) {
  using T = typename O::T;
  constexpr int64_t P = O::NVMAX * O::W;
  const int64_t H = a.H, I = a.I, R = b1 - b0, N = c1 - c0;
  if (R <= 0 || N <= 0) return;
  const int64_t t = a.reverse ? a.T_ - 1 - s : s;
  const int64_t tp = a.reverse ? t + 1 : t - 1;
  const T* hp = (s == 0 ? a.h0 : a.y + tp * a.B * H) + b0 * H;  // [R, H]
  const T* x = a.x + (t * a.B + b0) * I;                         // [R, I]
  T* out = a.y + (t * a.B + b0) * H;                             // [R, H]
  const Operand<T> xs{x, I, I}, hs{hp, H, H};
  const Panels<T> m{a.m + (c0 / P) * (I + H) * P, (I + H) * P, P};  // from the range's first panel
  const Init<T> init = a.y_holds_pre ? Init<T>{out + c0, H}
                                     : Init<T>{a.bias ? a.bias + c0 : nullptr, 0};
  // Inactive rows of a sorted batch are not computed; the loop below copies their state.
  const int64_t rc = rows_to_compute(a.lengths, a.active_prefix, b0, b1, t);
  if (rc > 0 && a.act == Act::Tanh) {
    gemm_rows<O, Epi::Tanh>(xs, hs, m, init, out + c0, H, rc, N);
  } else if (rc > 0) {
    gemm_rows<O, Epi::Relu>(xs, hs, m, init, out + c0, H, rc, N);
  }
  if (a.lengths != nullptr) {
    for (int64_t r = 0; r < R; ++r) {
      if (!active(a.lengths, b0 + r, t)) copy_row<O>(out + r * H + c0, hp + r * H + c0, N);
    }
  }
}

// forward_step_impl in the dot form (the gemv path): y_t [rows, c0:c1) holds the
// pre-activation (x_t W_ih^T + b, computed beforehand); it gets += h_prev W_hh[c0:c1]^T with
// W_hh read row-major as the caller holds it (a.w_hh), then the activation. Any c0, c1.
template <class O>
void forward_gemv_step_impl(const ForwardArgs<typename O::T>& a, int64_t s, int64_t b0,
                            int64_t b1, int64_t c0, int64_t c1) {
  using T = typename O::T;
  const int64_t H = a.H, R = b1 - b0, N = c1 - c0;
  if (R <= 0 || N <= 0) return;
  const int64_t t = a.reverse ? a.T_ - 1 - s : s;
  const int64_t tp = a.reverse ? t + 1 : t - 1;
  const T* hp = (s == 0 ? a.h0 : a.y + tp * a.B * H) + b0 * H;  // [R, H]
  T* out = a.y + (t * a.B + b0) * H + c0;                        // [R, N] of row stride H
  const int64_t rc = rows_to_compute(a.lengths, a.active_prefix, b0, b1, t);
  gemm_nt_rows<O>(hp, H, H, a.w_hh + c0 * H, H, Init<T>{out, H}, out, H, rc, N);
  activate_rows<O>(out, H, rc, N, a.act);
  if (a.lengths != nullptr) {
    for (int64_t r = 0; r < R; ++r) {
      if (!active(a.lengths, b0 + r, t)) copy_row<O>(out + r * H, hp + r * H + c0, N);
    }
  }
}

template <class O>
void forward_impl(const ForwardArgs<typename O::T>& a, int64_t b0, int64_t b1) {
  for (int64_t s = 0; s < a.T_; ++s) forward_step_impl<O>(a, s, b0, b1, 0, a.H);
}

// BPTT step s, first half, rows [b0, b1), columns [c0, c1): dz_t from dy_t, y_t and the
// carry of the same columns; an inactive row's g (scratch) passes through instead.
template <class O>
void backward_dz_impl(const BackwardArgs<typename O::T>& a, int64_t s, int64_t b0, int64_t b1,
                      int64_t c0, int64_t c1) {
  using T = typename O::T;
  const int64_t H = a.H, BH = a.B * a.H, N = c1 - c0;
  if (N <= 0) return;
  const int64_t t = a.reverse ? s : a.T_ - 1 - s;  // the forward order, reversed
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t o = t * BH + b * H + c0;
    T* carry = a.carry + b * H + c0;
    if (active(a.lengths, b, t)) {
      dz_row<O>(a.dy + o, carry, a.y + o, a.dz + o, N, a.act);
    } else {
      pass_row<O>(a.dy + o, carry, a.scratch + b * H + c0, a.dz + o, N);
    }
  }
}

// BPTT step s, second half: carry [rows, c0:c1) = dz_t [rows, all H] W_hh[:, c0:c1), or
// the passed-through g for an inactive row. Reads dz_t in every column.
template <class O>
void backward_carry_impl(const BackwardArgs<typename O::T>& a, int64_t s, int64_t b0,
                         int64_t b1, int64_t c0, int64_t c1) {
  using T = typename O::T;
  constexpr int64_t P = O::NVMAX * O::W;
  const int64_t H = a.H, R = b1 - b0, N = c1 - c0;
  if (R <= 0 || N <= 0) return;
  const int64_t t = a.reverse ? s : a.T_ - 1 - s;
  const T* dz = a.dz + t * a.B * H + b0 * H;  // [R, H]
  T* carry = a.carry + b0 * H;                // [R, H]
  const int64_t rc = rows_to_compute(a.lengths, a.active_prefix, b0, b1, t);
  if (rc > 0) {  // inactive rows of a sorted batch: only the copy below
    gemm_rows<O, Epi::None>(Operand<T>{dz, H, H}, Operand<T>{nullptr, 0, 0},
                            Panels<T>{a.m + (c0 / P) * H * P, H * P, P}, Init<T>{nullptr, 0},
                            carry + c0, H, rc, N);
  }
  if (a.lengths != nullptr) {
    for (int64_t b = b0; b < b1; ++b) {
      if (!active(a.lengths, b, t)) copy_row<O>(a.carry + b * H + c0, a.scratch + b * H + c0, N);
    }
  }
}

// c [R, N] = a [R, K] M with M [K, N] row-major (row stride ldm) read in place, no packing:
// the register tiles over every whole vector of columns, the last N % W columns one dot
// product at a time (a panel read in place has no zero padding to load past its end).
template <class O>
void gemm_in_place(const typename O::T* a, int64_t lda, int64_t K, const typename O::T* m,
                   int64_t ldm, typename O::T* c, int64_t ldc, int64_t R, int64_t N) {
  using T = typename O::T;
  constexpr int64_t P = O::NVMAX * O::W;
  const int64_t nv = N - N % O::W;
  if (R <= 0) return;
  // One or two rows (a GEMV): tiles wider than the packed ones, 12 accumulator vectors of
  // one row or 6 of two, so that a weight row contributes 12 vectors at once (12 FMA
  // chains in flight, several cache lines per row streaming together).
  int64_t j = 0;
  const Operand<T> none{nullptr, 0, 0};
  const Panels<T> in_place{m, P, ldm};  // vector at column j: m + j
  if (R == 1) {
    for (; j + 12 * O::W <= nv; j += 12 * O::W) {
      tile<O, 1, 12, Epi::None, true>(Operand<T>{a, lda, K}, none, in_place, j,
                                      Init<T>{nullptr, 0}, c + j, ldc, 12 * O::W);
    }
  } else if (R == 2) {
    for (; j + 6 * O::W <= nv; j += 6 * O::W) {
      tile<O, 2, 6, Epi::None, true>(Operand<T>{a, lda, K}, none, in_place, j,
                                     Init<T>{nullptr, 0}, c + j, ldc, 6 * O::W);
    }
  }
  if (nv > j) {
    gemm_rows<O, Epi::None>(Operand<T>{a, lda, K}, none, Panels<T>{m + j, P, ldm},
                            Init<T>{nullptr, 0}, c + j, ldc, R, nv - j);
  }
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t j = nv; j < N; ++j) {
      T sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += a[r * lda + k] * m[k * ldm + j];
      c[r * ldc + j] = sum;
    }
  }
}

// backward_carry_impl on W_hh read in place (a.w_hh, row-major), the gemv path's BPTT step:
// no packed copy of W_hh. c0 a multiple of P (or of W), any c1.
template <class O>
void backward_gemv_carry_impl(const BackwardArgs<typename O::T>& a, int64_t s, int64_t b0,
                              int64_t b1, int64_t c0, int64_t c1) {
  using T = typename O::T;
  const int64_t H = a.H, R = b1 - b0, N = c1 - c0;
  if (R <= 0 || N <= 0) return;
  const int64_t t = a.reverse ? s : a.T_ - 1 - s;
  const T* dz = a.dz + t * a.B * H + b0 * H;  // [R, H]
  T* carry = a.carry + b0 * H;                // [R, H]
  const int64_t rc = rows_to_compute(a.lengths, a.active_prefix, b0, b1, t);
  gemm_in_place<O>(dz, H, H, a.w_hh + c0, H, carry + c0, H, rc, N);
  if (a.lengths != nullptr) {
    for (int64_t b = b0; b < b1; ++b) {
      if (!active(a.lengths, b, t)) copy_row<O>(a.carry + b * H + c0, a.scratch + b * H + c0, N);
    }
  }
}

template <class O>
void backward_impl(const BackwardArgs<typename O::T>& a, int64_t b0, int64_t b1) {
  using T = typename O::T;
  for (int64_t j = b0 * a.H; j < b1 * a.H; ++j) a.carry[j] = T(0);
  for (int64_t s = 0; s < a.T_; ++s) {
    backward_dz_impl<O>(a, s, b0, b1, 0, a.H);
    backward_carry_impl<O>(a, s, b0, b1, 0, a.H);
  }
}

// ---- The transposed form: BPTT's weight gradients, both operands read in place ---------
// c [M, N] (+)= a^T x with a [K, M] and x [K, N] row-major over k: dW_ih = dz^T x and
// dW_hh = dz^T h_prev, summed over the T*B rows. A tile's MB rows of c are MB consecutive
// columns of a: at each k it broadcasts them from one row of a (one cache line) and loads
// NV vectors of the same row of x, so neither operand needs a transposed or packed copy.

// One tile: c [MB, ncols] (+)= a[0:K, 0:MB]^T x[0:K, 0:ncols], ncols in (NV-1)*W+1 .. NV*W;
// Edge: the last vector is partial (masked loads of x: its row may end there).
template <class O, int MB, int NV, bool Edge>
void tile_tn(const typename O::T* a, int64_t lda, const typename O::T* x, int64_t ldx,
             int64_t K, typename O::T* c, int64_t ldc, int64_t ncols, bool accumulate) {
  using V = typename O::V;
  constexpr int W = O::W;
  V acc[MB][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MB; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      acc[r][v] = accumulate ? load_cols<O>(c + r * ldc + v * W, ncols - v * W) : O::zero();
    }
  }
  const int64_t last = ncols - (NV - 1) * W;  // columns of the last vector
  for (int64_t k = 0; k < K; ++k, a += lda, x += ldx) {
    V w[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      w[v] = Edge && v == NV - 1 ? O::load_n(x + v * W, static_cast<int>(last)) : O::load(x + v * W);
      in_register<O, MB>(w[v]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < MB; ++r) {
      const V av = O::set1(a[r]);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[r][v] = O::fma(av, w[v], acc[r][v]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MB; ++r) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) store_cols<O>(c + r * ldc + v * W, acc[r][v], ncols - v * W);
  }
}

template <class O>
using TileTnFn = void (*)(const typename O::T*, int64_t, const typename O::T*, int64_t, int64_t,
                          typename O::T*, int64_t, int64_t, bool);

// TileTnTable<O, seq>::fns[((mb - 1) * NVMAX + (nv - 1)) * 2 + edge] = tile_tn<O, mb, nv, edge>
template <class O, class Seq>
struct TileTnTable;
template <class O, int... I>
struct TileTnTable<O, std::integer_sequence<int, I...>> {
  static constexpr TileTnFn<O> fns[] = {
      &tile_tn<O, I / 2 / O::NVMAX + 1, I / 2 % O::NVMAX + 1, (I % 2 == 1 && O::W > 1)>...};
};

// Rows [r0, r1) of c, all N columns: K in blocks of k_block (a block of a panel of x, k_block
// x NVMAX*W elements, stays in L1 while the row tiles use it), rows in blocks of m_block
// whose part of a (k_block rows of m_block elements, a row apart) stays in L2 while every
// panel of x passes over it; within those, row tiles in balanced blocks of at most MBMAX
// rows (as gemm_rows). Each c element sums its k in order, block after block.
template <class O>
void gemm_tn_rows(const typename O::T* a, int64_t lda, const typename O::T* x, int64_t ldx,
                  int64_t K, typename O::T* c, int64_t ldc, int64_t N, int64_t r0, int64_t r1,
                  bool accumulate, int64_t k_block, int64_t m_block) {
  constexpr int W = O::W, MBMAX = O::MBMAX, NVMAX = O::NVMAX;
  constexpr int64_t P = NVMAX * W;
  const TileTnFn<O>* table = TileTnTable<O, std::make_integer_sequence<int, MBMAX * NVMAX * 2>>::fns;
  if (r1 <= r0 || N <= 0) return;
  if (K <= 0) {  // an empty sum: c = 0 unless accumulating
    for (int64_t r = r0; r < r1 && !accumulate; ++r) {
      for (int64_t n = 0; n < N; ++n) c[r * ldc + n] = 0;
    }
    return;
  }
  const int64_t kb = k_block < 1 ? K : k_block;
  const int64_t mbk = m_block < MBMAX ? MBMAX : m_block;
  for (int64_t k0 = 0; k0 < K; k0 += kb) {
    const int64_t kk = min64(kb, K - k0);
    for (int64_t m0 = r0; m0 < r1; m0 += mbk) {
      const int64_t m1 = min64(m0 + mbk, r1);
      const int64_t blocks = (m1 - m0 + MBMAX - 1) / MBMAX;
      for (int64_t n0 = 0; n0 < N; n0 += P) {
        const int64_t ncols = min64(P, N - n0);
        const int64_t nv = (ncols + W - 1) / W;
        const int edge = ncols % W != 0;
        for (int64_t blk = 0, r = m0; blk < blocks; ++blk) {
          const int64_t mb = (m1 - r) / (blocks - blk);
          table[((mb - 1) * NVMAX + (nv - 1)) * 2 + edge](
              a + k0 * lda + r, lda, x + k0 * ldx + n0, ldx, kk, c + r * ldc + n0, ldc, ncols,
              accumulate || k0 > 0);
          r += mb;
        }
      }
    }
  }
}

}  // namespace

template <typename T>
void gemm_nt(const T* a, int64_t lda, int64_t K, const T* w, int64_t ldw, const T* bias, T* c,
             int64_t ldc, int64_t N, int64_t r0, int64_t r1, int64_t row_block) {
  const int64_t step = row_block < 1 ? 1 : row_block;
  for (int64_t rb = r0; rb < r1; rb += step) {
    gemm_nt_rows<Ops<T>>(a + rb * lda, lda, K, w, ldw, Init<T>{bias, 0}, c + rb * ldc, ldc,
                         min64(step, r1 - rb), N);
  }
}
template void gemm_nt<float>(const float*, int64_t, int64_t, const float*, int64_t, const float*,
                             float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void gemm_nt<double>(const double*, int64_t, int64_t, const double*, int64_t,
                              const double*, double*, int64_t, int64_t, int64_t, int64_t,
                              int64_t);

template <typename T>
void gemm_packed(const T* a, int64_t lda, int64_t K, const T* m, const T* bias, T* c,
                 int64_t ldc, int64_t N, int64_t r0, int64_t r1, int64_t row_block) {
  const int64_t step = row_block < 1 ? 1 : row_block;
  for (int64_t rb = r0; rb < r1; rb += step) {
    constexpr int64_t P = Ops<T>::NVMAX * Ops<T>::W;
    gemm_rows<Ops<T>, Epi::None>(Operand<T>{a + rb * lda, lda, K}, Operand<T>{nullptr, 0, 0},
                                 Panels<T>{m, K * P, P}, Init<T>{bias, 0}, c + rb * ldc, ldc,
                                 min64(step, r1 - rb), N);
  }
}
template void gemm_packed<float>(const float*, int64_t, int64_t, const float*, const float*,
                                 float*, int64_t, int64_t, int64_t, int64_t, int64_t);
template void gemm_packed<double>(const double*, int64_t, int64_t, const double*, const double*,
                                  double*, int64_t, int64_t, int64_t, int64_t, int64_t);

template <typename T>
void gemm_tn(const T* a, int64_t lda, const T* x, int64_t ldx, int64_t K, T* c, int64_t ldc,
             int64_t N, int64_t r0, int64_t r1, bool accumulate, int64_t k_block,
             int64_t m_block) {
  gemm_tn_rows<Ops<T>>(a, lda, x, ldx, K, c, ldc, N, r0, r1, accumulate, k_block, m_block);
}
template void gemm_tn<float>(const float*, int64_t, const float*, int64_t, int64_t, float*,
                             int64_t, int64_t, int64_t, int64_t, bool, int64_t, int64_t);
template void gemm_tn<double>(const double*, int64_t, const double*, int64_t, int64_t, double*,
                              int64_t, int64_t, int64_t, int64_t, bool, int64_t, int64_t);

template <typename T>
void column_sums(const T* a, int64_t lda, int64_t K, T* out, int64_t r0, int64_t r1) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr int W = O::W, NV = 4;  // 4 independent sums in flight per k
  int64_t r = r0;
  for (; r < r1; r += NV * W) {
    const int64_t n = min64(NV * W, r1 - r);
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = O::zero();
    const T* p = a + r;
    for (int64_t k = 0; k < K; ++k, p += lda) {
      for (int v = 0; v < NV; ++v) {
        if (v * W < n) acc[v] = O::add(acc[v], load_cols<O>(p + v * W, n - v * W));
      }
    }
    for (int v = 0; v < NV; ++v) {
      if (v * W < n) store_cols<O>(out + r + v * W, acc[v], n - v * W);
    }
  }
}
template void column_sums<float>(const float*, int64_t, int64_t, float*, int64_t, int64_t);
template void column_sums<double>(const double*, int64_t, int64_t, double*, int64_t, int64_t);

double fma_loop(int64_t iters) {
  using O = Ops<float>;
  using V = typename O::V;
  constexpr int kChains = 12;
  V acc[kChains];
#pragma GCC unroll 12
  for (int c = 0; c < kChains; ++c) acc[c] = O::set1(1e-3f * float(c));
  const V a = O::set1(0.999999f), b = O::set1(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = O::fma(acc[c], a, b);
  }
  V sum = acc[0];
  for (int c = 1; c < kChains; ++c) sum = O::add(sum, acc[c]);
  float lanes[O::W];
  O::store(lanes, sum);
  volatile float sink = lanes[0];  // keeps the chains alive
  (void)sink;
  return 2.0 * kChains * O::W * double(iters);
}

int64_t panel_cols(bool is_double) {
  return is_double ? Ops<double>::NVMAX * Ops<double>::W : Ops<float>::NVMAX * Ops<float>::W;
}
template <typename T>
void pack(const T* w, bool transpose, int64_t K, int64_t N, int64_t Ktotal, int64_t k0, T* out,
          int64_t p0, int64_t p1) {
  pack_impl<Ops<T>>(w, transpose, K, N, Ktotal, k0, out, p0, p1);
}
template <typename T>
void forward_rows(const ForwardArgs<T>& a, int64_t b_begin, int64_t b_end) {
  forward_impl<Ops<T>>(a, b_begin, b_end);
}
template <typename T>
void backward_rows(const BackwardArgs<T>& a, int64_t b_begin, int64_t b_end) {
  backward_impl<Ops<T>>(a, b_begin, b_end);
}
template void pack<float>(const float*, bool, int64_t, int64_t, int64_t, int64_t, float*,
                          int64_t, int64_t);
template void pack<double>(const double*, bool, int64_t, int64_t, int64_t, int64_t, double*,
                           int64_t, int64_t);
template void forward_rows<float>(const ForwardArgs<float>&, int64_t, int64_t);
template void forward_rows<double>(const ForwardArgs<double>&, int64_t, int64_t);
template void backward_rows<float>(const BackwardArgs<float>&, int64_t, int64_t);
template void backward_rows<double>(const BackwardArgs<double>&, int64_t, int64_t);
template <typename T>
void forward_step(const ForwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,
                  int64_t c1) {
  forward_step_impl<Ops<T>>(a, s, b0, b1, c0, c1);
}
template <typename T>
void backward_dz(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,
                 int64_t c1) {
  backward_dz_impl<Ops<T>>(a, s, b0, b1, c0, c1);
}
template <typename T>
void backward_carry(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,
                    int64_t c1) {
  backward_carry_impl<Ops<T>>(a, s, b0, b1, c0, c1);
}
template <typename T>
void forward_gemv_step(const ForwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,
                       int64_t c1) {
  forward_gemv_step_impl<Ops<T>>(a, s, b0, b1, c0, c1);
}
template <typename T>
void backward_gemv_carry(const BackwardArgs<T>& a, int64_t s, int64_t b0, int64_t b1, int64_t c0,
                         int64_t c1) {
  backward_gemv_carry_impl<Ops<T>>(a, s, b0, b1, c0, c1);
}
#define FASTRNN_STEP_INSTANCES(T)                                                             \
  template void forward_step<T>(const ForwardArgs<T>&, int64_t, int64_t, int64_t, int64_t,    \
                                int64_t);                                                     \
  template void backward_dz<T>(const BackwardArgs<T>&, int64_t, int64_t, int64_t, int64_t,    \
                               int64_t);                                                      \
  template void backward_carry<T>(const BackwardArgs<T>&, int64_t, int64_t, int64_t, int64_t, \
                                  int64_t);                                                   \
  template void forward_gemv_step<T>(const ForwardArgs<T>&, int64_t, int64_t, int64_t,        \
                                     int64_t, int64_t);                                       \
  template void backward_gemv_carry<T>(const BackwardArgs<T>&, int64_t, int64_t, int64_t,     \
                                       int64_t, int64_t);
FASTRNN_STEP_INSTANCES(float)
FASTRNN_STEP_INSTANCES(double)
#undef FASTRNN_STEP_INSTANCES

}  // namespace fastrnn::cpu::FASTRNN_ISA
