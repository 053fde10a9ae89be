"""CUDA kernels vs torch.nn.RNN (cuDNN) on CUDA tensors: forward, BPTT, every path.

Needs a GPU and fastrnn built with CUDA; skipped otherwise (this project's CI has no GPU,
so these tests were written but never executed there). FASTRNN_CUDA_PATH forces each
path (single block, cooperative grid, cuBLAS fallback) at small sizes; "auto" checks
what the host picks by itself, including a size beyond on-chip capacity.
"""
import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from helpers import TOLERANCES, assert_close, grads_of, random_loss, twin_rnn

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.skipif(
        not fastrnn._ops.has_kernel("cuda"),
        reason="fastrnn was built without CUDA kernels (no nvcc or FASTRNN_BUILD_CUDA=0)",
    ),
]

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (path, T, B, I, H): each forced path at sizes where it is valid; "grid" needs a hidden
# size larger than one block's columns (launch_plan.h), "auto" at 2304 exceeds on-chip capacity.
PATH_CASES = [
    pytest.param("single", 5, 3, 7, 17, id="single-H17"),
    pytest.param("single", 9, 1, 16, 64, id="single-B1-H64"),
    # 257 rows do not fit twice in shared memory: state re-staged from global, two tiles.
    pytest.param("single", 3, 257, 5, 64, id="single-tiled-B257-H64"),
    pytest.param("grid", 5, 3, 7, 129, id="grid-H129"),
    pytest.param("grid", 4, 17, 33, 256, id="grid-B17-H256"),
    pytest.param("gemm", 5, 3, 7, 17, id="gemm-H17"),
    pytest.param("gemm", 4, 17, 33, 129, id="gemm-H129"),
    pytest.param("auto", 6, 2, 5, 1024, id="auto-H1024"),
    pytest.param("auto", 3, 2, 5, 2304, id="auto-beyond-chip-H2304"),
]


@pytest.fixture(autouse=True)
def _ieee_fp32():
    # cuDNN may use TF32 for fp32 RNNs unless told not to; the comparison needs IEEE fp32.
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@pytest.fixture
def path(monkeypatch):
    def set_path(name):
        monkeypatch.setenv("FASTRNN_CUDA_PATH", name)
    return set_path


def _oracle(ref, dtype):
    """nn.RNN as the oracle for ours in `dtype`.

    float16 / bfloat16: fastrnn computes in float32 and rounds once (csrc/rnn.h), so the
    matching oracle is nn.RNN (cuDNN) in float32 on the same rounded weights and inputs;
    cuDNN in half precision rounds every step and, over T*B rows of a weight gradient,
    drifts further than the dtype's tolerance says about the kernel under test.
    """
    return ref if dtype in (torch.float32, torch.float64) else copy.deepcopy(ref).float()


def _assert_grad_close(actual, expected, dtype, name):
    """Gradients: elementwise for float32/64; normwise for float16/bfloat16.

    A half-precision weight gradient sums T*B products whose factors (dy, and act'(y)
    from the stored half y) are rounded to 8/11 bits, so entries that cancel to near
    zero carry the absolute error of the largest terms: compare the error with the
    largest entry, at the dtype's tolerance.
    """
    if dtype in (torch.float32, torch.float64):
        assert_close(actual, expected.to(dtype), dtype, name)
        return
    rtol, atol = TOLERANCES[dtype]
    err = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
    scale = expected.double().abs().max().item() if expected.numel() else 0.0
    assert err <= rtol * scale + atol, f"{name}: max error {err:.3g} vs largest entry {scale:.3g}"


