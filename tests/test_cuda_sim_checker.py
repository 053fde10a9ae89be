"""The SIMT simulation's checkers fire when they should (planted bugs), and the simulation
compiles the one copy of each kernel body that nvcc compiles.

The planted bugs use the simulation's debug switches (fastrnn_cuda_sim::_set_debug): drop
one barrier of the real kernel source, named by file:line (found here by its comment, so a
moved line is followed), or allocate less dynamic shared memory than the plan asks for. The
same call without the bug passes, so the report is caused by the planted bug alone.
"""
from __future__ import annotations

import pathlib
import re
import signal
import subprocess
import sys

import pytest
import torch

from fastrnn import functional as F
from fastrnn.backends import last_cuda_plan

ROOT = pathlib.Path(__file__).resolve().parents[1]
CUDA = ROOT / "csrc" / "cuda"
set_debug = torch.ops.fastrnn_cuda_sim._set_debug


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in ("FASTRNN_SIM_DEVICE", "FASTRNN_CUDA_PATH", "FASTRNN_SIM_RACECHECK"):
        monkeypatch.delenv(var, raising=False)
    yield
    set_debug("", 0)


def barrier_at(body: str, comment: str) -> str:
    """'file:line' of the barrier in csrc/cuda/<body> whose line carries `comment`."""
    lines = (CUDA / body).read_text().splitlines()
    hits = [i + 1 for i, line in enumerate(lines)
            if comment in line and ("__syncthreads()" in line or "grid_sync()" in line)]
    assert len(hits) == 1, f"{body}: expected one barrier commented '{comment}', found {hits}"
    return f"{body}:{hits[0]}"


def run(B, H, T=2, backward=False, dtype=torch.float32, grad=False):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(T, B, 3, generator=gen, dtype=dtype, requires_grad=backward or grad)
    h0 = torch.randn(B, H, generator=gen, dtype=dtype)
    w_ih = torch.randn(H, 3, generator=gen, dtype=dtype) * 0.3
    w_hh = torch.randn(H, H, generator=gen, dtype=dtype) * H ** -0.5
    y, _ = F.rnn_layer(x, h0, w_ih, w_hh, backend="cuda_sim")
    if backward:
        y.sum().backward()
    return y


# (kernel body, barrier comment, B, H, FASTRNN_CUDA_PATH, backward, the path it must be on,
#  what the report must say)
PLANTED = [
    pytest.param("rnn_fwd_body.cuh", "the tile is staged", 200, 17, "single", False, "single",
                 r"race in fwd_persistent_kernel<float, 4> on shared memory of block 0",
                 id="fwd-staging"),
    pytest.param("rnn_fwd_body.cuh", "the tile is overwritten next", 200, 17, "single", False,
                 "single", r"race in fwd_persistent_kernel<float, 4> on shared memory",
                 id="fwd-tile-reuse"),
    pytest.param("rnn_fwd_body.cuh", "resident: the tiles swap roles", 3, 17, "single", False,
                 "resident", r"race in fwd_persistent_kernel<float, 4> on shared memory",
                 id="fwd-resident"),
    pytest.param("rnn_fwd_body.cuh", "if (many_blocks)", 3, 129, "grid", False, "grid",
                 r"race in fwd_persistent_kernel<float, 32> on global buffer 'y'.*"
                 r"block \d+ thread \d+.*block \d+ thread \d+.*no grid sync", id="fwd-grid-sync"),
    pytest.param("rnn_bwd_body.cuh", "the dz tile is staged", 3, 17, "single", True, "single",
                 r"race in bwd_persistent_kernel<float, 4> on shared memory", id="bwd-staging"),
    pytest.param("rnn_bwd_body.cuh", "if (many_blocks)", 3, 129, "grid", True, "grid",
                 r"race in bwd_persistent_kernel<float, 32> on global buffer 'carry'.*no grid sync",
                 id="bwd-grid-sync"),
    # The tiled family (one body, forward and backward): H=17 is one column tile (resident,
    # __syncthreads only), H=129 several (staged state, grid.sync()).
    pytest.param("tiled_body.cuh", "tiled: weights (and the resident h0)", 3, 17, "tiled", False,
                 "tiled", r"race in tiled_fwd_kernel<float, \d, \d> on shared memory of block \d",
                 id="tiled-fwd-weights"),
    pytest.param("tiled_body.cuh", "tiled: the partial sums are in shared memory", 3, 17, "tiled",
                 False, "tiled", r"race in tiled_fwd_kernel<float, \d, \d> on shared memory",
                 id="tiled-fwd-partials"),
    pytest.param("tiled_body.cuh", "tiled resident: the state buffers swap roles", 3, 17, "tiled",
                 False, "tiled", r"race in tiled_fwd_kernel<float, \d, \d> on shared memory",
                 id="tiled-fwd-resident"),
    pytest.param("tiled_body.cuh", "tiled: the state tile is staged", 3, 129, "tiled", False,
                 "tiled", r"race in tiled_fwd_kernel<float, \d, \d> on shared memory",
                 id="tiled-fwd-staging"),
    pytest.param("tiled_body.cuh", "tiled: every column tile of the step is written", 3, 129,
                 "tiled", False, "tiled",
                 r"race in tiled_fwd_kernel<float, \d, \d> on global buffer 'y'.*no grid sync",
                 id="tiled-fwd-grid-sync"),
]


