"""The CPU kernels' code paths, ISAs and thread counts the tests run: the one list to extend.

A parametrization is (path, isa, threads): FASTRNN_CPU_PATH and FASTRNN_CPU_ISA (both read by
csrc/cpu at every call) and torch's thread count. Each parametrization names what it must
reach, and the tests prove it with fastrnn.backends.last_cpu_plan() (expected_plan below),
so a threshold in csrc/cpu/rnn_cpu.cpp cannot hide a path from the tests.

To add a path (e.g. a forced project-first switch, or packed active-row shrinking): add its
FASTRNN_CPU_PATH value to PATHS with the plan["path"] it must record, and, if it only applies
to some ISAs, to ISA_INDEPENDENT or not; the shapes that reach special cases are in SHAPES.
"""
from __future__ import annotations

import platform

import pytest
import torch

import fastrnn.backends

# avx512sim: the AVX-512 build's geometry (panels, tiles, edge masks) on AVX2 instructions
# (csrc/cpu/kernels_avx512sim.cpp), so that an AVX2 machine tests the AVX-512 tiling too.
ISAS = ("portable", "avx2", "avx512", "avx512sim")
# FASTRNN_CPU_PATH value -> the path last_cpu_plan() must record for it
PATHS = {"fused": "rows", "columns": "columns", "stepwise": "stepwise",
         # the fused rows path with the input projection forced inside each step / first
         "fused_inline": "rows", "project_first": "rows",
         # the column split on weights read in place (dot-form steps, projection first)
         "gemv": "gemv"}
# FASTRNN_CPU_PATH values that force project_first on (True) or off (False) whatever the shape
FORCED_PROJECT_FIRST = {"fused_inline": False, "project_first": True, "gemv": True}
# Paths that run no ISA-specific kernel (ATen GEMMs): run once, under the default ISA.
ISA_INDEPENDENT = {"stepwise"}
THREADS = (1, 2)

# Register tiles of csrc/cpu/kernels_*.cpp: a panel is Ops<T>::NVMAX * W columns, a row tile
# MBMAX rows. Shapes straddle them (H = panel + 1, B = row tile + 1) to reach the remainders.
PANEL_COLS = {  # (isa, dtype) -> columns per weight panel
    ("portable", torch.float32): 4, ("portable", torch.float64): 4,
    ("avx2", torch.float32): 16, ("avx2", torch.float64): 8,
    ("avx512", torch.float32): 64, ("avx512", torch.float64): 32,
    ("avx512sim", torch.float32): 64, ("avx512sim", torch.float64): 32,
}
ROW_TILE = {"portable": 4, "avx2": 6, "avx512": 6, "avx512sim": 6}
# Lanes of one vector (Ops<T>::W), and the widest tile in vectors (kernels_impl.h
# kTileVectorsMax): with few rows a tile spans up to that many vectors, across panels.
VECTOR_LANES = {
    ("portable", torch.float32): 1, ("portable", torch.float64): 1,
    ("avx2", torch.float32): 8, ("avx2", torch.float64): 4,
    ("avx512", torch.float32): 16, ("avx512", torch.float64): 8,
    ("avx512sim", torch.float32): 16, ("avx512sim", torch.float64): 8,
}
TILE_VECTORS_MAX = 6
# Weights larger than this take the project-first forward on any machine: rnn_cpu.cpp switches
# when the packed weights exceed half the L2 the OS reports (csrc/cpu/machine.h), and no
# current x86 core has more than 4 MiB of L2.
PROJECT_FIRST_BYTES = 2 * 2**20

# Multiply-adds that a batch split must save for rnn_cpu.cpp to split a recurrence over threads
# on any machine: it splits once T x (a step of B rows - a step of B/2 rows) exceeds one
# parallel region's cost, measured at run time (csrc/cpu/machine.cpp) and capped there at
# 50 us, times one core's multiply-add rate (<= 128 per ns on any current x86 core: two
# 512-bit FMA units at 4 GHz). With at least a full row tile per thread (B >= 2 x ROW_TILE)
# a step is throughput-bound and halving the rows saves T x (B/2) x K x H multiply-adds
# (K = H for the backward, the smaller one), so split_steps(B, H) steps reach the threaded
# path even on a loaded machine whose measurement hit the cap. (With fewer rows per thread
# the saving is measured, and may rightly be too small to split: latency-bound steps.)
SPLIT_WORK = int(50e3 * 128)


def split_steps(B: int, H: int) -> int:
    """Steps T at which B rows (>= 2 x ROW_TILE) of hidden size H split over 2 threads."""
    return SPLIT_WORK // ((B // 2) * H * H) + 1  # strictly more than SPLIT_WORK

