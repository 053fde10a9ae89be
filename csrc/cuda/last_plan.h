// The record of the last CUDA (or simulated CUDA) launch on this thread, for tests that
// must prove which path ran and for `python -m fastrnn` (fastrnn.backends.last_cuda_plan).
// Written by the shared host code (recurrence_host.h) for both targets; stored in
// ../cuda_plan_ops.cpp (compiled in every build), which exposes it as
// fastrnn::_last_cuda_plan.
#pragma once

#include <cstdint>
#include <vector>

namespace fastrnn::plan {

enum class RecordedPath : int { kResident = 0, kSingle = 1, kGrid = 2, kGemm = 3, kTiled = 4 };

struct LaunchRecord {
  int target = 0;     // 0: a CUDA device, 1: the SIMT simulation (backend "cuda_sim")
  int backward = 0;   // 0: forward recurrence, 1: BPTT recurrence
  RecordedPath path = RecordedPath::kGemm;
  int blocks = 0;              // per launch
  int threads_per_block = 0;
  int tiles_per_step = 0;      // batch tiles a block stages per time step
  int kpt = 0, ks = 0, rows_per_tile = 0, smem_bytes = 0;  // 0 on the gemm path
  int launches = 0;            // kernel launches of the recurrence (T on the gemm path)
  int64_t steps = 0, batch = 0, hidden = 0;
  int elem_size = 0;           // compute type: 4 float32 (also fp16/bf16), 8 float64
  // The tiled path only (0 otherwise): output columns per block (rows: rows_per_tile), the
  // micro tile (the kernel instantiation), and whether the step ends in a grid barrier
  // (several column tiles).
  int tile_cols = 0, micro_r = 0, micro_c = 0, grid_barrier = 0;
  // Tensor cores (launch_plan.h MmaType: 1 float16, 2 bfloat16; 0: FMAs); micro_r x micro_c
  // then count 16 x 16 fragments.
  int mma = 0;
};

void record_launch(const LaunchRecord& r);

// The fields in the order fastrnn.backends reads them; empty if nothing ran on this thread.
std::vector<int64_t> last_launch_fields();

}  // namespace fastrnn::plan
