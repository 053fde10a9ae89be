// The CPU forward op (rnn_cpu.cpp), for the other CPU kernels that run layers.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>

namespace fastrnn {

// fastrnn::rnn_forward's CPU kernel (schema: rnn.h kRnnForwardSchema): y [T, B, H].
at::Tensor rnn_forward_cpu(const at::Tensor& input, const at::Tensor& hx,
                           const at::Tensor& weight_ih, const at::Tensor& weight_hh,
                           const std::optional<at::Tensor>& bias_ih,
                           const std::optional<at::Tensor>& bias_hh,
                           const std::optional<at::Tensor>& lengths, bool reverse,
                           std::string_view nonlinearity);

}  // namespace fastrnn
