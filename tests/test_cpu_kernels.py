"""Parity of the CPU kernels (csrc/cpu) with fastrnn.reference, on every code path.

Every test taking `cpu_combo` runs under each (FASTRNN_CPU_PATH, FASTRNN_CPU_ISA, threads) of
tests/cpu_matrix.py that this CPU supports (the others skip, saying why), and proves with
fastrnn.backends.last_cpu_plan() that the forward and the backward reached that path, ISA
and thread count (and project_first for the shapes that claim it). Fused = threads split the
batch (rows); columns = threads split the weight panels and meet at a barrier every step;
stepwise = ATen GEMMs one step at a time (csrc/cpu/stepwise.h).

float32 and half results are checked against the float64 truth (helpers.assert_tracks_truth,
with fastrnn.reference in the same dtype as the baseline); float64 against the reference.
"""
from __future__ import annotations

import pytest
import torch

from cpu_matrix import (ISAS, ROW_TILE, SHAPES, TILE_VECTORS_MAX, VECTOR_LANES, Combo, cpu_combo,  # noqa: F401 (fixture)
                        isa_unsupported_reason, split_steps)
from fastrnn import reference
from helpers import assert_close, assert_op_tracks_truth, compute_dtype, run_op

ops = torch.ops.fastrnn


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
    """[(y, grads) of the op, (y, grads) of the reference], both through autograd, same loss."""
    dtype = args[0].dtype
    return [run_op(fn, args, lengths, reverse, act, dtype)[:2] for fn in (ops.rnn_forward, reference.rnn_forward)]


def check_parity(args, lengths=None, reverse=False, act="tanh", combo=None, claims=()):
    """The op against fastrnn.reference (float64 truth for the narrower types); with combo,
    also that the forward and the backward reached combo's path, ISA and threads."""
    T, B, I = args[0].shape
    H = args[3].shape[0]
    compute = compute_dtype(args[0].dtype)

    def check_forward_plan():
        if combo is not None:
            combo.assert_reached("forward", T, B, I, H, compute, claims)

    assert_op_tracks_truth(ops.rnn_forward, args, lengths, reverse, act, check_forward_plan)
    if combo is not None:
        combo.assert_reached("backward", T, B, I, H, compute, claims)


# (dtype, nonlinearity) pairs: each dtype and each activation on every path, without the
# full product (the kernels' activation code does not depend on the dtype's width).
DTYPE_ACTS = [(torch.float32, "tanh"), (torch.float64, "relu")]
DTYPE_ACT_IDS = ["f32-tanh", "f64-relu"]


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize(("dtype", "act"), DTYPE_ACTS, ids=DTYPE_ACT_IDS)
def test_parity(cpu_combo, shape, dtype, act):
    T, B, I, H, claims = shape
    check_parity(make_args(T, B, I, H, dtype=dtype), act=act, combo=cpu_combo, claims=claims)


@pytest.mark.parametrize("isa", [i for i in ISAS if isa_unsupported_reason(i) is None])
def test_small_hidden_splits_the_batch(monkeypatch, isa):
    """H = 32, where a step of few rows is latency-bound: the batch split is decided from
    measured step times (rnn_cpu.cpp batch_chunks), and split_steps(48, 32) steps pay for it
    on any machine; the split rows match the truth. (One path, ISA by ISA: the long sequence
    keeps it out of the full matrix.)"""
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    monkeypatch.setenv("FASTRNN_CPU_PATH", "fused")
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        check_parity(make_args(split_steps(48, 32), 48, 5, 32), combo=Combo("fused", isa, 2),
                     claims=("threads",))
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("isa", [i for i in ISAS if isa_unsupported_reason(i) is None])
def test_every_register_tile_shape(monkeypatch, isa, dtype):
    """Every (rows, vectors) tile the kernels can pick (kernels_impl.h gemm_rows: fewer rows
    get wider tiles, spanning panels): B = 1 .. 2 row tiles + 1 gives every block height, and
    H = 1 .. TILE_VECTORS_MAX vectors (the last one partial) every tile width up to the
    widest, plus two column groups; forward (fused step, input inside the step) and backward
    (carry) against the truth, tanh and relu, and each row computed alone bitwise equal to
    the batch's (the claim that lets thread counts differ). One thread: each B is one
    thread's rows."""
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    monkeypatch.setenv("FASTRNN_CPU_PATH", "fused_inline")
    lanes = VECTOR_LANES[(isa, dtype)]
    partial = 1 if lanes > 1 else 0  # a partial last vector, where vectors have lanes
    hidden = sorted({lanes * v - partial for v in range(1, TILE_VECTORS_MAX + 1)}
                    | {lanes * TILE_VECTORS_MAX + 1})
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for B in range(1, 2 * ROW_TILE[isa] + 2):
            for H in hidden:
                args = make_args(3, B, 2, H, dtype=dtype, seed=B * 1000 + H)
                for act in ("tanh", "relu"):
                    check_parity(args, act=act, combo=Combo("fused_inline", isa, 1))
                # Tile shape does not change the bits: each row alone (one-row tiles, the
                # widest) equals that row of the whole batch (taller, narrower tiles).
                whole = ops.rnn_forward(*args, None, False, "tanh")  # [T, B, H]
                for b in range(B):
                    x, hx, w_ih, w_hh, b_ih, b_hh = args
                    alone = ops.rnn_forward(x[:, b:b + 1].contiguous(), hx[b:b + 1], w_ih, w_hh,
                                            b_ih, b_hh, None, False, "tanh")
                    torch.testing.assert_close(alone, whole[:, b:b + 1], rtol=0, atol=0)
    finally:
        torch.set_num_threads(old)