# id -> (T, B, I, H, claims). Claims a shape makes, checked with last_cpu_plan():
#   "threads": on the fused (rows) path with 2 threads the batch is split in 2 (rnn_cpu.cpp
#              batch_chunks: the split saves more than a parallel region costs; split_steps
#              bounds that on any machine);
#   "project_first": the weights (I + H) * H * 4 bytes exceed PROJECT_FIRST_BYTES, so the
#              fused forward runs x W_ih^T + b as one GEMM first.
# Sizes are small (each runs under every parametrization) but reach: 1 and 2+ panels with a
# remainder on every ISA (H 17, 65, 129), an edge vector more than half full (H 45: 13 of 16
# float lanes, 5 of 8 double lanes; in avx512sim the masked lanes lie in the upper half),
# row-tile remainders (B 7, 13), one row (B 1).
SHAPES = {
    "T3-B1-I1-H1": (3, 1, 1, 1, ()),
    "T5-B3-I3-H3": (5, 3, 3, 3, ()),
    "T4-B7-I5-H17": (4, 7, 5, 17, ()),
    "T2-B13-I3-H65": (2, 13, 3, 65, ()),
    "T3-B1-I2-H129": (3, 1, 2, 129, ()),
    "T3-B5-I13-H45": (3, 5, 13, 45, ()),
    "T261-B12-I5-H64-threads": (split_steps(12, 64), 12, 5, 64, ("threads",)),
    "T3-B7-I300-H600-project-first": (3, 7, 300, 600, ("project_first",)),
}


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return set()


def isa_unsupported_reason(isa: str) -> str | None:
    """None if this CPU runs isa's kernels, else why not. Decided from the CPU itself (the
    /proc/cpuinfo flags csrc/cpu/kernels_dispatch.cpp checks with __builtin_cpu_supports, or
    torch's capability query where there is no /proc), never by calling the op under test."""
    if isa == "portable":
        return None
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"{isa} is an x86-64 ISA; this CPU is {platform.machine()}"
    need = {"avx2": {"avx2", "fma"}, "avx512sim": {"avx2", "fma"},
            "avx512": {"avx512f", "avx512bw", "avx512dq", "avx512vl", "fma"}}[isa]
    flags = _cpu_flags()
    if flags is None:  # no /proc: torch's own detection (DEFAULT, AVX2, AVX512)
        capability = torch.backends.cpu.get_cpu_capability()
        ok = capability == "AVX512" or (isa in ("avx2", "avx512sim") and capability == "AVX2")
        return None if ok else f"this CPU has no {isa} (torch reports {capability})"
    missing = sorted(need - flags)
    return f"this CPU has no {isa} (missing {', '.join(missing)} in /proc/cpuinfo)" if missing else None


def default_isa() -> str:
    """The ISA FASTRNN_CPU_ISA=auto picks: the widest this CPU supports (never the simulation)."""
    widest_first = ("avx512", "avx2", "portable")
    return next(isa for isa in widest_first if isa_unsupported_reason(isa) is None)


def _combos():
    for path in PATHS:
        for isa in (("auto",) if path in ISA_INDEPENDENT else ISAS):
            for threads in THREADS:
                yield path, isa, threads


COMBOS = list(_combos())


def combo_id(path, isa, threads):
    return f"{path}-{isa}-t{threads}"


class Combo:
    """One parametrization, applied: environment set, thread count set (restored after)."""

    def __init__(self, path, isa, threads):
        self.path, self.isa, self.threads = path, isa, threads

    @property
    def resolved_isa(self):
        return default_isa() if self.isa == "auto" else self.isa

    def expected_plan(self, op, T, B, I, H, dtype, claims=()):
        """The last_cpu_plan() fields this parametrization must produce for op on that shape
        (None for a field whose value depends on thresholds the shape makes no claim about)."""
        path = PATHS[self.path]
        project_first = FORCED_PROJECT_FIRST.get(self.path, "project_first" in claims)
        plan = {"op": op, "path": path, "isa": self.resolved_isa, "threads": None,
                "project_first": op == "forward" and project_first and path != "stepwise"}
        if path == "columns" or (path == "gemv" and torch.backends.openmp.is_available()):
            panels = -(-H // PANEL_COLS[(self.resolved_isa, dtype)])
            plan["threads"] = min(self.threads, panels)
        elif path == "gemv":  # without OpenMP one thread owns every column
            plan["threads"] = 1
        elif path == "stepwise":
            plan["threads"] = self.threads
        elif "threads" in claims or self.threads == 1:
            plan["threads"] = min(self.threads, B)
        return plan

    def assert_reached(self, op, T, B, I, H, dtype, claims=()):
        plan = fastrnn.backends.last_cpu_plan()
        want = self.expected_plan(op, T, B, I, H, dtype, claims)
        assert plan is not None, "no CPU plan recorded: the op did not run on the CPU kernels"
        for key, value in want.items():
            if value is not None:
                assert plan[key] == value, (
                    f"{combo_id(self.path, self.isa, self.threads)} on T{T} B{B} I{I} H{H} {dtype}: "
                    f"{op} ran {plan}, expected {key}={value!r}")
        assert 1 <= plan["threads"] <= self.threads, plan
        return plan


@pytest.fixture(params=COMBOS, ids=[combo_id(*c) for c in COMBOS])
def cpu_combo(request, monkeypatch):
    """Runs the test under one (path, isa, threads); skips, saying why, where this CPU or
    this build cannot run it."""
    path, isa, threads = request.param
    if isa != "auto":
        reason = isa_unsupported_reason(isa)
        if reason:
            pytest.skip(reason)
    if path == "columns" and not torch.backends.openmp.is_available():
        pytest.skip("the column split needs an OpenMP build (without it FASTRNN_CPU_PATH=columns runs fused)")
    monkeypatch.setenv("FASTRNN_CPU_ISA", isa)
    monkeypatch.setenv("FASTRNN_CPU_PATH", path)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield Combo(path, isa, threads)
    finally:
        torch.set_num_threads(old)
