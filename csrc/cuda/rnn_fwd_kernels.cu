// Host-side launchers of the persistent forward kernel (its body: rnn_fwd_body.cuh, the
// one copy that the SIMT simulation compiles too).
#include "kernel_table.cuh"
#include "kernels.h"
#include "rnn_fwd_body.cuh"

namespace fastrnn::cuda_kernels {
namespace {

struct FwdKernels {
  template <typename T, int KPT>
  static const void* get() { return (const void*)&fwd_persistent_kernel<T, KPT>; }
};

}  // namespace

int fwd_kernel_attrs(int elem_size, int* regs) {
  return kernel_table_attrs<FwdKernels>(elem_size, regs);
}

int fwd_occupancy(int elem_size, const plan::Plan& p) {
  return kernel_table_occupancy<FwdKernels>(elem_size, p);
}

template <typename T>
void launch_fwd_persistent(const FwdArgs<T>& a, const plan::Plan& p, cudaStream_t stream) {
  dispatch_kpt<T>(p.kpt, [&](auto k) {
    launch_persistent(&fwd_persistent_kernel<T, k.value>, p, stream, a, p.ks, p.rows_per_tile,
                      p.resident != 0);
  });
}

template void launch_fwd_persistent<float>(const FwdArgs<float>&, const plan::Plan&, cudaStream_t);
template void launch_fwd_persistent<double>(const FwdArgs<double>&, const plan::Plan&, cudaStream_t);

}  // namespace fastrnn::cuda_kernels
