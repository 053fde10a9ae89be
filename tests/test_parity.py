"""fastrnn.RNN / RNNCell against torch.nn.RNN / RNNCell on identical weights.

Every test compares the output, h_n and the gradients of the input, hx and every
parameter, with the per-dtype tolerances of tests/helpers.py. Devices: CPU, plus CUDA
when one is present (nn.RNN then runs cuDNN).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from helpers import DEVICES, assert_close, grads_of, random_loss, twin_rnn


def run_pair(ref, ours, x, hx=None, dtype=None):
    """Runs both modules on the same leaves; compares outputs and every gradient."""
    leaves = [x] + ([hx] if hx is not None else [])
    out_r, h_r = ref(x, hx)
    out_o, h_o = ours(x, hx)
    data_r = out_r.data if isinstance(out_r, nn.utils.rnn.PackedSequence) else out_r
    data_o = out_o.data if isinstance(out_o, nn.utils.rnn.PackedSequence) else out_o
    assert_close(data_o, data_r, dtype, "output")
    assert_close(h_o, h_r, dtype, "h_n")
    loss_r = random_loss([data_r, h_r])
    loss_o = random_loss([data_o, h_o])
    g_r = grads_of(loss_r, leaves + list(ref.parameters()))
    g_o = grads_of(loss_o, leaves + list(ours.parameters()))
    names = ["input", "hx"][: len(leaves)] + [n for n, _ in ref.named_parameters()]
    for name, a, b in zip(names, g_o, g_r):
        assert_close(a, b, dtype, f"grad {name}")
    return out_o, h_o


SIZES = [  # (T, B, I, H)
    (1, 1, 1, 1),
    (3, 3, 3, 3),
    (17, 3, 17, 17),
    (5, 17, 3, 129),
    (129, 3, 17, 17),
    (3, 129, 1, 3),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("T,B,I,H", SIZES, ids=[f"T{t}-B{b}-I{i}-H{h}" for t, b, i, h in SIZES])
def test_sizes(T, B, I, H, nonlinearity, bidirectional, device):
    ref, ours = twin_rnn(I, H, nonlinearity=nonlinearity, bidirectional=bidirectional, device=device)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, device=device, requires_grad=True)
    hx = torch.randn(D, B, H, device=device, requires_grad=True)
    run_pair(ref, ours, x, hx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hx_given", [False, True], ids=["hx0", "hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["tmajor", "bfirst"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3], ids=lambda n: f"L{n}")
def test_configs(num_layers, bidirectional, batch_first, bias, hx_given, device):
    T, B, I, H = 7, 3, 5, 17
    ref, ours = twin_rnn(I, H, num_layers=num_layers, bias=bias, batch_first=batch_first,
                         bidirectional=bidirectional, nonlinearity="tanh", device=device)
    D = 2 if bidirectional else 1
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, device=device, requires_grad=True)
    hx = torch.randn(num_layers * D, B, H, device=device, requires_grad=True) if hx_given else None
    run_pair(ref, ours, x, hx)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hx_given", [False, True], ids=["hx0", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("lengths", [[1], [5, 2, 9, 9, 1], [3, 17, 4, 17, 1, 8, 12]],
                         ids=["one", "unsorted-ties", "mixed"])
def test_packed(lengths, nonlinearity, bidirectional, hx_given, device):
    I, H, L = 5, 17, 2
    ref, ours = twin_rnn(I, H, num_layers=L, nonlinearity=nonlinearity,
                         bidirectional=bidirectional, device=device)
    D = 2 if bidirectional else 1
    B, T = len(lengths), max(lengths)
    padded = torch.randn(T, B, I, device=device, requires_grad=True)
    packed = pack_padded_sequence(padded, torch.tensor(lengths), enforce_sorted=False)
    hx = torch.randn(L * D, B, H, device=device, requires_grad=True) if hx_given else None
    out_r, h_r = ref(packed, hx)
    out_o, h_o = ours(packed, hx)
    assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
    assert torch.equal(out_o.sorted_indices, out_r.sorted_indices)
    assert torch.equal(out_o.unsorted_indices, out_r.unsorted_indices)
    assert_close(out_o.data, out_r.data, name="output")
    assert_close(h_o, h_r, name="h_n")
    leaves = [padded] + ([hx] if hx_given else [])
    g_r = grads_of(random_loss([out_r.data, h_r]), leaves + list(ref.parameters()))
    g_o = grads_of(random_loss([out_o.data, h_o]), leaves + list(ours.parameters()))
    for a, b in zip(g_o, g_r):
        assert_close(a, b, name="grad")


@pytest.mark.parametrize("device", DEVICES)
def test_packed_sorted(device):
    """enforce_sorted=True input (no permutation indices) takes the same path."""
    ref, ours = twin_rnn(4, 6, device=device)
    x = torch.randn(6, 3, 4, device=device, requires_grad=True)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 2]), enforce_sorted=True)
    out_r, h_r = ref(packed)
    out_o, h_o = ours(packed)
    assert out_o.sorted_indices is None
    assert_close(out_o.data, out_r.data, name="output")
    assert_close(h_o, h_r, name="h_n")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hx_given", [False, True], ids=["hx0", "hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_unbatched(bidirectional, hx_given, device):
    ref, ours = twin_rnn(5, 17, num_layers=2, bidirectional=bidirectional, device=device)
    D = 2 if bidirectional else 1
    x = torch.randn(7, 5, device=device, requires_grad=True)
    hx = torch.randn(2 * D, 17, device=device, requires_grad=True) if hx_given else None
    out, h = run_pair(ref, ours, x, hx)
    assert out.shape == (7, 17 * D) and h.shape == (2 * D, 17)


@pytest.mark.parametrize("device", DEVICES)
def test_float64(device):
    ref, ours = twin_rnn(5, 17, num_layers=2, bidirectional=True, device=device, dtype=torch.float64)
    x = torch.randn(9, 3, 5, device=device, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(4, 3, 17, device=device, dtype=torch.float64, requires_grad=True)
    out, h = run_pair(ref, ours, x, hx)
    assert out.dtype == torch.float64 and h.dtype == torch.float64


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_half_precision(dtype, device):
    """fastrnn computes half types in float32 and rounds once: compare with float32 nn.RNN on
    the same (rounded) weights and inputs, to within half-precision rounding. (nn.RNN itself
    in float16 rounds after every op and drifts further; it is not the better yardstick.)"""
    ref, ours = twin_rnn(5, 17, num_layers=2, bidirectional=True, device=device, dtype=dtype)
    ref.float()
    x = torch.randn(9, 3, 5, device=device, dtype=dtype, requires_grad=True)
    hx = torch.randn(4, 3, 17, device=device, dtype=dtype, requires_grad=True)
    x32, hx32 = (t.detach().float().requires_grad_() for t in (x, hx))
    out_r, h_r = ref(x32, hx32)
    out_o, h_o = ours(x, hx)
    assert out_o.dtype == dtype and h_o.dtype == dtype
    assert_close(out_o.float(), out_r, dtype, "output")
    assert_close(h_o.float(), h_r, dtype, "h_n")
    g_r = grads_of(random_loss([out_r, h_r]), [x32, hx32] + list(ref.parameters()))
    g_o = grads_of(random_loss([out_o, h_o]), [x, hx] + list(ours.parameters()))
    for a, b in zip(g_o, g_r):
        assert a.dtype == dtype
        assert_close(a.float(), b, dtype, "grad")


@pytest.mark.parametrize("device", DEVICES)
def test_dropout_between_layers(device):
    """Training-mode dropout: masks differ from nn.RNN's, so check its statistics and eval parity."""
    ref, ours = twin_rnn(8, 64, num_layers=2, dropout=0.5, device=device)
    x = torch.randn(5, 4, 8, device=device)
    ours.train()
    torch.manual_seed(3)
    a, _ = ours(x)
    torch.manual_seed(4)
    b, _ = ours(x)
    assert not torch.equal(a, b), "dropout must make training-mode outputs random"
    ours.eval(), ref.eval()
    assert_close(ours(x)[0], ref(x)[0], name="eval output")
    ours.train()
    ours.dropout = 0.0
    assert_close(ours(x)[0], ref.eval()(x)[0], name="dropout=0 output")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("hx_given", [False, True], ids=["hx0", "hx"])
