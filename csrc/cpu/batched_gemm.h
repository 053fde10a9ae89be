// The batched GEMMs of the CPU paths that are not a recurrence: the project-first input
// projection x W_ih^T + b over all T*B rows, and BPTT's dx = dz W_ih. Either fastrnn's own
// packed kernel (kernels.h gemm_packed, threads splitting rows) or the library's at::mm
// (MKL / oneDNN / OpenBLAS, whatever torch was built with), whichever a one-time
// measurement on this machine found faster (machine.h Costs::own_gemm_speedup).
#pragma once

#include <ATen/core/Tensor.h>

#include "kernels.h"

namespace fastrnn::cpu {

// out [R, N] = bias + a [R, K] (transpose ? w^T : w); w [N, K] (transpose) or [K, N];
// bias [N] or undefined. All contiguous, same dtype (float or double); out preallocated.
void own_gemm(Isa isa, const at::Tensor& a, const at::Tensor& w, bool transpose,
              const at::Tensor& bias, at::Tensor& out);

// own_gemm's two halves: w packed into the ISA's panels (threads split the panels), and the
// GEMM on the packed form (N = columns of M).
at::Tensor pack_for_gemm(Isa isa, const at::Tensor& w, bool transpose);
void packed_gemm(Isa isa, const at::Tensor& a, const at::Tensor& m, int64_t N,
                 const at::Tensor& bias, at::Tensor& out);

// BPTT's weight gradients on fastrnn's kernel (kernels.h gemm_tn, column_sums), dz read in
// place as the transposed operand: dw_ih [H, I] = dz^T x, dw_hh [H, H] = sum_t dz_t^T
// h_prev(t) (h_prev = y of the previously visited step, h0 for the first), db [H] = the
// column sums of dz. Threads split the rows of the results (H). dz, x, y [T, B, *] and h0
// [B, H] contiguous, in the compute type; the outputs preallocated, contiguous.
void own_weight_grads(Isa isa, const at::Tensor& dz, const at::Tensor& x, const at::Tensor& y,
                      const at::Tensor& h0, bool reverse, at::Tensor& dw_ih, at::Tensor& dw_hh,
                      at::Tensor& db);

// True when the batched GEMM out [R, N] = a [R, K] w should run on own_gemm:
// FASTRNN_CPU_GEMM=own|library|auto (read at every call) forces one; auto asks the
// measurement (machine.h own_gemm_speedup) whether the time fastrnn's kernel saves on the
// R K N multiply-adds exceeds its packing pass over w's K N elements (paid on every call;
// few rows, e.g. batch 1, do not amortise it).
bool prefer_own_gemm(Isa isa, int64_t R, int64_t K, int64_t N);

// True when BPTT's weight gradients over K = T*B rows (I inputs, H units) should run on
// own_weight_grads: FASTRNN_CPU_GEMM=own|library|auto as above; auto asks the measurement
// (machine.h own_weight_grads_faster) whether fastrnn's kernel is the faster at this size.
bool prefer_own_weight_grads(Isa isa, int64_t K, int64_t I, int64_t H);

}  // namespace fastrnn::cpu