def test_parity_no_bias(cpu_combo):
    check_parity(make_args(4, 7, 5, 17, bias=False), combo=cpu_combo)
    check_parity(make_args(3, 13, 6, 129, dtype=torch.float64, bias=False), reverse=True, act="relu",
                 combo=cpu_combo)


LENGTH_CASES = {
    # id: (T, B, I, H, lengths, claims): zero, one, full, beyond T, all equal, mixed rows
    "T6-B7-H17": (6, 7, 3, 17, [6, 0, 3, 1, 9, 6, 2], ()),
    "T5-B13-H129": (5, 13, 4, 129, [5, 4, 3, 2, 1, 0, 5, 5, 7, 3, 1, 2, 5], ()),
    "T4-B3-H3-all-inactive": (4, 3, 2, 3, [0, 0, -2], ()),
    "T3-B4-H65-all-equal": (3, 4, 2, 65, [2, 2, 2, 2], ()),
    "T3-B5-H600-project-first": (3, 5, 300, 600, [3, 0, 1, 2, 3], ("project_first",)),
}


@pytest.mark.parametrize("case", LENGTH_CASES.values(), ids=LENGTH_CASES.keys())
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("dtype", "act"), DTYPE_ACTS, ids=DTYPE_ACT_IDS)
def test_lengths_reverse(cpu_combo, case, reverse, dtype, act):
    T, B, I, H, lengths, claims = case
    check_parity(make_args(T, B, I, H, dtype=dtype), torch.tensor(lengths), reverse, act,
                 combo=cpu_combo, claims=claims)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
def test_reduced_precision(cpu_combo, dtype):
    args = make_args(4, 7, 5, 17, dtype=dtype)
    check_parity(args, lengths=torch.tensor([4, 1, 0, 4, 2, 3, 9]), reverse=True, combo=cpu_combo)
    check_parity(make_args(3, 13, 6, 129, dtype=dtype), act="relu", combo=cpu_combo)
    (y, _), _ = run_both(args)
    assert y.dtype == dtype


def test_non_contiguous(cpu_combo):
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
    check_parity(args, lengths=lengths, combo=cpu_combo)


def test_backward_output_mask(cpu_combo):
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


def test_vector_tanh_accuracy(cpu_combo):
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


def test_nan_stays_in_its_row(cpu_combo):
    x, hx, w_ih, w_hh, b_ih, b_hh = make_args(4, 7, 5, 65)
    x[1, 2, 0] = float("nan")
    for act in ("tanh", "relu"):
        y = ops.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, None, False, act)
        y_ref = reference.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, None, False, act)
        assert y[1:, 2].isnan().all() and not y[:1].isnan().any()
        assert_close(y[:, [0, 1, 3, 4, 5, 6]], y_ref[:, [0, 1, 3, 4, 5, 6]], name=act)


