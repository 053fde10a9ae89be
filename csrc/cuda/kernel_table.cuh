// The CUDA side of the persistent kernels' template tables: register counts and
// occupancy of the instantiated kernels (cudaFuncGetAttributes / cudaOccupancy*), and the
// launch (plain or cooperative) of the kernel a plan names.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "kpt_dispatch.h"
#include "plan_types.h"

namespace fastrnn::cuda_kernels {

// Queries over a table of persistent kernels, shared by the forward and the backward:
// `Table::get<T, KPT>()` returns the kernel instantiated for element type T and kpt KPT.
template <typename Table, typename T>
const void* table_kernel(int kpt) {
  const void* fn = nullptr;
  dispatch_kpt<T>(kpt, [&](auto k) { fn = Table::template get<T, decltype(k)::value>(); });
  return fn;
}

template <typename Table, typename T>
int table_attrs(int* regs) {
  int static_smem = 0;
  for_each_kpt<T>([&](int i, auto k) {
    cudaFuncAttributes attr;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attr, Table::template get<T, decltype(k)::value>()));
    regs[i] = attr.numRegs;
    if (int(attr.sharedSizeBytes) > static_smem) static_smem = int(attr.sharedSizeBytes);
  });
  return static_smem;
}

// Registers of every instantiated kpt into regs (launch_plan order); returns the largest
// static shared memory among them.
template <typename Table>
int kernel_table_attrs(int elem_size, int* regs) {
  return elem_size == 8 ? table_attrs<Table, double>(regs) : table_attrs<Table, float>(regs);
}

// Blocks of the plan's kernel that fit on one SM at the plan's block size and shared memory.
template <typename Table>
int kernel_table_occupancy(int elem_size, const plan::Plan& p) {
  const void* fn = elem_size == 8 ? table_kernel<Table, double>(p.kpt) : table_kernel<Table, float>(p.kpt);
  int n = 0;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, p.threads, p.smem_bytes));
  return n;
}

// Launches a persistent kernel as the plan says: one block with a plain launch, several
// blocks cooperatively (the kernels call grid.sync(), which needs co-resident blocks).
template <typename... Params>
void launch_persistent(void (*kernel)(Params...), const plan::Plan& p, cudaStream_t stream,
                       std::type_identity_t<Params>... args) {
  if (p.grid == 1) {
    kernel<<<1, p.threads, p.smem_bytes, stream>>>(args...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    void* params[] = {static_cast<void*>(&args)...};  // the addresses of this call's copies
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(p.grid),
                                               dim3(p.threads), params, size_t(p.smem_bytes),
                                               stream));
  }
}

}  // namespace fastrnn::cuda_kernels
