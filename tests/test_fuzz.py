"""Property-based parity (Hypothesis): modules against torch.nn.RNN / nn.RNNCell, the CPU op on
each of its code paths, and the Triton and reference backends, all against a float64 truth.

Module configurations: sizes, layers, directions, batch_first, bias, nonlinearity, padded /
unbatched / packed input with unsorted lengths, hx given or not, float32 / float64 / float16
/ bfloat16, backend native / reference / Triton (its interpreter without a GPU: small sizes).
Op configurations are stratified by the CPU path they target (op_configs: the fused rows
on one or two threads, the column split, stepwise, project-first, several weight panels),
over every ISA this CPU has, with lengths holding zeros, all equal or out of range, and
reverse; each path also has an @example, so the default draws reach every one. Each op
example records what it reached with hypothesis.event() (from last_cpu_plan()):
    python -m pytest tests/test_fuzz.py -q --hypothesis-show-statistics

CI runs 25 examples per test (fixed seed); more with FASTRNN_FUZZ_EXAMPLES, e.g.
    FASTRNN_FUZZ_EXAMPLES=1000 python -m pytest tests/test_fuzz.py -q
A failing example is printed by Hypothesis and can be replayed with @example.
"""
from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
import fastrnn.triton
from cpu_matrix import (ISAS, PANEL_COLS, PATHS, PROJECT_FIRST_BYTES, ROW_TILE, default_isa,
                        isa_unsupported_reason, split_steps)
from fastrnn.backends import last_cpu_plan
from helpers import Terms, assert_modules_track_truth, assert_op_tracks_truth, compute_dtype, twin_rnn

EXAMPLES = int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # A fixed seed in CI (no flaky reds); an explicit FASTRNN_FUZZ_EXAMPLES explores anew.
    derandomize="FASTRNN_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16])
# Triton runs in its interpreter without a GPU (tests/conftest.py): a few steps of a few
# columns take seconds there, so its draws stay this small.
TRITON_MAX = {"T": 4, "B": 3, "I": 4, "H": 8, "num_layers": 2}
BACKENDS = ["auto", "reference"] + (["triton"] if fastrnn.triton.is_available() else [])


@st.composite
def rnn_configs(draw):
    backend = draw(st.sampled_from(BACKENDS))
    cap = TRITON_MAX if backend == "triton" else {"T": 9, "B": 5, "I": 9, "H": 17, "num_layers": 3}
    T = draw(st.integers(1, cap["T"]))
    mode = draw(st.sampled_from(["padded", "unbatched", "packed"]))
    B = 1 if mode == "unbatched" else draw(st.integers(1, cap["B"]))
    return {
        "backend": backend,
        "I": draw(st.integers(1, cap["I"])),
        "H": draw(st.integers(1, cap["H"])),
        "num_layers": draw(st.integers(1, cap["num_layers"])),
        "bidirectional": draw(st.booleans()),
        "batch_first": draw(st.booleans()),
        "bias": draw(st.booleans()),
        "nonlinearity": draw(st.sampled_from(["tanh", "relu"])),
        "dtype": draw(DTYPES),
        "T": T,
        "B": B,
        "mode": mode,
        "lengths": draw(st.lists(st.integers(1, T), min_size=B, max_size=B)),
        "with_hx": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**16)),
    }


@FUZZ
@given(cfg=rnn_configs())
def test_rnn_matches_torch(cfg):
    kwargs = {k: cfg[k] for k in ("num_layers", "bidirectional", "batch_first", "bias", "nonlinearity")}
    ref, ours = twin_rnn(cfg["I"], cfg["H"], dtype=cfg["dtype"], seed=cfg["seed"], backend=cfg["backend"], **kwargs)
    event(f"backend={cfg['backend']}")
    event(f"dtype={cfg['dtype']}")
    gen = torch.Generator().manual_seed(cfg["seed"])
    T, B, D = cfg["T"], cfg["B"], 2 if cfg["bidirectional"] else 1
    shape = (T, cfg["I"]) if cfg["mode"] == "unbatched" else ((B, T, cfg["I"]) if cfg["batch_first"] else (T, B, cfg["I"]))
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(cfg["dtype"]).requires_grad_()
    hx = None
    if cfg["with_hx"]:
        h_shape = (cfg["num_layers"] * D, cfg["H"]) if cfg["mode"] == "unbatched" else (cfg["num_layers"] * D, B, cfg["H"])
        hx = torch.randn(h_shape, generator=gen, dtype=torch.float64).to(cfg["dtype"]).requires_grad_()

    def forward(model, x, hx):
        if cfg["mode"] == "packed":
            out, h_n = model(pack_padded_sequence(x, torch.tensor(cfg["lengths"]), batch_first=cfg["batch_first"],
                                                  enforce_sorted=False), hx)
            return [out.data, h_n]
        return list(model(x, hx))

    terms = Terms.of(T, B, cfg["I"], cfg["H"], cfg["num_layers"], cfg["bidirectional"])
    assert_modules_track_truth(ref, ours, [x, hx], terms, forward, loss_seed=cfg["seed"])


