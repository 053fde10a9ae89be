"""fastrnn.RNN / RNNCell against torch.nn.RNN / RNNCell on identical weights.

Every test compares the output, h_n and the gradients of the input, hx and every
parameter with a float64 truth (fastrnn.reference on float64 copies of the same inputs and
weights): fastrnn's error must stay within the rounding bound of the reduction and within
twice nn.RNN's own error (helpers.assert_tracks_truth). Devices: CPU, plus CUDA when one is
present (nn.RNN then runs cuDNN).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from helpers import DEVICES, UNIT_ROUNDOFF, Terms, assert_close, assert_modules_track_truth, twin_rnn


def terms_of(model, x):
    """helpers.Terms for model (fastrnn.RNN or nn.RNN) run on the padded input x."""
    if x.dim() == 2:
        T, B = x.shape[0], 1
    else:
        T, B = (x.shape[1], x.shape[0]) if model.batch_first else x.shape[:2]
    return Terms.of(T, B, model.input_size, model.hidden_size, model.num_layers, model.bidirectional)


def run_pair(ref, ours, x, hx=None):
    """Runs both modules (and ours' float64 truth twin) on copies of the same leaves; checks
    the outputs and every gradient against the truth. Returns fastrnn's (output, h_n)."""
    outs, _ = assert_modules_track_truth(ref, ours, [x, hx], terms_of(ours, x))
    return outs


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
    out_r, _ = ref(packed, hx)
    out_o, _ = ours(packed, hx)
    assert torch.equal(out_o.batch_sizes, out_r.batch_sizes)
    assert torch.equal(out_o.sorted_indices, out_r.sorted_indices)
    assert torch.equal(out_o.unsorted_indices, out_r.unsorted_indices)

    def forward(model, x, h):
        out, h_n = model(pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False), h)
        return [out.data, h_n]

    assert_modules_track_truth(ref, ours, [padded, hx], Terms.of(T, B, I, H, L, bidirectional), forward)


@pytest.mark.parametrize("device", DEVICES)
def test_packed_sorted(device):
    """enforce_sorted=True input (no permutation indices) takes the same path."""
    ref, ours = twin_rnn(4, 6, device=device)
    x = torch.randn(6, 3, 4, device=device, requires_grad=True)
    packed = pack_padded_sequence(x, torch.tensor([6, 4, 2]), enforce_sorted=True)
    assert ours(packed)[0].sorted_indices is None

    def forward(model, x):
        out, h_n = model(pack_padded_sequence(x, torch.tensor([6, 4, 2]), enforce_sorted=True))
        return [out.data, h_n]

    assert_modules_track_truth(ref, ours, [x], Terms.of(6, 3, 4, 6), forward)


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
    """fastrnn computes half types in float32 and rounds once per op (rnn.h); nn.RNN in the
    half type rounds after every op. Both against the float64 truth on the same (rounded)
    weights and inputs: fastrnn within its rounding bound and within twice nn.RNN's error."""
    ref, ours = twin_rnn(5, 17, num_layers=2, bidirectional=True, device=device, dtype=dtype)
    x = torch.randn(9, 3, 5, device=device, dtype=dtype, requires_grad=True)
    hx = torch.randn(4, 3, 17, device=device, dtype=dtype, requires_grad=True)
    out, h = run_pair(ref, ours, x, hx)
    assert out.dtype == dtype and h.dtype == dtype


