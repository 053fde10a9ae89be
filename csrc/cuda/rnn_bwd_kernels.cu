// Host-side launchers of the persistent BPTT kernel (its body: rnn_bwd_body.cuh, the
// one copy that the SIMT simulation compiles too).
#include "kernel_table.cuh"
#include "kernels.h"
#include "rnn_bwd_body.cuh"

namespace fastrnn::cuda_kernels {
namespace {

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
