"""The fastrnn::* ops themselves: opcheck, gradcheck, the backward op against autograd of the
reference, and torch.compile(fullgraph=True)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastrnn
from fastrnn import reference
from helpers import DEVICES, assert_close, assert_op_tracks_truth, random_loss

OP_CONFIGS = [  # (bias, lengths, reverse, nonlinearity)
    (True, None, False, "tanh"),
    (False, None, True, "relu"),
    (True, [4, 1, 3], False, "relu"),
    (True, [2, 4, 1], True, "tanh"),
]
OP_IDS = ["bias-tanh", "nobias-reverse-relu", "lengths-relu", "lengths-reverse-tanh"]


def op_args(T=4, B=3, I=5, H=7, bias=True, lengths=None, reverse=False, nonlinearity="tanh",
            dtype=torch.float32, device="cpu", requires_grad=False):
    def leaf(*shape):
        return torch.randn(*shape, dtype=dtype, device=device).mul_(0.5).requires_grad_(requires_grad)

    lens = torch.tensor(lengths, device=device) if lengths is not None else None
    return (leaf(T, B, I), leaf(B, H), leaf(H, I), leaf(H, H),
            leaf(H) if bias else None, leaf(H) if bias else None, lens, reverse, nonlinearity)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", OP_CONFIGS, ids=OP_IDS)
def test_opcheck_forward(config, device):
    bias, lengths, reverse, act = config
    for requires_grad in (False, True):
        args = op_args(bias=bias, lengths=lengths, reverse=reverse, nonlinearity=act,
                       device=device, requires_grad=requires_grad)
        torch.library.opcheck(torch.ops.fastrnn.rnn_forward.default, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask", [(True, True), (False, True), (True, False), (False, False)],
                         ids=["all", "weights-only", "input-only", "hx-only"])
def test_opcheck_backward(mask, device):
    x, h0, w_ih, w_hh, b_ih, b_hh, lens, reverse, act = op_args(lengths=[4, 2, 3], device=device)
    y = torch.ops.fastrnn.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, lens, reverse, act)
    dy = torch.randn_like(y)
    args = (dy, x, h0, w_ih, w_hh, y, lens, reverse, act, list(mask))
    torch.library.opcheck(torch.ops.fastrnn.rnn_backward.default, args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("config", OP_CONFIGS, ids=OP_IDS)
def test_forward_and_backward_match_reference(config, device):
    """rnn_forward / rnn_backward against the plain-PyTorch spec and its autograd: float32
    against the float64 truth, within rounding and twice the float32 spec's own error (an
    absolute float32 tolerance failed here on relu's growing values: issue 10)."""
    bias, lengths, reverse, act = config
    args = list(op_args(T=9, B=3, I=5, H=17, bias=bias, lengths=lengths and [9, 1, 5], reverse=reverse,
                        nonlinearity=act, device=device))
    # Weights ~ N(0, 1/H), about nn.RNN's scale, which the truth's bounds assume (helpers.Terms):
    # at randn * 0.5 the recurrence amplifies every implementation's rounding errors unevenly.
    for i in range(2, 6):
        if args[i] is not None:
            args[i] = args[i] * (17 ** -0.5 / 0.5)
    assert_op_tracks_truth(torch.ops.fastrnn.rnn_forward, args[:6], args[6], reverse, act)


@pytest.mark.parametrize("config", OP_CONFIGS, ids=OP_IDS)
def test_gradcheck_float64(config):
    bias, lengths, reverse, act = config
    args = op_args(T=4, B=3, I=2, H=3, bias=bias, lengths=lengths, reverse=reverse,
                   nonlinearity=act, dtype=torch.float64, requires_grad=True)
    if act == "relu":  # keep pre-activations away from relu's kink, where finite differences lie:
        # all operands >= 0 make every pre-activation positive (with W_ih's sign left random,
        # one draw in a few hundred put one within 1e-6 of 0 and failed the reference too)
        for i in range(4):
            args[i].data.abs_()
    assert torch.autograd.gradcheck(torch.ops.fastrnn.rnn_forward, args)


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 5)
        self.rnn = fastrnn.RNN(5, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        out, h = self.rnn(torch.tanh(self.proj(x)))
        return self.head(out).sum() + h.pow(2).sum()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(backend):
    torch.manual_seed(0)
    model = TinyModel()
    x = torch.randn(4, 7, 6)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    loss_eager = model(x)
    g_eager = torch.autograd.grad(loss_eager, list(model.parameters()))
    loss_comp = compiled(x)
    g_comp = torch.autograd.grad(loss_comp, list(model.parameters()))
    assert_close(loss_comp, loss_eager, name="loss")
    for a, b in zip(g_comp, g_eager):
        assert_close(a, b, name="grad")


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.int32, torch.complex64],
                         ids=["float8", "int32", "complex64"])
def test_unsupported_dtypes_are_refused(dtype):
    """Only float32/64 and float16/bfloat16 are computed: anything else is a clear ValueError."""
    args = list(op_args())
    args[0] = torch.zeros(4, 3, 5).to(dtype)
    with pytest.raises(ValueError, match="input must be a floating point tensor"):
        torch.ops.fastrnn.rnn_forward(*args)
