"""Parity of the CPU kernels (csrc/cpu) with fastrnn.reference, on every code path.

Each ISA variant the machine supports is forced through FASTRNN_CPU_ISA (read at every
call). Sizes straddle the register tiles: AVX-512 tiles are up to 6 rows x 64 float
columns (32 double), AVX2 6 x 16 (8), portable 4 x 4; threads split the batch when
the work pays for a parallel region (csrc/cpu/machine.h) and H >= 64; packed weights over
half the L2 the OS reports take the project-first forward.
FASTRNN_CPU_PATH forces the fused kernels (threads split the batch; `fused_inline` /
`project_first` also force where x W_ih^T runs: inside each step / first as one GEMM), the
column split (threads split the weight panels and meet at a barrier every step; run here on
a team of 2 threads even at tiny sizes) or the stepwise path (csrc/cpu/stepwise.h). The
sorted-lengths (active rows) and batched-GEMM choices are in test_cpu_perf_paths.py.
"""
from __future__ import annotations

import os
import pytest
import torch

from fastrnn import reference
from helpers import assert_close, random_loss

ops = torch.ops.fastrnn
ISAS = ["portable", "avx2", "avx512"]


def _isa_supported(isa: str) -> bool:
    import os

    old = os.environ.get("FASTRNN_CPU_ISA")
    os.environ["FASTRNN_CPU_ISA"] = isa
    try:
        ops.rnn_forward(torch.zeros(1, 1, 1), torch.zeros(1, 1), torch.zeros(1, 1),
                        torch.zeros(1, 1), None, None, None, False, "tanh")
        return True
    except RuntimeError as err:
        assert "FASTRNN_CPU_ISA" in str(err)
        return False
    finally:
        if old is None:
            del os.environ["FASTRNN_CPU_ISA"]
        else:
            os.environ["FASTRNN_CPU_ISA"] = old


SUPPORTED = {isa: _isa_supported(isa) for isa in ISAS}


# Every ISA's fused kernels split by rows and by columns, with the input projection inside
# the step (fused_inline) or first as one GEMM (project_first) forced as well as chosen by
# the L2 rule (fused), and the stepwise path (ATen GEMMs one step at a time, taken for short
# sequences and for small batches on large weights), forced at any size.
PATHS = ([("fused", isa) for isa in ISAS] + [("columns", isa) for isa in ISAS]
         + [("fused_inline", isa) for isa in ISAS] + [("project_first", isa) for isa in ISAS]
         + [("stepwise", "auto")])


def _path_id(path, isa):
    return isa if path == "fused" else path if isa == "auto" else f"{path}-{isa}"


@pytest.fixture(params=PATHS, ids=[_path_id(*p) for p in PATHS])
def isa(request, monkeypatch):
    path, isa = request.param
    if isa != "auto" and not SUPPORTED[isa]:
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    monkeypatch.setenv("FASTRNN_CPU_PATH", path)
    old = torch.get_num_threads()
    if path == "columns":
        torch.set_num_threads(2)  # a team of two: every step meets at the barrier
    yield isa
    torch.set_num_threads(old)


