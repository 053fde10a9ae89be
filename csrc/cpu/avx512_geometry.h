// The AVX-512 kernels' register geometry, in one place for the two builds that use it:
// kernels_avx512.cpp (AVX-512 instructions) and kernels_avx512sim.cpp (the same geometry on
// AVX2 instructions, so that every tile, panel and edge decision the AVX-512 build makes runs
// and is tested on an AVX2 machine).
#pragma once

namespace fastrnn::cpu {

template <typename T>
struct Avx512Geometry {
  static constexpr int W = 64 / static_cast<int>(sizeof(T));  // lanes of a 512-bit vector
  static constexpr int NVMAX = 4;   // vectors per packed weight panel
  static constexpr int MBMAX = 6;   // rows per register tile: 6 x 4 = 24 accumulators
  static constexpr int REGS = 32;   // vector registers the tiles may use
};

}  // namespace fastrnn::cpu