def _check_twins(ref, ours, x, h0, dtype, name):
    """Forward outputs, h_n and every gradient of ours vs the nn.RNN oracle."""
    ref = _oracle(ref, dtype)
    x_ref = x.to(ref.weight_hh_l0.dtype).requires_grad_()
    x_ours = x.clone().requires_grad_()
    h_ref = h0.to(ref.weight_hh_l0.dtype).requires_grad_()
    h_ours = h0.clone().requires_grad_()
    y_r, hn_r = ref(x_ref, h_ref)
    y_o, hn_o = ours(x_ours, h_ours)
    assert_close(y_o, y_r.to(dtype), dtype, f"{name} output")
    assert_close(hn_o, hn_r.to(dtype), dtype, f"{name} h_n")
    # The oracle's loss sees its outputs rounded to dtype, so both get the same dy.
    loss_r = random_loss([y_r.to(dtype), hn_r.to(dtype)])
    loss_o = random_loss([y_o, hn_o])
    g_r = grads_of(loss_r, [x_ref, h_ref, *ref.parameters()])
    g_o = grads_of(loss_o, [x_ours, h_ours, *ours.parameters()])
    names = ["input", "hx"] + [n for n, _ in ref.named_parameters()]
    for n, a, e in zip(names, g_o, g_r):
        _assert_grad_close(a, e, dtype, f"{name} grad {n}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("forced,T,B,I,H", PATH_CASES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_paths_match_cudnn(path, forced, T, B, I, H, dtype, nonlinearity):
    path(forced)
    ref, ours = twin_rnn(I, H, nonlinearity=nonlinearity, backend="native", device="cuda",
                         dtype=dtype)
    torch.manual_seed(2)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    h0 = torch.randn(1, B, H, device="cuda", dtype=dtype)
    _check_twins(ref, ours, x, h0, dtype, f"{forced}")


@pytest.mark.parametrize("forced", ["single", "grid", "gemm"])
@pytest.mark.parametrize("H", [17, 129], ids=lambda h: f"H{h}")
def test_float64_matches_reference(path, forced, H):
    # cuDNN has no float64 RNN math of note; the plain-PyTorch spec is the oracle here.
    path(forced)
    torch.manual_seed(3)
    T, B, I = 7, 5, 6
    args = [torch.randn(T, B, I), torch.randn(B, H), torch.randn(H, I) / H**0.5,
            torch.randn(H, H) / H**0.5, torch.randn(H), torch.randn(H)]
    args = [a.to("cuda", torch.float64).requires_grad_() for a in args]
    lengths = torch.tensor([7, 0, 3, 9, 1], device="cuda")
    for reverse in (False, True):
        y = fastrnn._ops.rnn_forward(*args, lengths, reverse, "tanh")
        y_ref = fastrnn.reference.rnn_forward(*args, lengths, reverse, "tanh")
        assert_close(y, y_ref, name=f"{forced} reverse={reverse} output")
        g = torch.autograd.grad(random_loss([y]), args)
        g_ref = torch.autograd.grad(random_loss([y_ref]), args)
        for i, (a, e) in enumerate(zip(g, g_ref)):
            assert_close(a, e, name=f"{forced} reverse={reverse} grad {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("forced", ["single", "grid", "gemm"])
def test_packed_bidirectional_multilayer(path, forced, dtype):
    path(forced)
    H = 17 if forced == "single" else 129
    ref, ours = twin_rnn(6, H, num_layers=2, bidirectional=True, backend="native",
                         device="cuda", dtype=dtype)
    ref = _oracle(ref, dtype)
    torch.manual_seed(4)
    lengths = torch.tensor([9, 7, 7, 2, 1])
    x = torch.randn(9, 5, 6, device="cuda", dtype=dtype)
    x_ref = x.to(ref.weight_hh_l0.dtype).requires_grad_()
    x_ours = x.clone().requires_grad_()
    out_r, hn_r = ref(pack_padded_sequence(x_ref, lengths))
    out_o, hn_o = ours(pack_padded_sequence(x_ours, lengths))
    pad_r, _ = pad_packed_sequence(out_r)
    pad_o, _ = pad_packed_sequence(out_o)
    assert_close(pad_o, pad_r.to(dtype), dtype, "packed output")
    assert_close(hn_o, hn_r.to(dtype), dtype, "packed h_n")
    g_r = grads_of(random_loss([pad_r.to(dtype), hn_r.to(dtype)]), [x_ref, *ref.parameters()])
    g_o = grads_of(random_loss([pad_o, hn_o]), [x_ours, *ours.parameters()])
    for n, a, e in zip(["input"] + [n for n, _ in ref.named_parameters()], g_o, g_r):
        _assert_grad_close(a, e, dtype, f"packed grad {n}")


@pytest.mark.parametrize("forced", ["single", "grid", "gemm"])
def test_no_bias_and_unsorted_lengths(path, forced):
    path(forced)
    H = 17 if forced == "single" else 129
    ref, ours = twin_rnn(3, H, bias=False, backend="native", device="cuda")
    torch.manual_seed(5)
    lengths = torch.tensor([2, 6, 1], device="cuda")
    x = torch.randn(6, 3, 3, device="cuda")
    w = ours.weight_ih_l0, ours.weight_hh_l0
    h0 = torch.randn(3, H, device="cuda")
    y = fastrnn._ops.rnn_forward(x, h0, *w, None, None, lengths, False, "tanh")
    y_ref = fastrnn.reference.rnn_forward(x, h0, *w, None, None, lengths, False, "tanh")
    assert_close(y, y_ref, name=f"{forced} no-bias lengths")


@pytest.mark.parametrize("forced", ["single", "grid", "gemm"])
def test_backward_is_deterministic(path, forced):
    path(forced)
    H = 64 if forced == "single" else 256
    _, ours = twin_rnn(32, H, backend="native", device="cuda")
    torch.manual_seed(6)
    x = torch.randn(33, 16, 32, device="cuda", requires_grad=True)
    runs = []
    for _ in range(2):
        y, hn = ours(x)
        runs.append(grads_of(random_loss([y, hn]), [x, *ours.parameters()]))
    for a, b in zip(*runs):
        assert torch.equal(a, b), "two identical backward passes differ"


def test_forced_path_that_cannot_run_falls_back(path):
    # "single" cannot hold H=1024 in one block: the host must fall back, not fail.
    path("single")
    ref, ours = twin_rnn(8, 1024, backend="native", device="cuda")
    x = torch.randn(3, 2, 8, device="cuda")
    assert_close(ours(x)[0], ref(x)[0], torch.float32, "fallback output")


def test_bad_forced_path_is_an_error(path):
    path("fastest")
    _, ours = twin_rnn(4, 8, backend="native", device="cuda")
    with pytest.raises(ValueError, match="FASTRNN_CUDA_PATH"):
        ours(torch.randn(2, 1, 4, device="cuda"))


def test_runs_on_current_stream_and_device():
    _, ours = twin_rnn(8, 64, backend="native", device="cuda")
    x = torch.randn(5, 3, 8, device="cuda")
    expected = ours(x)[0]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = ours(x)[0]
    side.synchronize()
    assert torch.equal(got, expected)


def test_empty_batch():
    # The op itself (the module short-circuits B = 0): no kernel launch, zero gradients.
    x = torch.randn(3, 0, 4, device="cuda", requires_grad=True)
    h0 = torch.randn(0, 8, device="cuda", requires_grad=True)
    w_ih = torch.randn(8, 4, device="cuda", requires_grad=True)
    w_hh = torch.randn(8, 8, device="cuda", requires_grad=True)
    y = fastrnn._ops.rnn_forward(x, h0, w_ih, w_hh, None, None, None, False, "tanh")
    assert y.shape == (3, 0, 8)
    gx, gh, gw_ih, gw_hh = torch.autograd.grad(y.sum(), [x, h0, w_ih, w_hh])
    assert gx.shape == x.shape and gh.shape == h0.shape
    assert torch.equal(gw_ih, torch.zeros_like(w_ih)) and torch.equal(gw_hh, torch.zeros_like(w_hh))
