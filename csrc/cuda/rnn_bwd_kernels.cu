// Persistent reverse-time recurrence of BPTT (math in ../rnn.h). W_hh^T stays in
// registers for all steps. Per step, every block rebuilds the full dz_t rows of a batch
// tile in shared memory from dy_t, the carry and y_t (cheap, elementwise; each block
// writes only its own columns of dz to global memory), then computes its columns of
// carry' = dz_t W_hh (+ g for inactive rows). The carry is double-buffered in global
// memory: step n reads carry[n % 2] and writes carry[(n + 1) % 2], so one barrier per
// step suffices. No atomics: every output element has exactly one writer.
#include <c10/cuda/CUDAException.h>
#include <cooperative_groups.h>

#include "kernels.h"
#include "kpt_dispatch.cuh"
#include "recurrence.cuh"

namespace fastrnn::cuda_kernels {
namespace {

template <typename T, int KPT>
__global__ void __launch_bounds__(plan::kThreads, plan::kMinBlocksPerSm)
    bwd_persistent_kernel(BwdArgs<T> a, int ks, int rows_per_tile) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* s = reinterpret_cast<T*>(smem_raw);  // [rows_per_tile, hp] dz tile
  constexpr int R = pass_rows<T, KPT>();
  const int tid = threadIdx.x;
  const int lane = tid & (ks - 1);
  const int cols = plan::kThreads / ks;
  const int64_t H = a.hidden, B = a.batch, BH = B * H;
  const int64_t first_col = int64_t(blockIdx.x) * cols;
  const int64_t out = first_col + tid / ks;
  const int hp = ks * KPT;
  T w[KPT];
  // M(out, k) = W_hh[k, out]: the matrix of carry' = dz W_hh.
  load_weights<T, KPT>(w, a.w_hh, H, out, lane, ks, 1, H);
  const bool many_blocks = gridDim.x > 1;

  for (int64_t n = 0; n < a.steps; ++n) {
    // The forward visited t in the opposite order.
    const int64_t t = a.reverse ? n : a.steps - 1 - n;
    const T* carry = a.carry + (n & 1) * BH;  // written by other blocks: coherent loads
    T* carry_next = a.carry + ((n + 1) & 1) * BH;
    const T* __restrict__ dy_t = a.dy + t * BH;
    const T* __restrict__ y_t = a.y + t * BH;
    T* dz_t = a.dz + t * BH;
    for (int64_t b0 = 0; b0 < B; b0 += rows_per_tile) {
      for (int e = tid; e < rows_per_tile * hp; e += plan::kThreads) {
        const int r = e / hp, j = e - r * hp;
        const int64_t b = b0 + r;
        T d = T(0);
        if (b < B && j < H) {
          const int64_t idx = b * H + j;
          if (row_active(a.lengths, b, t)) {
            d = (__ldg(dy_t + idx) + carry[idx]) * act_grad_from_output(__ldg(y_t + idx), a.relu);
          }
          if (j >= first_col && j < first_col + cols) dz_t[idx] = d;
        }
        s[e] = d;
      }
      __syncthreads();
      for (int r0 = 0; r0 < rows_per_tile && b0 + r0 < B; r0 += R) {
        T acc[R];
        dot_rows<T, KPT, R>(acc, w, s, r0, hp, lane, ks);
        if (lane == 0 && out < H) {
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int64_t b = b0 + r0 + r;
            if (b < B) {
              const int64_t idx = b * H + out;
              // An inactive row passes its whole gradient g on to h_prev.
              carry_next[idx] = row_active(a.lengths, b, t)
                                    ? acc[r]
                                    : acc[r] + (__ldg(dy_t + idx) + carry[idx]);
            }
          }
        }
      }
      __syncthreads();
    }
    if (many_blocks) cooperative_groups::this_grid().sync();
  }
}

struct BwdKernels {
  template <typename T, int KPT>
  static const void* get() { return (const void*)&bwd_persistent_kernel<T, KPT>; }
};

}  // namespace

int bwd_kernel_attrs(int elem_size, int* regs) {
  return kernel_table_attrs<BwdKernels>(elem_size, regs);
}

int bwd_occupancy(int elem_size, const plan::Plan& p) {
  return kernel_table_occupancy<BwdKernels>(elem_size, p);
}

template <typename T>
void launch_bwd_persistent(const BwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  dispatch_kpt<T>(p.kpt, [&](auto k) {
    launch_persistent(&bwd_persistent_kernel<T, k.value>, p, stream, a, p.ks, p.rows_per_tile);
  });
}

template void launch_bwd_persistent<float>(const BwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_bwd_persistent<double>(const BwdArgs<double>&, const plan::Plan&, cudaStream_t);

}  // namespace fastrnn::cuda_kernels