def _transparent_second_layer(ours):
    """Layer 2 of a relu stack passes its input through (W_ih = I, W_hh = 0, no bias), and
    layer 1 sees positive weights and input, so its output y1 > 0 everywhere: then the
    model's output is exactly dropout(y1) = mask * y1 / (1 - p), element by element."""
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if name.endswith("_l1"):
                p.copy_(torch.eye(p.shape[0]) if name == "weight_ih_l1" else torch.zeros_like(p))
            else:
                p.abs_().mul_(0.5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("p", [0.3, 0.75])
def test_dropout_between_layers(p, device):
    """Training-mode dropout (masks differ from nn.RNN's, so its statistics): each element of
    layer 1's output is zeroed with probability p and the rest scaled by exactly 1/(1-p); the
    input, h_n and the last layer's output are not dropped; eval mode and p = 0 match nn.RNN."""
    T, B, H = 8, 64, 32
    ref, ours = twin_rnn(H, H, num_layers=2, nonlinearity="relu", dropout=p, device=device)
    _transparent_second_layer(ours)
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(T, B, H, device=device)  # [T, B, H], positive
    single = fastrnn.RNN(H, H, nonlinearity="relu").to(device)  # layer 1 alone, no dropout
    single.load_state_dict({k[:-1] + "0": v for k, v in ours.state_dict().items() if k.endswith("_l0")})
    y1, h1 = single(x)
    assert (y1 > 0).all()
    ours.train()
    torch.manual_seed(3)
    out, h_n = ours(x)
    # Not on the last layer's output or on h_n: the output's last step is layer 2's h_n, and
    # layer 1's h_n is its undropped final state.
    assert torch.equal(h_n[1], out[-1]) and torch.equal(h_n[0], h1[0])
    ratio = out / y1  # [T, B, H]: 0 where dropped, 1/(1-p) elsewhere
    dropped = ratio == 0
    # Kept elements: one multiply by 1/(1-p) (and a pass through the identity layer, exact),
    # so within 2 float32 roundings of the scale. No dropout on the input (y1 would differ)
    # nor on the output (a second mask would give 1/(1-p)^2 and a drop rate 1 - (1-p)^2).
    torch.testing.assert_close(ratio[~dropped], torch.full_like(ratio[~dropped], 1 / (1 - p)),
                               rtol=2 * UNIT_ROUNDOFF[torch.float32], atol=0)
    # The drop count is Binomial(n, p): its rate within 5 standard deviations (a false alarm
    # has probability < 1e-6; the seed is fixed, so the test is deterministic anyway).
    n = dropped.numel()
    sigma = (p * (1 - p) / n) ** 0.5
    rate = dropped.double().mean().item()
    assert abs(rate - p) <= 5 * sigma, f"drop rate {rate:.4f}, expected {p} +- {5 * sigma:.4f}"
    # Masks are fresh per call and differ between the steps and rows of one call.
    torch.manual_seed(4)
    assert not torch.equal(ours(x)[0] == 0, dropped)
    assert not torch.equal(dropped[0], dropped[1])
    ours.eval(), ref.eval()
    assert_close(ours(x)[0], ref(x)[0], name="eval output")
    ours.train()
    ours.dropout = 0.0
    assert_close(ours(x)[0], ref(x)[0], name="dropout=0 output")


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
    assert_modules_track_truth(ref, ours, [x, hx], Terms.of(1, shape[0] if batched else 1, 7, 17))


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
    with torch.no_grad():
        assert_close(ours(x)[0], ref(x)[0], name="fastrnn with nn.RNN's state_dict")
        assert_close(back(x)[0], ref(x)[0], name="nn.RNN with fastrnn's state_dict")


INPLACE_CONFIGS = {"uni": {}, "layers2": {"num_layers": 2}, "batch_first": {"batch_first": True},
                   "bi": {"bidirectional": True}, "relu": {"nonlinearity": "relu"}}


@pytest.mark.parametrize("change", ["relu_", "data_zero_"])
@pytest.mark.parametrize("config", INPLACE_CONFIGS.values(), ids=INPLACE_CONFIGS.keys())
def test_output_changed_in_place(config, change):
    """The caller owns the output, as nn.RNN's: changing it in place after the call (an
    nn.ReLU(inplace=True) next, masked_fill_, or through .data) leaves the gradients of the
    loss computed before the change as nn.RNN's (the backward saved its own copy)."""
    ref, ours = twin_rnn(4, 6, **config)
    x = torch.randn(3, 2, 4)
    grads = []
    for model in (ref, ours):
        out, h_n = model(x)
        if change == "relu_":
            loss = out.relu_().sum() + h_n.sum()
        else:
            loss = (out * out).sum() + h_n.sum()
            out.data.zero_()
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    for name, g_ref, g_ours in zip([n for n, _ in ref.named_parameters()], *grads):
        assert_close(g_ours, g_ref, name=name)


def test_nn_rnn_attributes():
    """Attributes that code written for nn.RNN reads (weight-drop wrappers, code shared with
    LSTMs) and its refusal of proj_size."""
    ref, ours = twin_rnn(4, 6, num_layers=2, bidirectional=True)
    assert ours._all_weights == ref._all_weights
    assert ours.proj_size == ref.proj_size == 0
    assert len(ours._flat_weights) == len(ref._flat_weights) == 16
    assert all(a is b for a, b in zip(ours._flat_weights, ours.parameters()))
    ours._flat_weights = []  # weight-drop code assigns it; fastrnn reads weights by name
    assert len(ours._flat_weights) == len(ref._flat_weights) == 16
    for value in (0, 2, None):
        for cls in (nn.RNN, fastrnn.RNN):
            with pytest.raises(ValueError, match="proj_size argument is only supported for LSTM"):
                cls(4, 6, proj_size=value)


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
