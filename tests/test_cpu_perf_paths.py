"""The CPU performance paths of issue 14: packed batches that compute only active rows,
path thresholds derived from the machine's measured parameters, and the FMA-peak probe.

Parity is against fastrnn.reference (and torch.nn.RNN for PackedSequence) with the
tolerances of tests/helpers.py; no assertion here depends on timing.
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import backends
from helpers import assert_close, twin_rnn
from cpu_matrix import ISAS as ALL_ISAS, isa_unsupported_reason
from test_cpu_kernels import check_parity, make_args

ISAS = [isa for isa in ALL_ISAS if isa_unsupported_reason(isa) is None]  # this CPU's
# The fused paths: rows (projection inline or first, by the L2 rule or forced), the column
# split; every one must take the active-row prefix.
FUSED_PATHS = ["fused", "fused_inline", "project_first", "columns", "gemv"]


@pytest.fixture
def cpu_env(monkeypatch):
    old = torch.get_num_threads()

    def set_env(isa, path, threads=2):
        monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
        monkeypatch.setenv("FASTRNN_CPU_PATH", path)
        torch.set_num_threads(threads)

    yield set_env
    torch.set_num_threads(old)


# Sorted (non-increasing) lengths: zero, beyond T, equal runs, a single long row.
SORTED_CASES = {
    "T7-B9-H17": (7, 9, 5, 17, [9, 7, 7, 5, 3, 3, 1, 0, -1]),
    "T6-B13-H129-threads": (6, 13, 4, 129, [6, 6, 5, 5, 4, 3, 3, 2, 2, 1, 1, 1, 0]),
    "T5-B4-H65-one-long": (5, 4, 3, 65, [5, 1, 1, 1]),
}


@pytest.mark.parametrize("case", SORTED_CASES.values(), ids=SORTED_CASES.keys())
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("path", FUSED_PATHS)
@pytest.mark.parametrize("isa", ISAS)
def test_sorted_lengths_compute_active_rows(cpu_env, isa, path, reverse, case):
    cpu_env(isa, path)
    T, B, I, H, lengths = case
    for dtype in (torch.float32, torch.float64):
        check_parity(make_args(T, B, I, H, dtype=dtype), torch.tensor(lengths), reverse)
        plan = backends.last_cpu_plan()
        assert plan["op"] == "backward" and plan["active_rows"], plan
        ops = torch.ops.fastrnn
        ops.rnn_forward(*make_args(T, B, I, H, dtype=dtype), torch.tensor(lengths), reverse, "relu")
        plan = backends.last_cpu_plan()
        assert plan["op"] == "forward" and plan["active_rows"], plan


@pytest.mark.parametrize("isa", ISAS)
def test_unsorted_lengths_mask(cpu_env, isa):
    """Unsorted lengths: every row computes every step and inactive rows are masked."""
    cpu_env(isa, "fused")
    check_parity(make_args(6, 9, 5, 17), torch.tensor([2, 6, 0, 6, 9, 1, 3, 3, 4]), True)
    assert backends.last_cpu_plan()["active_rows"] is False


def test_stepwise_records_no_active_rows(cpu_env):
    cpu_env("auto", "stepwise")
    check_parity(make_args(5, 4, 3, 17), torch.tensor([5, 3, 2, 0]))
    assert backends.last_cpu_plan()["active_rows"] is False


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("path", ["auto", "fused", "columns", "gemv"])
def test_packed_sequence_matches_nn_rnn(cpu_env, path, bidirectional):
    """A PackedSequence (sorted by the packing) through fastrnn.RNN vs torch.nn.RNN:
    outputs, h_n and every gradient, with the active-row kernels."""
    cpu_env("auto", path)
    ref, ours = twin_rnn(6, 33, bidirectional=bidirectional)
    gen = torch.Generator().manual_seed(3)
    lengths = torch.tensor([9, 4, 8, 1, 9, 3, 7, 2, 5, 6])
    x = torch.randn(9, 10, 6, generator=gen)  # [T, B, I]
    results = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_()
        packed = pack_padded_sequence(xi, lengths, enforce_sorted=False)
        out, h_n = model(packed)
        y, _ = pad_packed_sequence(out)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(4))
        loss = (y * w).sum() + (h_n * 0.5).sum()
        grads = torch.autograd.grad(loss, [xi] + list(model.parameters()))
        results.append((y.detach(), h_n.detach(), grads))
    (y_r, h_r, g_r), (y_o, h_o, g_o) = results
    assert_close(y_o, y_r, name="output")
    assert_close(h_o, h_r, name="h_n")
    for i, (a, b) in enumerate(zip(g_o, g_r)):
        assert_close(a, b, name=f"grad {i}")


def _sysfs_cache(level: int) -> int | None:
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            d = os.path.join(base, entry)
            with open(os.path.join(d, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(d, "type")) as f:
                if f.read().strip() == "Instruction":
                    continue
            with open(os.path.join(d, "size")) as f:
                s = f.read().strip()
            mult = {"K": 1 << 10, "M": 1 << 20}.get(s[-1], 1)
            return int(s.rstrip("KM")) * mult
    except OSError:
        return None
    return None


def test_machine_parameters_come_from_the_os():
    m = backends.cpu_machine()
    assert m["cache_source"] in ("sysfs", "sysconf", "default")
    for level, key in ((1, "l1d_bytes"), (2, "l2_bytes"), (3, "l3_bytes")):
        assert m[key] > 0
        if m["cache_source"] == "sysfs":
            assert m[key] == _sysfs_cache(level), (key, m)
    assert m["threads"] == torch.get_num_threads()
    for key in ("madd_per_ns", "pack_ns_per_element", "step_call_ns", "parallel_ns", "barrier_ns",
                "stream_bytes_per_ns", "gemv_madd_per_ns"):
        assert math.isfinite(m[key]) and m[key] > 0, (key, m)


@pytest.mark.parametrize("isa", ISAS)
def test_machine_reports_the_isa_in_use(monkeypatch, isa):
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    m = backends.cpu_machine()
    assert m["isa"] == isa
    assert m["panel_cols"] == {"portable": 4, "avx2": 16, "avx512": 64, "avx512sim": 64}[isa]


def test_fma_peak_probe():
    p = backends.cpu_fma_peak(0.02, 1)
    assert p["threads"] == 1 and p["wall_gflops"] > 0 and p["cpu_gflops"] > 0
    with pytest.raises(RuntimeError, match="seconds"):
        torch.ops.fastrnn._cpu_fma_peak(0.0, 1)
    with pytest.raises(RuntimeError, match="threads"):
        torch.ops.fastrnn._cpu_fma_peak(0.01, 0)


@pytest.mark.parametrize("isa", ISAS)
def test_project_first_follows_the_measured_l2(cpu_env, isa):
    """The forward runs x W_ih^T first exactly when the packed [W_ih^T; W_hh^T] exceeds
    half of the L2 the OS reports (no assumed cache size)."""
    cpu_env(isa, "fused", threads=1)
    half_l2 = backends.cpu_machine()["l2_bytes"] // 2
    H = 32
    I_fit = half_l2 // (4 * H) - H  # (I + H) * H * 4 == half the L2: fits
    for I, expect in ((I_fit, False), (I_fit + 1, True)):
        args = make_args(2, 3, I, H)
        torch.ops.fastrnn.rnn_forward(*args, None, False, "tanh")
        assert backends.last_cpu_plan()["project_first"] is expect, (I, half_l2)


@pytest.mark.parametrize("isa", ISAS)
def test_auto_reads_streaming_weights_in_place_on_one_thread(cpu_env, isa):
    """On one thread, weights beyond half the L2 the OS reports take the gemv path under
    auto, forward and backward, where the step is bound by reading them (batch 1, and batch
    5 where the gemv kernel's measured rate makes 5 rows cheaper to compute than to read):
    both splits then stream the same bytes per step and only the rows path pays a packing
    pass (rnn_cpu.cpp choose_path)."""
    cpu_env(isa, "auto", threads=1)
    m = backends.cpu_machine()
    half_l2 = m["l2_bytes"] // 2
    H = math.isqrt(half_l2 // 4) + 1  # H * H * 4 > half the L2 (the recurrence's W_hh)
    read_ns = H * H * 4 / m["stream_bytes_per_ns"]
    batches = [B for B in (1, 5) if B * H * H / m["gemv_madd_per_ns"] < read_ns]
    # the SIMD kernels read-bound at batch 1 (not a claim about avx512sim, whose vectors spill)
    assert 1 in batches or isa in ("portable", "avx512sim"), m
    for B in batches:
        check_parity(make_args(3, B, 7, H), torch.tensor([3, 1, 2, 3, 0][:B]))
        assert backends.last_cpu_plan()["path"] == "gemv", (H, half_l2)
        torch.ops.fastrnn.rnn_forward(*make_args(3, B, 7, H), None, False, "tanh")
        assert backends.last_cpu_plan()["path"] == "gemv", (H, half_l2)


@pytest.mark.skipif(not torch.backends.openmp.is_available(), reason="the column split needs OpenMP")
@pytest.mark.parametrize("isa", ISAS)
def test_backward_packs_streamed_weights_where_in_place_reads_are_slower(cpu_env, isa):
    """The backward on a team of 2 with W_hh beyond half the L2 the OS reports: the column
    split on packed panels where the model (rnn_cpu.cpp choose_path, fed by the measured
    rates) finds the packing pass cheaper than the in-place carry's slower reads, the gemv
    path (W_hh read in place) where it does not (one step cannot pay for a pass over W_hh
    that a step reads once anyway); parity either way. The forward never packs for the
    gemv split (its dot form reads whole weight rows)."""
    cpu_env(isa, "auto", threads=2)
    m = backends.cpu_machine()
    l2 = m["l2_bytes"]
    H = (math.isqrt(2 * l2 // 4) // 16 + 1) * 16  # W_hh: about twice the L2, 1 MiB and up
    B, n = 4, 2
    share, madds = H * H * 4 / n, B * H * H

    def step(read_bytes_per_ns, share_bytes, team, madd_per_ns):
        read = 0.0 if share_bytes <= l2 / 2 else share_bytes / read_bytes_per_ns
        return max(read, madds / (team * madd_per_ns))

    carry = backends.cpu_carry_stream_bytes_per_ns(B)  # what the model reads (cached)
    assert carry > 0
    for T in (1, 48):
        pack = H * H * m["pack_ns_per_element"]
        gemv = T * min(step(carry, 2 * share, 1, m["gemv_madd_per_ns"]),
                       step(carry, share, n, m["gemv_madd_per_ns"]) + m["barrier_ns"])
        columns = pack / n + T * (step(m["stream_bytes_per_ns"], share, n, m["madd_per_ns"])
                                  + m["barrier_ns"])
        rows = pack + T * step(m["stream_bytes_per_ns"], 2 * share, n, m["madd_per_ns"])
        expect = ("columns",) if columns < min(gemv, rows) else (
            ("gemv",) if gemv < rows else ("rows", "stepwise"))
        check_parity(make_args(T, B, 5, H), torch.tensor([T, T - 1, T, 0]))
        plan = backends.last_cpu_plan()
        assert plan["op"] == "backward" and plan["path"] in expect, (T, H, plan, m, carry)
        torch.ops.fastrnn.rnn_forward(*make_args(T, B, 5, H), None, False, "tanh")
        assert backends.last_cpu_plan()["path"] != "columns"


@pytest.mark.parametrize("gemm", ["own", "library"])
@pytest.mark.parametrize("isa", ISAS)
def test_batched_gemm_choice(cpu_env, monkeypatch, isa, gemm):
    """The project-first projection, BPTT's dx (fastrnn's packed GEMM or at::mm) and its
    weight gradients (fastrnn's gemm_tn or at::mm), as FASTRNN_CPU_GEMM says, rows and
    columns straddling the row blocks and register tiles, T = 1 (no h_prev from y) and
    both directions."""
    cpu_env(isa, "project_first")
    monkeypatch.setenv("FASTRNN_CPU_GEMM", gemm)
    for T, B, I, H, dtype, reverse in ((3, 7, 5, 17, torch.float32, False),
                                       (9, 13, 70, 33, torch.float64, True),
                                       (2, 5, 1100, 20, torch.float32, False),
                                       (1, 3, 9, 7, torch.float32, True),
                                       (40, 30, 3, 70, torch.float32, True)):
        args = make_args(T, B, I, H, dtype=dtype)
        check_parity(args, None, reverse)
        plan = backends.last_cpu_plan()
        assert plan["own_gemm"] is plan["own_weight_grads"] is (gemm == "own"), plan  # the backward
        torch.ops.fastrnn.rnn_forward(*args, None, False, "tanh")
        plan = backends.last_cpu_plan()
        assert plan["project_first"] and plan["own_gemm"] is (gemm == "own"), plan
    check_parity(make_args(4, 3, 6, 9, bias=False))  # no bias: the GEMM starts from zero
    # Sorted lengths: the projection of only each step's active rows.
    for reverse in (False, True):
        check_parity(make_args(6, 9, 7, 19), torch.tensor([8, 6, 6, 4, 3, 3, 1, 0, 0]), reverse)
        torch.ops.fastrnn.rnn_forward(*make_args(6, 9, 7, 19), torch.tensor([6, 2, 0]).repeat(3)
                                      .sort(descending=True).values, reverse, "tanh")
        plan = backends.last_cpu_plan()
        assert plan["active_rows"] and plan["own_gemm"] is (gemm == "own"), plan


def test_batched_gemm_env_is_checked(monkeypatch):
    monkeypatch.setenv("FASTRNN_CPU_PATH", "project_first")
    monkeypatch.setenv("FASTRNN_CPU_GEMM", "mkl")
    with pytest.raises(RuntimeError, match="FASTRNN_CPU_GEMM"):
        torch.ops.fastrnn.rnn_forward(*make_args(2, 3, 4, 5), None, False, "tanh")


def test_first_call_leaves_the_user_rng_and_default_dtype_alone():
    """The once-per-process measurement (csrc/cpu/machine.cpp) runs on the first CPU call of a
    fresh process: it must not advance torch's default generator (seeded runs would differ
    from the second on) nor depend on torch's default dtype."""
    import subprocess
    import sys

    code = (
        "import torch, fastrnn\n"
        "def run():\n"
        "    torch.manual_seed(0)\n"
        "    m = fastrnn.RNN(4, 8)\n"
        "    m(torch.randn(3, 2, 4))\n"
        "    return torch.rand(3)\n"
        "a = run(); b = run()\n"
        "assert torch.equal(a, b), (a, b)\n"
        "torch.set_num_threads(1)\n"  # a thread count not measured yet: measured again, now
        "torch.set_default_dtype(torch.bfloat16)\n"
        "y = fastrnn.RNN(4, 8, dtype=torch.float32)(torch.randn(3, 2, 4, dtype=torch.float32))[0]\n"
        "assert y.dtype == torch.float32\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "ok" in run.stdout, run.stdout + run.stderr


# Short sequences whose weights sit in L2 and whose batch gives every thread rows: the
# choice between the stepwise path and the fused rows path (rnn_cpu.cpp choose_path).
SHORT_CASES = {"T1-B8-H64": (1, 8, 64, 64), "T2-B6-I9-H33": (2, 6, 9, 33),
               "T1-B16-I40-H100": (1, 16, 40, 100), "T3-B2-I5-H17": (3, 2, 5, 17)}


@pytest.mark.parametrize("case", SHORT_CASES.values(), ids=SHORT_CASES.keys())
@pytest.mark.parametrize("isa", ISAS)
def test_short_sequences_choose_by_timed_steps(cpu_env, isa, case):
    """A short sequence takes the stepwise path only where its call, timed at this size,
    is faster than packing plus the fused steps, timed too (the library's GEMMs at a step's
    size are far slower than its large-GEMM rate, which alone sent T = 1 at B = 8, H = 64
    stepwise at twice the time). The expectation is rebuilt from the measured numbers the
    choice reads (cached per process), for the forward and the backward; parity either way."""
    cpu_env(isa, "auto", threads=2)
    T, B, I, H = case
    m = backends.cpu_machine()
    threads = m["threads"]
    assert B >= threads and (I + H) * H * 4 <= m["l2_bytes"] / 2  # the rows / stepwise choice
    args = make_args(T, B, I, H)
    y = torch.ops.fastrnn.rnn_forward(*args, None, False, "tanh")
    forward_path = backends.last_cpu_plan()["path"]
    torch.ops.fastrnn.rnn_backward(torch.ones_like(y), *args[:4], y, None, False, "tanh",
                                   [True, True])
    backward_path = backends.last_cpu_plan()["path"]
    def rows_step(backward, rows, K):
        return backends.cpu_step_costs(backward, rows, I, K, H)["fused_step_ns"]

    def batch_chunks(backward, K):  # rnn_cpu.cpp batch_chunks
        n = min(threads, B)
        probe = B * K * H / m["madd_per_ns"]
        if n <= 1 or T * probe < m["parallel_ns"]:
            return 1
        if probe >= m["parallel_ns"]:
            return n if T * probe / 2 > m["parallel_ns"] else 1
        saved = rows_step(backward, B, K) - rows_step(backward, -(-B // n), K)
        return n if T * saved > m["parallel_ns"] else 1

    for backward, K, path in ((False, I + H, forward_path), (True, H, backward_path)):
        inputs = 0 if backward else I
        assert B * (inputs + H) * H <= 1 << 22 and B * (inputs + H) <= 1 << 18  # timed sizes
        pack_ns = K * H * m["pack_ns_per_element"]
        step_ns = B * K * H / (m["madd_per_ns"] * threads)
        saved = m["step_call_ns"] + max(0.0, m["own_gemm_speedup"] - 1) * step_ns
        expect = "rows"
        if T * saved < pack_ns:  # the estimate leaves stepwise in the running: timed
            n = batch_chunks(backward, K)
            fused = pack_ns + (m["parallel_ns"] if n > 1 else 0.0) + T * rows_step(backward, -(-B // n), K)
            s = backends.cpu_step_costs(backward, B, inputs, K, H)
            if s["stepwise_fixed_ns"] + T * s["stepwise_step_ns"] < fused:
                expect = "stepwise"
        assert path == expect, (backward, case, m, path)
    check_parity(args)


def test_step_costs_checks_its_arguments():
    c = backends.cpu_step_costs(False, 3, 5, 12, 7)
    assert all(math.isfinite(v) and v >= 0 for v in c.values()) and c["fused_step_ns"] > 0, c
    with pytest.raises(RuntimeError, match="rows >= 1"):
        torch.ops.fastrnn._cpu_step_costs(False, 0, 5, 12, 7)
    with pytest.raises(RuntimeError, match="K >= H"):
        torch.ops.fastrnn._cpu_step_costs(True, 2, 0, 3, 7)