def test_ops_ignore_autocast(cpu_combo):
    """Under CPU autocast the ops compute in their arguments' type, exactly as outside it: the
    ATen matmuls inside them must not see the autocast key (the stepwise backward's at::mm
    did, and ran in bfloat16: grad_hx and grad_W_hh off by ~1e-2)."""
    args = make_args(4, 3, 8, 64)
    x, hx, w_ih, w_hh = args[:4]
    lengths = torch.tensor([4, 2, 3])
    gy = make_args(4, 3, 64, 1, seed=1)[0]  # [T, B, H]

    def both():
        y = ops.rnn_forward(*args, lengths, False, "tanh")
        return y, ops.rnn_backward(gy, x, hx, w_ih, w_hh, y, lengths, False, "tanh", [True, True])

    y, grads = both()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_ac, grads_ac = both()
    for name, got, want in zip(["y", "dx", "dhx", "dW_ih", "dW_hh", "db"], [y_ac, *grads_ac], [y, *grads]):
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_relu_off_unit_stops_an_infinite_gradient(cpu_combo):
    """A unit whose relu is off (y = 0) passes no gradient back, even an infinite one, as
    torch's threshold_backward: 0, not inf * 0 = NaN (a product with a 0/1 mask)."""
    x = torch.ones(2, 1, 1, dtype=torch.float64)  # [T, B, I]
    w_ih = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)  # unit 1: pre-activation -1, off
    w_hh = torch.zeros(2, 2, dtype=torch.float64)
    hx = torch.zeros(1, 2, dtype=torch.float64)
    y = ops.rnn_forward(x, hx, w_ih, w_hh, None, None, None, False, "relu")
    gy = torch.tensor([[[1.0, float("inf")]], [[1.0, float("inf")]]], dtype=torch.float64)
    dx, dhx, dw_ih, dw_hh, db = ops.rnn_backward(gy, x, hx, w_ih, w_hh, y, None, False, "relu",
                                                 [True, True])
    assert y[:, 0, 1].eq(0).all()
    for name, g in [("dx", dx), ("dhx", dhx), ("dW_ih", dw_ih), ("dW_hh", dw_hh), ("db", db)]:
        assert not g.isnan().any(), name
    torch.testing.assert_close(dx, torch.ones_like(dx))  # unit 0's gradient, through W_ih = 1
    torch.testing.assert_close(db, torch.tensor([2.0, 0.0], dtype=torch.float64))


def test_threads_match_single_thread(cpu_combo, monkeypatch):
    if cpu_combo.path == "stepwise":
        pytest.skip("the stepwise path's GEMMs are MKL's: not bitwise across thread counts")
    if cpu_combo.threads != 2:
        pytest.skip("compares 1 and 2 threads itself: runs once per path and ISA (the t2 combo)")
    # the project-first projection on fastrnn's GEMM on both thread counts (auto weighs a
    # per-thread-count measurement, and the library's GEMM sums in another order)
    monkeypatch.setenv("FASTRNN_CPU_GEMM", "own")
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


# (path, the path whose single-thread results it must reproduce, ISA).
TEAM_CASES = [(path, single, isa) for path, single in (("columns", "fused"), ("gemv", "gemv"))
              for isa in ISAS if isa_unsupported_reason(isa) is None]


@pytest.mark.parametrize(("path", "single", "isa"), TEAM_CASES, ids=["-".join(c) for c in TEAM_CASES])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_columns_any_team_size(monkeypatch, threads, path, single, isa):
    """The column splits on teams of 1, 2 and 3 (more threads than cores, and than the 3
    panels of H = 9 on portable's 4-column panels; on AVX2 H = 37 makes 3 panels of 16 with
    a remainder) give the single-thread results: the packed split those of the fused rows
    path, the gemv split (dot form: another summation order) its own on one thread."""
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    # dx on fastrnn's GEMM whatever the thread count (auto asks a per-thread-count
    # measurement, and the library's GEMM sums in another order)
    monkeypatch.setenv("FASTRNN_CPU_GEMM", "own")
    H = 9 if isa == "portable" else 37
    args = make_args(7, 2, 3, H, dtype=torch.float64)
    lengths = torch.tensor([7, 4])
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        monkeypatch.setenv("FASTRNN_CPU_PATH", single)
        expected = run_both(args, lengths, reverse=True)[0]
        torch.set_num_threads(threads)
        monkeypatch.setenv("FASTRNN_CPU_PATH", path)
        got = run_both(args, lengths, reverse=True)[0]
    finally:
        torch.set_num_threads(old)
    # same sums in the same order: each column is computed by one thread, as on one
    for a, b in zip([got[0], *got[1]], [expected[0], *expected[1]]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


_SMALLER_TEAM = """
import os, sys, torch
from fastrnn import reference
os.environ["FASTRNN_CPU_PATH"] = sys.argv[1]
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


@pytest.mark.parametrize("path", ["columns", "gemv"])
def test_columns_smaller_team_than_asked(path):
    """A team smaller than requested (here: OMP_THREAD_LIMIT) still computes every column
    and does not wait at the barrier for threads that never came."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", _SMALLER_TEAM, path], env=env, cwd=root, timeout=120,
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
    missing = [isa for isa in ISAS if isa_unsupported_reason(isa)]
    if not missing:
        pytest.skip("this CPU supports every variant")
    monkeypatch.setenv("FASTRNN_CPU_ISA", missing[0])
    with pytest.raises(RuntimeError, match="not supported by this CPU"):
        ops.rnn_forward(*make_args(2, 1, 1, 1), None, False, "tanh")