@pytest.mark.parametrize("body,comment,B,H,force,backward,path,report", PLANTED)
def test_a_missing_barrier_is_reported(monkeypatch, body, comment, B, H, force, backward, path,
                                       report):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", force)
    run(B, H, backward=backward)  # the real kernel: no report
    assert last_cuda_plan()["path"] == path
    set_debug(barrier_at(body, comment), 0)
    with pytest.raises(RuntimeError, match=report) as info:
        run(B, H, backward=backward)
    assert "fastrnn cuda_sim:" in str(info.value) and "error(s)" in str(info.value)


# The tiled backward runs the forward's body: its forward runs on the GEMM path (no planted
# bug), then the backward alone on the tiled path with the barrier dropped.
TILED_BWD = [
    pytest.param("tiled: the partial sums are in shared memory", 17,
                 r"race in tiled_bwd_kernel<float, \d, \d> on shared memory", id="partials"),
    pytest.param("tiled resident: the state buffers swap roles", 17,
                 r"race in tiled_bwd_kernel<float, \d, \d> on shared memory", id="resident"),
    pytest.param("tiled: the state tile is staged", 129,
                 r"race in tiled_bwd_kernel<float, \d, \d> on shared memory", id="staging"),
    pytest.param("tiled: every column tile of the step is written", 129,
                 r"race in tiled_bwd_kernel<float, \d, \d> on global buffer 'dz'.*no grid sync",
                 id="grid-sync"),
]


@pytest.mark.parametrize("comment,H,report", TILED_BWD)
def test_a_missing_barrier_in_the_tiled_backward_is_reported(monkeypatch, comment, H, report):
    def backward(drop):
        monkeypatch.setenv("FASTRNN_CUDA_PATH", "gemm")
        y = run(3, H, T=3, grad=True)
        monkeypatch.setenv("FASTRNN_CUDA_PATH", "tiled")
        set_debug(barrier_at("tiled_body.cuh", comment) if drop else "", 0)
        try:
            y.sum().backward()
        finally:
            set_debug("", 0)

    backward(drop=False)  # the real kernel: no report
    plan = last_cuda_plan()
    assert plan["path"] == "tiled" and plan["direction"] == "bwd"
    assert plan["grid_barrier"] == (H > 128)
    with pytest.raises(RuntimeError, match=report):
        backward(drop=True)


# The tensor-core tiles (tiled_body.cuh with WT = bf16): the warps' wmma stores of partial
# sums and the resident state words written by the epilogue need their barriers like the FMA
# tiles; dropping one is reported as a race on the block's shared memory.
MMA_PLANTED = [
    pytest.param("tiled mma: the partial sums are in shared memory", id="mma-partials"),
    pytest.param("tiled resident: the state buffers swap roles", id="mma-resident"),
]


