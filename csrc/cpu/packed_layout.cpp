// A PackedSequence's data <-> the padded time-major layout the ops take, on the CPU: one
// pass each (a step's active rows are one contiguous block in both layouts), into buffers
// from the cache (block_cache.h). Each is the other's adjoint (the padding is zero), which
// is how fastrnn/functional.py differentiates them. Eager-only helpers: traced and compiled
// code (and other devices) take functional.py's index_copy / index_select twins.
//   data        [N, F]     N = sum(batch_sizes), step t's rows at offset sum(batch_sizes[:t])
//   batch_sizes [T] int64  on the CPU, non-increasing, >= 1 (a PackedSequence's)
//   padded      [T, B, F]  B = batch_sizes[0]; rows >= batch_sizes[t] of step t are zero
#include "../rnn.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstring>
#include <vector>

namespace fastrnn::cpu {
namespace {

// Offsets [T + 1] of each step's rows in the packed data, after checking batch_sizes:
// against the data's N rows (N >= 0), or with a first size of at most max_first rows
// (the padded tensor's B; N < 0). Either bound keeps the running sum from overflowing.
std::vector<int64_t> step_offsets(const at::Tensor& batch_sizes, int64_t N, int64_t max_first,
                                  const char* op) {
  TORCH_CHECK(batch_sizes.device().is_cpu() && batch_sizes.dim() == 1 &&
                  batch_sizes.scalar_type() == at::kLong,
              "fastrnn.", op, ": batch_sizes must be a 1-D int64 CPU tensor, got ",
              batch_sizes.dim(), "-D ", batch_sizes.scalar_type(), " on ", batch_sizes.device());
  const at::Tensor bs = batch_sizes.contiguous();
  const int64_t* b = bs.data_ptr<int64_t>();
  const int64_t T = bs.numel();
  std::vector<int64_t> offsets(T + 1, 0);
  for (int64_t t = 0; t < T; ++t) {
    TORCH_CHECK(b[t] >= 1 && (t == 0 || b[t] <= b[t - 1]), "fastrnn.", op,
                ": batch_sizes must be >= 1 and non-increasing (a PackedSequence's), got ",
                b[t], " at step ", t);
    TORCH_CHECK(N < 0 || b[t] <= N - offsets[t], "fastrnn.", op,
                ": batch_sizes sum to more than the packed data's ", N, " rows");
    TORCH_CHECK(N >= 0 || t > 0 || b[0] <= max_first, "fastrnn.", op, ": batch_sizes[0] = ",
                b[0], " rows, padded has ", max_first);
    offsets[t + 1] = offsets[t] + b[t];
  }
  TORCH_CHECK(N < 0 || offsets[T] == N, "fastrnn.", op, ": batch_sizes sum to ", offsets[T],
              " rows, the packed data has ", N);
  return offsets;
}

// copy_step(t, src, dst, row) for every step t, threads splitting the steps in chunks of
// about 64 KiB; row = the bytes of one row of F features (src [..., F] contiguous).
template <typename CopyStep>
void for_each_step(const at::Tensor& src, at::Tensor& out, int64_t T, int64_t B,
                   const CopyStep& copy_step) {
  const int64_t row = src.size(-1) * int64_t(src.element_size());
  if (row == 0 || T == 0) return;
  const char* s = static_cast<const char*>(src.data_ptr());
  char* d = static_cast<char*>(out.data_ptr());
  at::parallel_for(0, T, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, B * row)),
                   [&](int64_t t0, int64_t t1) {
                     for (int64_t t = t0; t < t1; ++t) copy_step(t, s, d, row);
                   });
}

at::Tensor packed_to_padded(const at::Tensor& data, const at::Tensor& batch_sizes) {
  TORCH_CHECK(data.dim() == 2, "fastrnn._packed_to_padded: data must be 2-D [N, F], got ",
              data.dim(), "-D");
  const std::vector<int64_t> off =
      step_offsets(batch_sizes, data.size(0), /*max_first=*/0, "_packed_to_padded");
  const int64_t T = int64_t(off.size()) - 1, F = data.size(1);
  const int64_t B = T > 0 ? off[1] : 0;
  const at::Tensor src = data.contiguous();
  at::Tensor out = new_buffer({T, B, F}, src);  // [T, B, F]
  for_each_step(src, out, T, B, [&](int64_t t, const char* s, char* d, int64_t row) {
    const int64_t n = off[t + 1] - off[t];
    std::memcpy(d + t * B * row, s + off[t] * row, size_t(n * row));
    std::memset(d + (t * B + n) * row, 0, size_t((B - n) * row));
  });
  return out;
}

at::Tensor padded_to_packed(const at::Tensor& padded, const at::Tensor& batch_sizes) {
  TORCH_CHECK(padded.dim() == 3, "fastrnn._padded_to_packed: padded must be 3-D [T, B, F], got ",
              padded.dim(), "-D");
  const int64_t T = padded.size(0), B = padded.size(1), F = padded.size(2);
  TORCH_CHECK(batch_sizes.numel() == T, "fastrnn._padded_to_packed: batch_sizes has ",
              batch_sizes.numel(), " steps, padded has ", T);
  const std::vector<int64_t> off = step_offsets(batch_sizes, /*N=*/-1, B, "_padded_to_packed");
  const int64_t N = off[T];
  const at::Tensor src = padded.contiguous();
  at::Tensor out = new_buffer({N, F}, src);  // [N, F]
  for_each_step(src, out, T, B, [&](int64_t t, const char* s, char* d, int64_t row) {
    std::memcpy(d + off[t] * row, s + t * B * row, size_t((off[t + 1] - off[t]) * row));
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(fastrnn, m) {
  m.def("_packed_to_padded(Tensor data, Tensor batch_sizes) -> Tensor");
  m.def("_padded_to_packed(Tensor padded, Tensor batch_sizes) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("_packed_to_padded", &packed_to_padded);
  m.impl("_padded_to_packed", &padded_to_packed);
}

}  // namespace fastrnn::cpu
