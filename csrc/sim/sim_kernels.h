// The simulated launches of the CUDA kernels (sim_kernels.cpp): the same kernel bodies
// as the GPU (../cuda/*_body.cuh) run by the SIMT simulation on CPU memory, with the
// same launch configuration (grid, block, dynamic shared memory, cooperative or not) as
// ../cuda/kernel_table.cuh and ../cuda/rnn_pointwise.cu. Each throws std::runtime_error
// listing what the checkers found.
#pragma once

#include <cstdint>

#include "../cuda/kernel_args.h"
#include "../cuda/plan_types.h"

namespace fastrnn::sim_kernels {

template <typename T>
void launch_fwd_persistent(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p);
template <typename T>
void launch_bwd_persistent(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p);

// The tiled family (../cuda/tiled_body.cuh): a plain launch when one column tile covers H,
// else cooperative, as ../cuda/rnn_tiled_kernels.cu.
template <typename T>
void launch_fwd_tiled(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p);
template <typename T>
void launch_bwd_tiled(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p);

template <typename T>
void launch_fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t, int64_t B,
                          int64_t H, bool relu);
template <typename T>
void launch_bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                          const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu);

}  // namespace fastrnn::sim_kernels