@pytest.mark.parametrize("comment", MMA_PLANTED)
def test_a_missing_barrier_in_the_tensor_core_tiles_is_reported(monkeypatch, comment):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "tiled_mma")
    run(16, 20, T=3, dtype=torch.bfloat16)  # the real kernel: no report
    plan = last_cuda_plan()
    assert plan["path"] == "tiled" and plan["mma"] == torch.bfloat16 and not plan["grid_barrier"]
    set_debug(barrier_at("tiled_body.cuh", comment), 0)
    with pytest.raises(RuntimeError,
                       match=r"race in tiled_mma_fwd_kernel\[bf16\]<float, 1, 2> on shared memory"):
        run(16, 20, T=3, dtype=torch.bfloat16)


def test_shared_memory_past_the_allocation_is_reported(monkeypatch):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "single")  # "auto" takes the tiled family here
    run(3, 17)
    assert last_cuda_plan()["path"] == "resident"
    set_debug("", 16)  # 16 bytes less than the plan's tiles
    with pytest.raises(RuntimeError, match=r"out-of-bounds 4-byte (load|store) by block 0 thread "
                                           r"\d+ .* of shared memory"):
        run(3, 17)


def test_race_checker_off_does_not_see_the_race(monkeypatch):
    # The report comes from the checker, not from wrong numbers: with it off, a missing
    # staging barrier goes unnoticed by the simulation (whose fixed schedule may even
    # compute the right values), which is why the checker is on by default.
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "single")
    set_debug(barrier_at("rnn_fwd_body.cuh", "the tile is staged"), 0)
    monkeypatch.setenv("FASTRNN_SIM_RACECHECK", "0")
    run(200, 17)
    monkeypatch.setenv("FASTRNN_SIM_RACECHECK", "1")
    with pytest.raises(RuntimeError, match="race"):
        run(200, 17)


def test_the_simulation_is_usable_after_an_error():
    set_debug("", 16)
    with pytest.raises(RuntimeError):
        run(3, 17)
    set_debug("", 0)
    run(3, 17)


# ----------------------------------------------------------------------------- one copy