@FUZZ
@given(B=st.integers(0, 5), I=st.integers(1, 9), H=st.integers(1, 17), bias=st.booleans(),
       nonlinearity=st.sampled_from(["tanh", "relu"]), dtype=DTYPES, unbatched=st.booleans(),
       with_hx=st.booleans(), seed=st.integers(0, 2**16))
def test_cell_matches_torch(B, I, H, bias, nonlinearity, dtype, unbatched, with_hx, seed):
    torch.manual_seed(seed)
    ref = nn.RNNCell(I, H, bias, nonlinearity).to(dtype)
    ours = fastrnn.RNNCell(I, H, bias, nonlinearity).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn((I,) if unbatched else (B, I), dtype=dtype, requires_grad=True)
    h = torch.randn((H,) if unbatched else (B, H), dtype=dtype, requires_grad=True) if with_hx else None
    assert_modules_track_truth(ref, ours, [x, h], Terms.of(1, 1 if unbatched else B, I, H), loss_seed=seed)


# ---------------------------------------------------------------- the CPU op, path by path
SUPPORTED_ISAS = [isa for isa in ISAS if isa_unsupported_reason(isa) is None]
# What an op example targets; the strategy draws sizes that reach it (rnn_cpu.cpp's rules):
#   rows: the fused kernels on one thread; rows-threads: the batch split over 2 threads
#   (a full row tile per thread and cpu_matrix.split_steps steps); columns: B < threads, the weight panels
#   split; stepwise: ATen GEMMs per step; project-first: weights over PROJECT_FIRST_BYTES,
#   x W_ih^T first; multi-panel: H over several panels, remainder columns and rows (B not a
#   multiple of the row tile).
TARGETS = ["rows", "rows-threads", "columns", "stepwise", "project-first", "multi-panel"]


@st.composite
def op_configs(draw, target=None):
    target = target or draw(st.sampled_from(TARGETS))
    isa = draw(st.sampled_from(SUPPORTED_ISAS))
    dtype = draw(DTYPES)
    P = PANEL_COLS[(isa, compute_dtype(dtype))]
    threads = draw(st.sampled_from([1, 2]))
    path = draw(st.sampled_from(["auto", "fused"]))
    T, B, I = draw(st.integers(1, 9)), draw(st.integers(1, 13)), draw(st.integers(1, 9))
    H = draw(st.integers(1, P + 1))
    if target == "rows-threads":
        B = draw(st.integers(2 * ROW_TILE[isa], 2 * ROW_TILE[isa] + 3))  # a full row tile per thread
        threads, path, H, I = 2, "fused", draw(st.integers(64, 72)), draw(st.integers(1, 6))
        T = split_steps(B, H) + draw(st.integers(0, 2))
    elif target == "columns":
        threads, path, B, H = 2, "columns", 1, draw(st.integers(P + 1, 3 * P))
    elif target == "stepwise":
        path = "stepwise"
    elif target == "project-first":
        elem = torch.finfo(compute_dtype(dtype)).bits // 8
        H = draw(st.integers(300, 340) if elem == 8 else st.integers(560, 600))
        I = -(-PROJECT_FIRST_BYTES // (H * elem)) - H + 1 + draw(st.integers(0, 16))
        T, B, path = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.sampled_from(["fused", "columns"]))
    elif target == "multi-panel":
        H = draw(st.integers(P + 1, 3 * P + 1))
        B = draw(st.integers(1, 3 * ROW_TILE[isa] + 1))
        path = draw(st.sampled_from(["fused", "columns"]))
    lengths = draw(st.sampled_from(["none", "zeros", "all-equal", "random"]))
    if lengths == "zeros":
        L = [0] * B if B == 1 else draw(st.lists(st.integers(0, T), min_size=B, max_size=B).map(lambda v: [0] + v[1:]))
    elif lengths == "all-equal":
        L = [draw(st.integers(0, T))] * B
    elif lengths == "random":  # any value is safe (rnn.h), out of range included
        L = draw(st.lists(st.integers(-2, T + 3), min_size=B, max_size=B))
    else:
        L = None
    return {"target": target, "isa": isa, "dtype": dtype, "threads": threads, "path": path,
            "T": T, "B": B, "I": I, "H": H, "lengths": L, "reverse": draw(st.booleans()),
            "act": draw(st.sampled_from(["tanh", "relu"])), "bias": draw(st.booleans()),
            "seed": draw(st.integers(0, 2**16))}


def _example(target, **over):
    """One hand-picked config per target, so the default draws reach every path."""
    cfg = {"target": target, "isa": default_isa(), "dtype": torch.float32, "threads": 2, "path": "fused",
           "T": 3, "B": 7, "I": 5, "H": 17, "lengths": None, "reverse": False, "act": "tanh", "bias": True,
           "seed": 0}
    cfg.update(over)
    return cfg