def make_args(T, B, I, H, dtype=torch.float32, bias=True, seed=0):
    """Random op arguments scaled like nn.RNN's init (activations stay in tanh's range)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return ((torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale).to(dtype)

    k = H ** -0.5
    x = rnd(T, B, I)  # [T, B, I]
    hx = rnd(B, H, scale=0.5)  # [B, H]
    w_ih, w_hh = rnd(H, I, scale=k), rnd(H, H, scale=k)  # [H, I], [H, H]
    b_ih, b_hh = (rnd(H, scale=k), rnd(H, scale=k)) if bias else (None, None)  # [H]
    return [x, hx, w_ih, w_hh, b_ih, b_hh]


def run_both(args, lengths=None, reverse=False, act="tanh"):
    """(y, grads) of the op and of the reference, both through autograd, same loss."""
    results = []
    for fn in (ops.rnn_forward, reference.rnn_forward):
        leaves = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
        y = fn(*leaves, lengths, reverse, act)
        present = [leaf for leaf in leaves if leaf is not None]
        grads = torch.autograd.grad(random_loss([y.float() if y.dtype in (torch.float16, torch.bfloat16) else y]),
                                    present)
        results.append((y.detach(), grads))
    return results


def check_parity(args, lengths=None, reverse=False, act="tanh"):
    (y, grads), (y_ref, grads_ref) = run_both(args, lengths, reverse, act)
    assert_close(y, y_ref, name="output")
    names = ["input", "hx", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    present = [n for n, a in zip(names, args) if a is not None]
    for name, g, g_ref in zip(present, grads, grads_ref):
        assert_close(g, g_ref, dtype=args[0].dtype, name=f"grad {name}")


SHAPES = {
    # id: (T, B, I, H)
    "T3-B1-I1-H1": (3, 1, 1, 1),
    "T5-B3-I3-H3": (5, 3, 3, 3),
    "T4-B7-I5-H17": (4, 7, 5, 17),
    "T2-B6-I4-H16": (2, 6, 4, 16),
    "T3-B12-I4-H64": (3, 12, 4, 64),
    "T2-B13-I3-H65": (2, 13, 3, 65),
    "T3-B1-I2-H129": (3, 1, 2, 129),
    "T5-B13-I6-H129-threads": (5, 13, 6, 129),
    "T24-B12-I5-H64-threads": (24, 12, 5, 64),
    # (I + H) * H * 4 bytes > 2 MiB > half of any L2: x W_ih^T runs first (project_first)
    "T3-B7-I300-H600-project-first": (3, 7, 300, 600),
}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_parity(isa, shape, dtype, act):
    check_parity(make_args(*shape, dtype=dtype), act=act)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_parity_no_bias(isa, dtype):
    check_parity(make_args(4, 7, 5, 17, dtype=dtype, bias=False))
    check_parity(make_args(3, 13, 6, 129, dtype=dtype, bias=False), act="relu")


LENGTH_CASES = {
    # id: (T, B, I, H, lengths): zero, one, full, beyond T, and mixed rows
    "T6-B7-H17": (6, 7, 3, 17, [6, 0, 3, 1, 9, 6, 2]),
    "T5-B13-H129-threads": (5, 13, 4, 129, [5, 4, 3, 2, 1, 0, 5, 5, 7, 3, 1, 2, 5]),
    "T4-B3-H3-all-inactive": (4, 3, 2, 3, [0, 0, -2]),
    "T3-B5-H600-project-first": (3, 5, 300, 600, [3, 0, 1, 2, 3]),
}


@pytest.mark.parametrize("case", LENGTH_CASES.values(), ids=LENGTH_CASES.keys())
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_lengths_reverse(isa, case, reverse, dtype, act):
    T, B, I, H, lengths = case
    check_parity(make_args(T, B, I, H, dtype=dtype), torch.tensor(lengths), reverse, act)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_reverse_without_lengths(isa, reverse):
    check_parity(make_args(5, 13, 6, 129), reverse=reverse)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_reduced_precision(isa, dtype):
    args = make_args(4, 7, 5, 17, dtype=dtype)
    check_parity(args, lengths=torch.tensor([4, 1, 0, 4, 2, 3, 9]), reverse=True)
    (y, _), _ = run_both(args)
    assert y.dtype == dtype


def test_non_contiguous(isa):
    T, B, I, H = 4, 7, 5, 17
    x, hx, w_ih, w_hh, b_ih, b_hh = make_args(T, B, I, H)
    args = [
        x.transpose(0, 1).contiguous().transpose(0, 1),  # [T, B, I], batch-major storage
        hx.t().contiguous().t(),
        w_ih.t().contiguous().t(),
        w_hh.t().contiguous().t(),
        torch.stack([b_ih, b_ih], dim=1)[:, 0],  # stride 2
        torch.stack([b_hh, b_hh], dim=1)[:, 1],
    ]
    assert not any(a.is_contiguous() for a in args)
    lengths = torch.tensor([4, 9, 0, 1, 2, 1, 1, 5, 3, 6, 4, 7, 4, 2])[::2]  # stride 2
    assert not lengths.is_contiguous()
    check_parity(args, lengths=lengths)


def test_backward_output_mask(isa):
    x, hx, w_ih, w_hh, b_ih, b_hh = make_args(5, 13, 6, 129)
    y = ops.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, None, False, "tanh")
    dy = torch.randn_like(y)
    full = ops.rnn_backward(dy, x, hx, w_ih, w_hh, y, None, False, "tanh", [True, True])
    only_input = ops.rnn_backward(dy, x, hx, w_ih, w_hh, y, None, False, "tanh", [True, False])
    only_weights = ops.rnn_backward(dy, x, hx, w_ih, w_hh, y, None, False, "tanh", [False, True])
    torch.testing.assert_close(only_input[0], full[0], rtol=0, atol=0)
    torch.testing.assert_close(only_input[1], full[1], rtol=0, atol=0)
    assert only_input[2].numel() == only_input[3].numel() == only_input[4].numel() == 0
    assert only_weights[0].numel() == 0
    for a, b in zip(only_weights[1:], full[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_vector_tanh_accuracy(isa):
    """y = tanh(x) exactly when W_ih = I, W_hh = 0, h0 = 0: checks the SIMD tanh to ~2 ulp."""
    H = 64
    vals = torch.cat([
        torch.linspace(-12, 12, 20000),
        torch.linspace(-0.56, 0.56, 5000),  # the switch between the two formulas
        torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-6, 9.0, 9.01, 50.0, -50.0, 0.55, -0.55]),
    ])
    vals = torch.cat([vals, vals.new_zeros(-vals.numel() % H)])
    x = vals.view(-1, 1, H)  # [T, 1, H]
    eye, zeros = torch.eye(H), torch.zeros(H, H)
    y = ops.rnn_forward(x, torch.zeros(1, H), eye, zeros, None, None, None, False, "tanh")
    expected = torch.tanh(x.double()).float()
    torch.testing.assert_close(y, expected, rtol=3e-7, atol=1e-30)


def test_nan_stays_in_its_row(isa):
    x, hx, w_ih, w_hh, b_ih, b_hh = make_args(4, 7, 5, 65)
    x[1, 2, 0] = float("nan")
    for act in ("tanh", "relu"):
        y = ops.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, None, False, act)
        y_ref = reference.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, None, False, act)
        assert y[1:, 2].isnan().all() and not y[:1].isnan().any()
        assert_close(y[:, [0, 1, 3, 4, 5, 6]], y_ref[:, [0, 1, 3, 4, 5, 6]], name=act)


def test_threads_match_single_thread(isa):
    if os.environ.get("FASTRNN_CPU_PATH") == "stepwise":
        pytest.skip("the stepwise path's GEMMs are MKL's: not bitwise across thread counts")
    args = make_args(24, 12, 5, 64)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.rnn_forward(*args, None, False, "tanh")
        torch.set_num_threads(2)
        two = ops.rnn_forward(*args, None, False, "tanh")
    finally:
        torch.set_num_threads(old)
    # rows are independent and each is computed the same way on any thread
    torch.testing.assert_close(one, two, rtol=0, atol=0)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_columns_any_team_size(monkeypatch, threads):
    """The column split on teams of 1, 2 and 3 (more threads than cores, and than the 3
    panels of H = 9 on portable's 4-column panels) gives the single-thread results."""
    monkeypatch.setenv("FASTRNN_CPU_ISA", "portable")
    args = make_args(7, 2, 3, 9, dtype=torch.float64)
    lengths = torch.tensor([7, 4])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("FASTRNN_CPU_PATH", "fused")
        expected = run_both(args, lengths, reverse=True)[0]
        torch.set_num_threads(threads)
        monkeypatch.setenv("FASTRNN_CPU_PATH", "columns")
        got = run_both(args, lengths, reverse=True)[0]
    finally:
        torch.set_num_threads(old)
    # same sums in the same order: each column is computed by one thread, as on one
    for a, b in zip([got[0], *got[1]], [expected[0], *expected[1]]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


_SMALLER_TEAM = """
import os, torch
from fastrnn import reference
os.environ["FASTRNN_CPU_PATH"] = "columns"
torch.set_num_threads(2)  # asks for 2; OMP_THREAD_LIMIT=1 grants a team of 1
assert torch.get_num_threads() == 2
g = torch.Generator().manual_seed(0)
x, hx = torch.randn(5, 1, 3, generator=g), torch.randn(1, 130, generator=g)
w_ih, w_hh = torch.randn(130, 3, generator=g) / 12, torch.randn(130, 130, generator=g) / 12
args = [a.double().requires_grad_() for a in (x, hx, w_ih, w_hh)]
for fn in (torch.ops.fastrnn.rnn_forward, reference.rnn_forward):
    y = fn(*args, None, None, None, False, "tanh")
    grads = torch.autograd.grad(y.sin().sum(), args)
    print(repr([y.sum().item()] + [gr.sum().item() for gr in grads]))
"""


def test_columns_smaller_team_than_asked():
    """A team smaller than requested (here: OMP_THREAD_LIMIT) still computes every column
    and does not wait at the barrier for threads that never came."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _SMALLER_TEAM], env=env, cwd=root, timeout=120,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    got, expected = (eval(line) for line in out.stdout.splitlines())
    assert got == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("value", ["sse9", "AVX512 "])
def test_bad_isa_env(monkeypatch, value):
    monkeypatch.setenv("FASTRNN_CPU_ISA", value)
    with pytest.raises(RuntimeError, match="FASTRNN_CPU_ISA='" + value.strip()[:3]):
        ops.rnn_forward(*make_args(2, 1, 1, 1), None, False, "tanh")


def test_bad_path_env(monkeypatch):
    monkeypatch.setenv("FASTRNN_CPU_PATH", "fast")
    with pytest.raises(RuntimeError, match="FASTRNN_CPU_PATH='fast' is unknown.*columns"):
        ops.rnn_forward(*make_args(2, 1, 1, 1), None, False, "tanh")


def test_unsupported_isa_env_is_an_error(monkeypatch):
    missing = [isa for isa in ISAS if not SUPPORTED[isa]]
    if not missing:
        pytest.skip("this CPU supports every variant")
    monkeypatch.setenv("FASTRNN_CPU_ISA", missing[0])
    with pytest.raises(RuntimeError, match="not supported by this CPU"):
        ops.rnn_forward(*make_args(2, 1, 1, 1), None, False, "tanh")
