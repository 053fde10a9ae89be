// The simulation's translation unit of the CUDA kernels: it includes the very kernel
// bodies that nvcc compiles (../cuda/*_body.cuh; tests/test_cuda_sim.py checks that no
// other copy exists) with FASTRNN_SIMT_HOST, so ../cuda/simt.h maps the CUDA names onto
// the SIMT runtime (simt_runtime.h). The launchers mirror the GPU's: one block plain, a
// grid cooperatively; the pointwise kernels as a grid-stride loop of 256-thread blocks.
#define FASTRNN_SIMT_HOST 1

#include "sim_kernels.h"

#include <stdexcept>
#include <string>
#include <type_traits>

#include "../cuda/kpt_dispatch.h"
#include "../cuda/rnn_bwd_body.cuh"
#include "../cuda/rnn_fwd_body.cuh"
#include "../cuda/rnn_pointwise_body.cuh"
#include "../cuda/tiled_body.cuh"
#include "simt_runtime.h"

namespace fastrnn::sim_kernels {
namespace {

template <typename T>
const char* type_name() {
  return sizeof(T) == 8 ? "double" : "float";
}

template <typename T>
simt::LaunchConfig persistent_config(const char* kernel, const plan::Plan& p) {
  simt::LaunchConfig c;
  c.kernel = std::string(kernel) + "<" + type_name<T>() + ", " + std::to_string(p.kpt) + ">";
  c.grid = unsigned(p.grid);
  c.block = unsigned(p.threads);
  c.smem_bytes = size_t(p.smem_bytes);
  c.cooperative = p.grid > 1;  // kernel_table.cuh: launch_persistent
  return c;
}

template <typename T>
simt::LaunchConfig tiled_config(const char* kernel, const plan::Plan& p) {
  simt::LaunchConfig c;
  c.kernel = std::string(kernel) + "<" + type_name<T>() + ", " + std::to_string(p.micro_r) + ", " +
             std::to_string(p.micro_c) + ">";
  c.grid = unsigned(p.grid);
  c.block = unsigned(p.threads);
  c.smem_bytes = size_t(p.smem_bytes);
  c.cooperative = p.col_tiles > 1;  // rnn_tiled_kernels.cu: grid.sync() only across column tiles
  return c;
}

// The tensor-core kernels' name: bfloat16 operands (the only type they run).
std::string mma_name(const char* kernel) { return std::string(kernel) + "[bf16]"; }

template <typename T>
simt::LaunchConfig pointwise_config(const char* kernel, int64_t n) {
  simt::LaunchConfig c;
  c.kernel = std::string(kernel) + "<" + type_name<T>() + ">";
  c.grid = unsigned(cuda_kernels::pointwise_blocks(n));
  c.block = unsigned(cuda_kernels::kPointwiseThreads);
  c.barrier_free = true;
  return c;
}

template <typename T>
size_t bytes(int64_t n) {
  return size_t(n) * sizeof(T);
}

// The global buffers of a recurrence kernel's arguments, registered with the checker (which
// are written, which only read): one list for every forward launcher, one for the backward.
template <typename T>
void add_arg_buffers(simt::Launch& launch, const cuda_kernels::FwdArgs<T>& a) {
  const int64_t BH = a.batch * a.hidden;
  launch.add_buffer("y", a.y, bytes<T>(a.steps * BH), /*writable=*/true);
  launch.add_buffer("h0", a.h0, bytes<T>(BH), false);
  launch.add_buffer("w_hh", a.w_hh, bytes<T>(a.hidden * a.hidden), false);
  launch.add_buffer("lengths", a.lengths, bytes<int64_t>(a.batch), false);
}

template <typename T>
void add_arg_buffers(simt::Launch& launch, const cuda_kernels::BwdArgs<T>& a) {
  const int64_t BH = a.batch * a.hidden;
  launch.add_buffer("dz", a.dz, bytes<T>(a.steps * BH), /*writable=*/true);
  launch.add_buffer("carry", a.carry, bytes<T>(2 * BH), true);
  launch.add_buffer("dy", a.dy, bytes<T>(a.steps * BH), false);
  launch.add_buffer("y", a.y, bytes<T>(a.steps * BH), false);
  launch.add_buffer("w_hh", a.w_hh, bytes<T>(a.hidden * a.hidden), false);
  launch.add_buffer("lengths", a.lengths, bytes<int64_t>(a.batch), false);
}

}  // namespace

// The tensor-core path (plan.mma, bfloat16 only: plan_types.h mma_keeps_contract): T = float,
// weights in the model's bfloat16.
template <bool kBwd, class Args>
void launch_tiled_mma(const Args& a, const plan::Plan& p, simt::Launch& launch) {
  if (p.mma != plan::kMmaBF16) throw std::logic_error("fastrnn: tensor-core tiles are bfloat16 only");
  launch.add_buffer("w_hh_mma", a.w_hh_mma, bytes<simt::bf16>(a.hidden * a.hidden), false);
  cuda_kernels::dispatch_fragments(p.micro_r, p.micro_c, [&](auto fr, auto fc) {
    launch.run([&] {
      tiled_kernel<float, decltype(fr)::value, decltype(fc)::value, Args, simt::bf16>(
          a, cuda_kernels::tiled_shape(p));
    });
  });
}

template <typename T>
void launch_fwd_persistent(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p) {
  cuda_kernels::dispatch_kpt<T>(p.kpt, [&](auto k) {
    simt::Launch launch(persistent_config<T>("fwd_persistent_kernel", p));
    add_arg_buffers(launch, a);
    launch.run([&] {
      fwd_persistent_kernel<T, decltype(k)::value>(a, p.ks, p.rows_per_tile, p.resident != 0);
    });
  });
}

template <typename T>
void launch_bwd_persistent(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p) {
  cuda_kernels::dispatch_kpt<T>(p.kpt, [&](auto k) {
    simt::Launch launch(persistent_config<T>("bwd_persistent_kernel", p));
    add_arg_buffers(launch, a);
    launch.run([&] { bwd_persistent_kernel<T, decltype(k)::value>(a, p.ks, p.rows_per_tile); });
  });
}

template <typename T>
void launch_fwd_tiled(const cuda_kernels::FwdArgs<T>& a, const plan::Plan& p) {
  if constexpr (std::is_same_v<T, float>) {
    if (p.mma != 0) {
      simt::Launch launch(tiled_config<T>(mma_name("tiled_mma_fwd_kernel").c_str(), p));
      add_arg_buffers(launch, a);
      launch_tiled_mma<false>(a, p, launch);
      return;
    }
  }
  cuda_kernels::dispatch_micro(p.micro_r, p.micro_c, [&](auto mr, auto mc) {
    simt::Launch launch(tiled_config<T>("tiled_fwd_kernel", p));
    add_arg_buffers(launch, a);
    launch.run([&] {
      tiled_kernel<T, decltype(mr)::value, decltype(mc)::value, cuda_kernels::FwdArgs<T>>(
          a, cuda_kernels::tiled_shape(p));
    });
  });
}

template <typename T>
void launch_bwd_tiled(const cuda_kernels::BwdArgs<T>& a, const plan::Plan& p) {
  if constexpr (std::is_same_v<T, float>) {
    if (p.mma != 0) {
      simt::Launch launch(tiled_config<T>(mma_name("tiled_mma_bwd_kernel").c_str(), p));
      add_arg_buffers(launch, a);
      launch_tiled_mma<true>(a, p, launch);
      return;
    }
  }
  cuda_kernels::dispatch_micro(p.micro_r, p.micro_c, [&](auto mr, auto mc) {
    simt::Launch launch(tiled_config<T>("tiled_bwd_kernel", p));
    add_arg_buffers(launch, a);
    launch.run([&] {
      tiled_kernel<T, decltype(mr)::value, decltype(mc)::value, cuda_kernels::BwdArgs<T>>(
          a, cuda_kernels::tiled_shape(p));
    });
  });
}

template <typename T>
void launch_fwd_pointwise(T* y_t, const T* h_prev, const int64_t* lengths, int64_t t, int64_t B,
                          int64_t H, bool relu) {
  simt::Launch launch(pointwise_config<T>("fwd_pointwise_kernel", B * H));
  launch.add_buffer("y_t", y_t, bytes<T>(B * H), true);
  launch.add_buffer("h_prev", h_prev, bytes<T>(B * H), false);
  launch.add_buffer("lengths", lengths, bytes<int64_t>(B), false);
  launch.run([&] {
    fwd_pointwise_kernel<T>(simt::global(y_t), simt::global(h_prev), simt::global(lengths), t, B,
                            H, relu);
  });
}

template <typename T>
void launch_bwd_pointwise(T* dz_t, T* carry_next, const T* dy_t, const T* y_t, const T* carry,
                          const int64_t* lengths, int64_t t, int64_t B, int64_t H, bool relu) {
  simt::Launch launch(pointwise_config<T>("bwd_pointwise_kernel", B * H));
  launch.add_buffer("dz_t", dz_t, bytes<T>(B * H), true);
  launch.add_buffer("carry_next", carry_next, bytes<T>(B * H), true);
  launch.add_buffer("dy_t", dy_t, bytes<T>(B * H), false);
  launch.add_buffer("y_t", y_t, bytes<T>(B * H), false);
  launch.add_buffer("carry", carry, bytes<T>(B * H), false);
  launch.add_buffer("lengths", lengths, bytes<int64_t>(B), false);
  launch.run([&] {
    bwd_pointwise_kernel<T>(simt::global(dz_t), simt::global(carry_next), simt::global(dy_t),
                            simt::global(y_t), simt::global(carry), simt::global(lengths), t, B,
                            H, relu);
  });
}

#define FASTRNN_INSTANTIATE(T)                                                                   \
  template void launch_fwd_persistent<T>(const cuda_kernels::FwdArgs<T>&, const plan::Plan&);    \
  template void launch_bwd_persistent<T>(const cuda_kernels::BwdArgs<T>&, const plan::Plan&);    \
  template void launch_fwd_tiled<T>(const cuda_kernels::FwdArgs<T>&, const plan::Plan&);        \
  template void launch_bwd_tiled<T>(const cuda_kernels::BwdArgs<T>&, const plan::Plan&);        \
  template void launch_fwd_pointwise<T>(T*, const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                        bool);                                                   \
  template void launch_bwd_pointwise<T>(T*, T*, const T*, const T*, const T*, const int64_t*,    \
                                        int64_t, int64_t, int64_t, bool);
FASTRNN_INSTANTIATE(float)
FASTRNN_INSTANTIATE(double)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::sim_kernels