PATH_EXAMPLES = [
    _example("rows", threads=1, lengths=[3, 0, 1, 2, 3, 3, 5], reverse=True),
    _example("rows-threads", T=split_steps(12, 64), B=12, I=5, H=64, dtype=torch.bfloat16),
    _example("columns", path="columns", B=1, H=3 * PANEL_COLS[(default_isa(), torch.float32)] + 1, act="relu"),
    _example("stepwise", path="stepwise", dtype=torch.float16, lengths=[2] * 7),
    _example("project-first", T=2, B=3, I=300, H=600, lengths=[0, 2, 1], reverse=True),
    _example("multi-panel", path="columns", dtype=torch.float64, B=13, H=2 * PANEL_COLS[(default_isa(), torch.float64)] + 1),
]


def run_op_config(cfg, monkeypatch):
    """Sets the config's ISA, path and threads, runs the op against the truth, and returns
    last_cpu_plan() after the forward."""
    monkeypatch.setenv("FASTRNN_CPU_ISA", cfg["isa"])
    monkeypatch.setenv("FASTRNN_CPU_PATH", cfg["path"])
    g = torch.Generator().manual_seed(cfg["seed"])
    T, B, I, H, dtype = cfg["T"], cfg["B"], cfg["I"], cfg["H"], cfg["dtype"]

    def rnd(*shape, scale=1.0):  # nn.RNN's init scale: activations stay in tanh's range
        return ((torch.rand(*shape, generator=g, dtype=torch.float64) * 2 - 1) * scale).to(dtype)

    k = H ** -0.5
    args = [rnd(T, B, I), rnd(B, H), rnd(H, I, scale=k), rnd(H, H, scale=k),
            rnd(H, scale=k) if cfg["bias"] else None, rnd(H, scale=k) if cfg["bias"] else None]
    L = torch.tensor(cfg["lengths"], dtype=torch.int64) if cfg["lengths"] is not None else None
    plan = {}
    old = torch.get_num_threads()
    torch.set_num_threads(cfg["threads"])
    try:
        assert_op_tracks_truth(torch.ops.fastrnn.rnn_forward, args, L, cfg["reverse"], cfg["act"],
                               lambda: plan.update(last_cpu_plan()))
    finally:
        torch.set_num_threads(old)
    return plan


def _expect_target(cfg, plan):
    """The plan a target guarantees (auto paths only where the target forces nothing)."""
    if cfg["path"] != "auto":
        assert plan["path"] == PATHS[cfg["path"]], (cfg, plan)
    assert plan["isa"] == cfg["isa"], (cfg, plan)
    if cfg["target"] == "rows-threads":
        assert plan["threads"] == 2, (cfg, plan)
    if cfg["target"] == "project-first":
        assert plan["project_first"], (cfg, plan)
    if cfg["target"] == "columns":
        assert plan["threads"] == 2, (cfg, plan)


def _op_fuzz(test):
    for cfg in PATH_EXAMPLES:
        test = example(cfg=cfg)(test)
    return FUZZ(given(cfg=op_configs())(test))


@_op_fuzz
def test_op_paths_match_truth(cfg):
    """The CPU op on the path its config targets, against the float64 truth."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        plan = run_op_config(cfg, monkeypatch)
    _expect_target(cfg, plan)
    panels = -(-cfg["H"] // PANEL_COLS[(cfg["isa"], compute_dtype(cfg["dtype"]))])
    event(f"path={plan['path']}")
    event(f"isa={plan['isa']}")
    event(f"threads={plan['threads']}")
    event(f"project_first={plan['project_first']}")
    event("panels=1" if panels == 1 else "panels>=2")
    event(f"dtype={cfg['dtype']}")
    event(f"lengths={'none' if cfg['lengths'] is None else 'zeros' if 0 in cfg['lengths'] else 'given'}")


@pytest.mark.parametrize("cfg", PATH_EXAMPLES, ids=[c["target"] for c in PATH_EXAMPLES])
def test_path_examples_reach_their_paths(cfg, monkeypatch):
    """Guards the examples: each reaches what its target names (so the fuzz run, which
    includes them, reaches every path on any machine)."""
    plan = run_op_config(cfg, monkeypatch)
    _expect_target(cfg, plan)
    expected_path = {"rows": "rows", "rows-threads": "rows", "columns": "columns", "stepwise": "stepwise",
                     "project-first": "rows", "multi-panel": "columns"}[cfg["target"]]
    assert plan["path"] == expected_path, plan


def test_fuzz_strategy_reaches_every_mode():
    """Guards the strategies themselves: packed and unbatched configurations, every backend,
    and every op target (with each kind of lengths) are really drawn."""
    seen, backends, targets, lengths = set(), set(), set(), set()

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(cfg=rnn_configs(), op=op_configs())
    def collect(cfg, op):
        seen.add(cfg["mode"])
        backends.add(cfg["backend"])
        targets.add(op["target"])
        L = op["lengths"]
        lengths.add("none" if L is None else "zeros" if 0 in L else "all-equal" if len(set(L)) == 1 else "mixed")

    collect()
    assert seen == {"padded", "unbatched", "packed"}
    assert backends == set(BACKENDS)
    assert targets == set(TARGETS)
    assert lengths >= {"none", "zeros", "mixed"}