@pytest.mark.parametrize("batched", [True, False], ids=["batched", "unbatched"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_cell(nonlinearity, bias, batched, hx_given, device):
    torch.manual_seed(0)
    ref = nn.RNNCell(7, 17, bias=bias, nonlinearity=nonlinearity, device=device)
    torch.manual_seed(0)
    ours = fastrnn.RNNCell(7, 17, bias=bias, nonlinearity=nonlinearity, device=device)
    for (n, p), (m, q) in zip(ref.named_parameters(), ours.named_parameters()):
        assert n == m and torch.equal(p, q), "same seed must give nn.RNNCell's initial weights"
    shape = (3, 7) if batched else (7,)
    x = torch.randn(shape, device=device, requires_grad=True)
    hx = torch.randn(shape[:-1] + (17,), device=device, requires_grad=True) if hx_given else None
    leaves = [x] + ([hx] if hx_given else [])
    h_r, h_o = ref(x, hx), ours(x, hx)
    assert_close(h_o, h_r, name="h'")
    g_r = grads_of(random_loss([h_r]), leaves + list(ref.parameters()))
    g_o = grads_of(random_loss([h_o]), leaves + list(ours.parameters()))
    for a, b in zip(g_o, g_r):
        assert_close(a, b, name="grad")


def test_same_seed_same_init():
    for kwargs in ({}, {"num_layers": 3, "bidirectional": True}, {"bias": False}):
        torch.manual_seed(7)
        ref = nn.RNN(5, 11, **kwargs)
        torch.manual_seed(7)
        ours = fastrnn.RNN(5, 11, **kwargs)
        assert list(ref.state_dict()) == list(ours.state_dict())
        for a, b in zip(ref.parameters(), ours.parameters()):
            assert torch.equal(a, b)


def test_state_dict_both_ways():
    ref = nn.RNN(4, 6, num_layers=2, bidirectional=True)
    ours = fastrnn.RNN(4, 6, num_layers=2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    back = nn.RNN(4, 6, num_layers=2, bidirectional=True)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(3, 2, 4)
    assert_close(back(x)[0], ref(x)[0], name="round trip")


def test_repr_matches_nn():
    for args, kwargs in [((10, 20), {}), ((10, 20, 2), {"nonlinearity": "relu", "bias": False,
                          "batch_first": True, "dropout": 0.5, "bidirectional": True})]:
        assert repr(fastrnn.RNN(*args, **kwargs)) == repr(nn.RNN(*args, **kwargs))
    assert repr(fastrnn.RNNCell(3, 4, bias=False, nonlinearity="relu")) == repr(
        nn.RNNCell(3, 4, bias=False, nonlinearity="relu"))
    assert "backend='reference'" in repr(fastrnn.RNN(3, 4, backend="reference"))


@pytest.mark.parametrize("backend", ["native", "reference"])
def test_backends_agree(backend):
    ref, ours = twin_rnn(5, 17, num_layers=2, bidirectional=True, backend=backend)
    x = torch.randn(6, 3, 5, requires_grad=True)
    run_pair(ref, ours, x)