KERNEL_DEF = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)\s*\(")


# The checker's own self-test kernels exist only in the simulation, on purpose.
SIM_ONLY = {"csrc/sim/checker_selftest.cpp"}


def _sources():
    return {p.relative_to(ROOT).as_posix(): p.read_text()
            for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cu", ".cuh", ".h", ".cpp")
            and p.relative_to(ROOT).as_posix() not in SIM_ONLY}


def test_every_kernel_body_exists_once_and_both_targets_compile_it():
    sources = _sources()
    defined = {}
    for path, text in sources.items():
        for name in KERNEL_DEF.findall(text):
            defined.setdefault(name, []).append(path)
    assert defined, "no __global__ kernel found under csrc/"
    for name, paths in defined.items():
        assert len(paths) == 1, f"kernel {name} is defined in {paths}: one copy only"
        assert paths[0].endswith("_body.cuh"), f"kernel {name} lives in {paths[0]}, not a *_body.cuh"
    bodies = sorted({paths[0].rsplit("/", 1)[1] for paths in defined.values()})
    sim = sources["csrc/sim/sim_kernels.cpp"]
    cu_files = {p: t for p, t in sources.items() if p.endswith(".cu")}
    for body in bodies:
        assert f'#include "../cuda/{body}"' in sim, f"the simulation does not compile {body}"
        users = [p for p, t in cu_files.items() if f'#include "{body}"' in t]
        assert len(users) == 1, f"{body} is compiled by nvcc through {users}, expected one .cu"
    # Both targets launch every kernel.
    for name in defined:
        assert name in sim, f"the simulation never launches {name}"
        assert any(name in t for t in cu_files.values()), f"no .cu file launches {name}"
    assert "__global__" not in "".join(cu_files.values()), "a .cu file defines its own kernel"


OTHER_RULES = [
    ("divergent_barrier", r"divergent __syncthreads in block 0: .* waits at checker_selftest.cpp:\d+, "
                          r".* at checker_selftest.cpp:\d+"),
    ("exit_before_barrier", r"deadlock \(the launch would hang on a GPU\) in block 0: 63 threads wait "
                            r"at __syncthreads .* 1 threads have exited"),
    ("ldg_of_written", r"__ldg by block 0 thread \d+ .* of global buffer 'buf', which the kernel may write"),
    ("store_to_read_only", r"store by block 0 thread \d+ .* into read-only global buffer 'buf'"),
    ("grid_sync_not_cooperative", r"grid sync by block 0 thread \d+ .* not cooperative"),
    ("partial_warp_shuffle", r"__shfl_xor_sync with mask 0xffffffff in a warp of 16 threads"),
    # The warp matrix API (csrc/sim/simt_wmma.h): lane 5 skips the mma, so it meets the others
    # at the next collective; an ldm that is not a multiple of 8 16-bit elements.
    ("wmma_lane_skips_mma", r"lanes of warp 0 of block 0 are at different warp collectives: "
                            r"lane \d+ at wmma::\w+, lane \d+ at wmma::\w+"),
    ("wmma_bad_ldm", r"wmma::load_matrix_sync: ldm 12 must be a multiple of 8"),
    # The tile at offset 0 of a buffer that is not 32-byte aligned: wmma checks the address.
    ("wmma_unaligned_buffer", r"wmma::load_matrix_sync: ldm 16 must be a multiple of 8 and the "
                              r"tile 32-byte aligned \(byte offset 0, address % 32 = 16\)"),
    # Lane 3 loads B from another tile / with another ldm: both must be warp-uniform.
    ("wmma_lane_pointer", r"wmma::load_matrix_sync: pointer and ldm must be warp-uniform: "
                          r"lane 0 has address \d+ ldm 16, lane 3 address \d+ ldm 16"),
    ("wmma_lane_ldm", r"wmma::load_matrix_sync: pointer and ldm must be warp-uniform: "
                      r"lane 0 has address (\d+) ldm 16, lane 3 address \1 ldm 24"),
    # an overflow that ends in the stack's last bytes, above its guard page: the canary
    ("stack_canary_clobbered", r"block 0 thread 5 \(warp 0 lane 5\) overflowed its 65536-byte "
                               r"fiber stack"),
]


def test_the_wmma_self_test_kernel_is_clean():
    # The same kernel as the wmma rule breaks below, used correctly: no report.
    assert torch.ops.fastrnn_cuda_sim._checker_selftest("wmma_tile") == ""


@pytest.mark.parametrize("kernel,report", OTHER_RULES)
def test_other_rule_breaks_are_reported(kernel, report):
    # Tiny simulation-only kernels, one rule each (csrc/sim/checker_selftest.cpp).
    message = torch.ops.fastrnn_cuda_sim._checker_selftest(kernel)
    assert re.search(report, message), message
    assert message.startswith("fastrnn cuda_sim: ") and kernel in message


def test_a_fiber_stack_overflow_faults_at_its_guard_page():
    """A fiber that recurses past its 64 KiB stack hits the PROT_NONE page below it and the
    process dies with SIGSEGV at once, naming the fiber -- instead of running on through the
    stacks of its neighbours (threads 62 and 61 of the self-test kernel, already exited: with
    no guard page nothing, canary included, notices). In a subprocess: it is meant to die."""
    code = ("import torch, fastrnn.cuda_sim\n"
            "print(torch.ops.fastrnn_cuda_sim._checker_selftest('stack_overflow'))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGSEGV, (proc.returncode, proc.stdout, proc.stderr)
    assert ("stack_overflow: block 0 thread 63 overflowed its 65536-byte fiber stack "
            "(guard page hit)") in proc.stderr, proc.stderr
    assert proc.stdout == ""  # it never returned
