"""Device functions shared by the forward and backward kernels."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def tanh_f32(z):
    """tanh in float32 to a few ulps, on GPU and in the interpreter alike.

    libdevice's tanh does not run under TRITON_INTERPRET=1, so both use this form: an odd
    Taylor polynomial near 0 (where 1 - exp(-2|z|) would lose relative precision to
    cancellation) and sign(z) * (1 - e) / (1 + e), e = exp(-2|z|) <= 0.61, elsewhere.
    """
    a = tl.abs(z)
    e = tl.exp(-2.0 * a)
    far = (1.0 - e) / (1.0 + e)
    z2 = a * a
    # tanh(a) = a - a^3/3 + 2a^5/15 - 17a^7/315 + 62a^9/2835; next term < 3e-9 at a = 0.25.
    near = a * (1.0 + z2 * (-1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0)))))
    t = tl.where(a < 0.25, near, far)
    return tl.where(z < 0.0, -t, t)


@triton.jit
def activation(z, RELU: tl.constexpr):
    if RELU:
        return tl.maximum(z, 0.0)
    else:
        return tanh_f32(z)


@triton.jit
def activation_grad(y, RELU: tl.constexpr):
    """act'(z) written as a function of y = act(z) (rnn.h): tanh' = 1 - y^2, relu' = [y > 0]."""
    if RELU:
        return tl.where(y > 0.0, 1.0, 0.0)
    else:
        return 1.0 - y * y


@triton.jit
def matmul_f32(a, b):
    """a @ b on float32 operands with true fp32 products (no TF32), so float32 results match
    nn.RNN and float16 / bfloat16 are computed in float32 as rnn.h requires."""
    return tl.dot(a, b, input_precision="ieee")
