// Maps a plan's runtime kpt to the kernel template instantiated for it. Exactly the
// values of launch_plan.h's kKptFloat / kKptDouble are instantiated, nothing more.
// Plain C++: the CUDA launchers (kernel_table.cuh) and the SIMT simulation
// (../sim/sim_kernels.cpp) dispatch through the same table.
#pragma once

#include <c10/util/Exception.h>

#include <type_traits>

#include "kernel_args.h"
#include "plan_types.h"

namespace fastrnn::cuda_kernels {

template <typename T, typename F>
void dispatch_kpt(int kpt, F&& f) {
  switch (kpt) {
    case 4: f(std::integral_constant<int, 4>{}); return;
    case 8: f(std::integral_constant<int, 8>{}); return;
    case 16: f(std::integral_constant<int, 16>{}); return;
    case 32: f(std::integral_constant<int, 32>{}); return;
    case 64:
      if constexpr (std::is_same_v<T, float>) {
        f(std::integral_constant<int, 64>{});
        return;
      }
      break;
    default: break;
  }
  TORCH_CHECK(false, "fastrnn: no CUDA kernel instantiated for kpt=", kpt, " and element size ",
              sizeof(T));
}

// Calls f(i, kernel-kpt constant) for every kpt of the element type, in launch_plan order.
template <typename T, typename F>
void for_each_kpt(F&& f) {
  f(0, std::integral_constant<int, 4>{});
  f(1, std::integral_constant<int, 8>{});
  f(2, std::integral_constant<int, 16>{});
  f(3, std::integral_constant<int, 32>{});
  if constexpr (std::is_same_v<T, float>) f(4, std::integral_constant<int, 64>{});
}

// Maps a tiled plan's micro tile to the instantiated template: f(micro_r, micro_c) as
// integral constants, exactly launch_plan.h's kTiledMicroRows x kTiledMicroCols.
template <typename F>
void dispatch_micro(int micro_r, int micro_c, F&& f) {
  auto cols = [&](auto r) {
    switch (micro_c) {
      case 1: f(r, std::integral_constant<int, 1>{}); return true;
      case 4: f(r, std::integral_constant<int, 4>{}); return true;
      default: return false;
    }
  };
  bool ok = false;
  switch (micro_r) {
    case 1: ok = cols(std::integral_constant<int, 1>{}); break;
    case 2: ok = cols(std::integral_constant<int, 2>{}); break;
    case 4: ok = cols(std::integral_constant<int, 4>{}); break;
    default: break;
  }
  TORCH_CHECK(ok, "fastrnn: no tiled CUDA kernel instantiated for micro tile ", micro_r, "x",
              micro_c);
}

// Maps a tensor-core plan's block tile (micro_r x micro_c fragments of 16 x 16) to the
// instantiated template: exactly launch_plan.h's kMmaTiles.
template <typename F>
void dispatch_fragments(int frag_r, int frag_c, F&& f) {
  using I1 = std::integral_constant<int, 1>;
  using I2 = std::integral_constant<int, 2>;
  if (frag_r == 1 && frag_c == 1) return f(I1{}, I1{});
  if (frag_r == 1 && frag_c == 2) return f(I1{}, I2{});
  if (frag_r == 2 && frag_c == 1) return f(I2{}, I1{});
  TORCH_CHECK(false, "fastrnn: no tensor-core tiled CUDA kernel instantiated for ", frag_r, "x",
              frag_c, " fragments");
}

inline TiledShape tiled_shape(const plan::Plan& p) {
  return TiledShape{p.tile_rows, p.tile_cols, p.lanes_r, p.col_tiles, p.stride, p.k_chunk};
}

}  // namespace fastrnn::cuda_kernels
