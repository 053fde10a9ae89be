"""The CUDA kernels, executed: backend="cuda_sim" runs the very kernel source nvcc compiles
(csrc/cuda/*_body.cuh) in the SIMT simulation (csrc/sim/), with the GPU's host code and launch
plan for a simulated H100, the race checker on (FASTRNN_SIM_RACECHECK defaults to on).

Every case asserts which path and kernel instantiation ran (fastrnn.backends.last_cuda_plan),
forward and backward, so the grid below provably reaches every path (resident, single block
with one and several tiles, cooperative grid with one and several tiles per step, the
per-step GEMM fallback) and every KPT instantiation for float32 and float64. The numbers are
compared with fastrnn.reference (same dtype, helpers.TOLERANCES) and, through the modules,
with torch.nn.RNN. Shapes are small: the simulation runs every GPU thread as a fiber.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import fastrnn
from fastrnn import functional as F
from fastrnn.backends import last_cuda_plan

from helpers import assert_close, grads_of, random_loss, twin_rnn


@pytest.fixture(autouse=True)
def _h100_auto(monkeypatch):
    # The plans below are those of the default simulated device, unforced.
    monkeypatch.delenv("FASTRNN_SIM_DEVICE", raising=False)
    monkeypatch.delenv("FASTRNN_CUDA_PATH", raising=False)
    monkeypatch.delenv("FASTRNN_SIM_RACECHECK", raising=False)


def _inputs(dtype, T, B, I, H, lengths, seed):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    s = H ** -0.5
    tensors = [rand(T, B, I), rand(B, H, scale=0.5), rand(H, I, scale=s), rand(H, H, scale=s),
               rand(H, scale=s), rand(H, scale=s)]
    lens = None
    if lengths:
        # Full, empty (never updated), partial and beyond-T rows.
        lens = torch.randint(0, T + 2, (B,), generator=gen)
        lens[0] = T
    return [t.requires_grad_() for t in tensors], lens


def _layer(backend, tensors, lens, reverse, relu):
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    y, h_n = F.rnn_layer(x, h0, w_ih, w_hh, b_ih, b_hh, lengths=lens, reverse=reverse,
                         nonlinearity="relu" if relu else "tanh", backend=backend)
    return y, h_n


def _check_plan(plan, direction, expect, T, B, H):
    path, kpt, tiles = expect
    assert plan is not None
    where = f"{direction}: {plan}"
    assert plan["target"] == "cuda_sim" and plan["direction"] == direction, where
    assert (plan["steps"], plan["batch"], plan["hidden"]) == (T, B, H), where
    assert plan["path"] == path, where
    if path == "gemm":
        assert plan["launches"] == T and plan["kpt"] == 0, where
        return
    assert plan["kpt"] == kpt, where
    # tiles: 1 = the batch in one tile, 2 = several tiles per step
    assert (plan["tiles_per_step"] > 1) == (tiles > 1), where
    assert (plan["blocks"] > 1) == (path == "grid"), where
    assert plan["threads_per_block"] == 256, where


# The older family (one block; a cooperative grid over columns), forced: "auto" weighs the
# tiled family against it (TILED_GRID below).
# (dtype, T, B, I, H, FASTRNN_CUDA_PATH, forward (path, kpt, tiles), backward (path, kpt, tiles))
# The backward has no resident mode: a resident forward pairs with a single-block backward.
# The kpt a forced path takes is the cost model's (cost_model.h) choice among the older
# family's configurations: kpt 8 only wins in the grid at these sizes.
F32, F64 = torch.float32, torch.float64
PATH_GRID = [
    pytest.param(F32, 37, 1, 2, 1, "single", ("resident", 4, 1), ("single", 4, 1), id="f32-resident-kpt4-H1-T37"),
    pytest.param(F32, 2, 3, 5, 33, "single", ("resident", 16, 1), ("single", 16, 1), id="f32-resident-kpt16-H33"),
    pytest.param(F32, 3, 1, 4, 65, "single", ("resident", 64, 1), ("single", 64, 1), id="f32-resident-kpt64-H65"),
    pytest.param(F32, 2, 400, 3, 17, "single", ("single", 4, 2), ("single", 4, 2), id="f32-single-tiles-kpt4"),
    pytest.param(F32, 2, 200, 3, 33, "single", ("single", 16, 2), ("single", 16, 2), id="f32-single-tiles-kpt16"),
    pytest.param(F32, 2, 200, 3, 65, "single", ("single", 64, 2), ("single", 64, 2), id="f32-single-tiles-kpt64"),
    pytest.param(F32, 3, 1, 3, 33, "grid", ("grid", 8, 1), ("grid", 8, 1), id="f32-grid-kpt8-forced"),
    pytest.param(F32, 2, 200, 3, 33, "grid", ("grid", 8, 2), ("grid", 8, 2), id="f32-grid-tiles-kpt8"),
    pytest.param(F32, 2, 64, 3, 65, "grid", ("grid", 16, 1), ("grid", 16, 1), id="f32-grid-kpt16"),
    pytest.param(F32, 3, 3, 4, 129, "grid", ("grid", 32, 1), ("grid", 32, 1), id="f32-grid-kpt32-H129"),
    pytest.param(F32, 2, 64, 3, 300, "grid", ("grid", 64, 2), ("grid", 64, 2), id="f32-grid-tiles-kpt64"),
    pytest.param(F32, 3, 3, 4, 17, "gemm", ("gemm", 0, 0), ("gemm", 0, 0), id="f32-gemm-forced"),
    pytest.param(F32, 2, 1, 3, 129, "single", ("gemm", 0, 0), ("gemm", 0, 0), id="f32-single-impossible-falls-back"),
    pytest.param(F64, 37, 1, 2, 1, "single", ("resident", 4, 1), ("single", 4, 1), id="f64-resident-kpt4-H1"),
    pytest.param(F64, 2, 3, 5, 17, "single", ("resident", 4, 1), ("single", 4, 1), id="f64-resident-kpt4-H17"),
    pytest.param(F64, 2, 9, 3, 33, "single", ("resident", 16, 1), ("single", 16, 1), id="f64-resident-kpt16-H33"),
    pytest.param(F64, 2, 200, 3, 17, "single", ("single", 4, 2), ("single", 4, 2), id="f64-single-tiles-kpt4"),
    pytest.param(F64, 2, 200, 3, 33, "single", ("single", 16, 2), ("single", 16, 2), id="f64-single-tiles-kpt16"),
    pytest.param(F64, 3, 3, 4, 65, "grid", ("grid", 16, 1), ("grid", 16, 1), id="f64-grid-kpt16-H65"),
    pytest.param(F64, 3, 3, 4, 129, "grid", ("grid", 32, 1), ("grid", 32, 1), id="f64-grid-kpt32-H129"),
    pytest.param(F64, 2, 64, 3, 129, "grid", ("grid", 32, 2), ("grid", 32, 2), id="f64-grid-tiles-kpt32"),
    pytest.param(F64, 2, 200, 3, 33, "grid", ("grid", 8, 2), ("grid", 8, 2), id="f64-grid-tiles-kpt8-forced"),
    pytest.param(F64, 3, 3, 4, 17, "gemm", ("gemm", 0, 0), ("gemm", 0, 0), id="f64-gemm-forced"),
]
# Every path and instantiation, fwd and bwd, appears above; the variants below spread
# reverse, relu and lengths (packed) over all of them.
VARIANTS = [
    pytest.param(False, False, False, id="fwd-tanh"),
    pytest.param(True, True, True, id="rev-relu-len"),
]


def _assert_matches_reference(y, h_n, grads, tensors, lens, reverse, relu):
    """y, h_n and the gradients of the simulated layer against fastrnn.reference on the same
    inputs and the same random loss (assert_close: the dtype's parity tolerance)."""
    y_ref, h_ref = _layer("reference", tensors, lens, reverse, relu)
    grads_ref = grads_of(random_loss([y_ref, h_ref]), tensors)
    assert_close(y, y_ref, name="y")
    assert_close(h_n, h_ref, name="h_n")
    for name, g, g_ref in zip(["input", "hx", "weight_ih", "weight_hh", "bias_ih", "bias_hh"],
                              grads, grads_ref):
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("reverse,relu,lengths", VARIANTS)
@pytest.mark.parametrize("dtype,T,B,I,H,force,fwd,bwd", PATH_GRID)
def test_every_path_matches_the_reference(monkeypatch, dtype, T, B, I, H, force, fwd, bwd,
                                          reverse, relu, lengths):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", force)
    tensors, lens = _inputs(dtype, T, B, I, H, lengths, seed=H * 7 + B)
    y, h_n = _layer("cuda_sim", tensors, lens, reverse, relu)
    _check_plan(last_cuda_plan(), "fwd", fwd, T, B, H)
    loss = random_loss([y, h_n])
    grads = grads_of(loss, tensors)
    _check_plan(last_cuda_plan(), "bwd", bwd, T, B, H)

    _assert_matches_reference(y, h_n, grads, tensors, lens, reverse, relu)


# ---- the tiled family (csrc/cuda/tiled_body.cuh) ----------------------------------------------
# Plans chosen by the model ("auto" or forced "tiled") for the simulated H100; each case names
# the micro tile (the kernel instantiation: micro_r x micro_c) and whether the step ends in a
# grid.sync() (several column tiles) or the blocks only split the batch (one column tile:
# plain launch, __syncthreads only). Every instantiation runs forward and backward in float32
# and float64, with and without the grid barrier, over several row tiles; the variants spread
# reverse, relu and lengths (sorted: the live-row prefix; unsorted: per-row masking).
# (dtype, T, B, I, H, FASTRNN_CUDA_PATH, (micro_r, micro_c, grid_barrier), reverse, relu, lengths)
NONE, SORTED, UNSORTED = None, "sorted", "unsorted"
TILED_GRID = [
    pytest.param(F32, 37, 1, 2, 1, "tiled", (1, 1, False), False, False, NONE, id="f32-1x1-H1-T37"),
    pytest.param(F32, 3, 1, 3, 33, "tiled", (1, 4, False), True, True, SORTED, id="f32-1x4-B1"),
    pytest.param(F32, 3, 5, 4, 129, "tiled", (1, 1, True), True, False, UNSORTED, id="f32-1x1-sync-H129"),
    pytest.param(F32, 2, 65, 3, 129, "tiled", (1, 4, True), False, True, SORTED, id="f32-1x4-sync"),
    pytest.param(F32, 3, 200, 3, 17, "auto", (2, 1, False), False, False, SORTED, id="f32-2x1-H17"),
    pytest.param(F32, 2, 33, 3, 129, "auto", (2, 1, True), True, False, UNSORTED, id="f32-2x1-sync"),
    pytest.param(F32, 2, 300, 3, 33, "auto", (2, 4, False), True, True, UNSORTED, id="f32-2x4"),
    pytest.param(F32, 2, 130, 3, 129, "auto", (2, 4, True), False, False, NONE, id="f32-2x4-sync"),
    pytest.param(F32, 2, 300, 3, 17, "auto", (4, 1, False), True, False, SORTED, id="f32-4x1"),
    pytest.param(F32, 3, 100, 3, 129, "auto", (4, 1, True), True, True, SORTED, id="f32-4x1-sync"),
    pytest.param(F32, 2, 300, 3, 65, "auto", (4, 4, False), False, True, NONE, id="f32-4x4"),
    pytest.param(F32, 2, 300, 3, 129, "tiled", (4, 4, True), False, False, UNSORTED, id="f32-4x4-sync"),
    # H = 513 at its size (row stride 513, 17 column tiles of 32): no padding to 1024.
    pytest.param(F32, 2, 2, 3, 513, "tiled", (1, 1, True), False, True, SORTED, id="f32-1x1-sync-H513"),
    pytest.param(F64, 5, 1, 2, 3, "tiled", (1, 1, False), True, True, SORTED, id="f64-1x1-H3"),
    pytest.param(F64, 3, 1, 3, 33, "tiled", (1, 4, False), False, False, NONE, id="f64-1x4-B1"),
    pytest.param(F64, 3, 5, 4, 129, "tiled", (1, 1, True), False, True, SORTED, id="f64-1x1-sync"),
    pytest.param(F64, 2, 65, 3, 129, "tiled", (1, 4, True), True, False, UNSORTED, id="f64-1x4-sync"),
    pytest.param(F64, 2, 200, 3, 17, "tiled", (2, 1, False), True, True, UNSORTED, id="f64-2x1"),
    pytest.param(F64, 2, 33, 3, 129, "tiled", (2, 1, True), False, False, SORTED, id="f64-2x1-sync"),
    pytest.param(F64, 2, 300, 3, 33, "tiled", (2, 4, False), False, True, SORTED, id="f64-2x4"),
    pytest.param(F64, 2, 130, 3, 129, "tiled", (2, 4, True), True, True, SORTED, id="f64-2x4-sync"),
    pytest.param(F64, 2, 300, 3, 17, "tiled", (4, 1, False), False, False, UNSORTED, id="f64-4x1"),
    pytest.param(F64, 2, 100, 3, 129, "tiled", (4, 1, True), False, False, NONE, id="f64-4x1-sync"),
    pytest.param(F64, 2, 300, 3, 65, "tiled", (4, 4, False), True, False, SORTED, id="f64-4x4"),
    pytest.param(F64, 2, 300, 3, 129, "tiled", (4, 4, True), True, True, UNSORTED, id="f64-4x4-sync"),
]


def _check_tiled(plan, direction, expect, T, B, H):
    micro_r, micro_c, grid_barrier = expect
    where = f"{direction}: {plan}"
    assert plan["target"] == "cuda_sim" and plan["direction"] == direction, where
    assert (plan["steps"], plan["batch"], plan["hidden"]) == (T, B, H), where
    assert plan["path"] == "tiled" and plan["launches"] == 1, where
    assert (plan["micro_r"], plan["micro_c"], plan["grid_barrier"]) == expect, where
    rows, cols = plan["rows_per_tile"], plan["tile_cols"]
    assert rows % micro_r == 0 and cols % micro_c == 0 and rows * cols == 32 * micro_r * micro_c, where
    col_tiles = -(-H // cols)
    assert plan["blocks"] == -(-B // rows) * col_tiles, where
    assert grid_barrier == (col_tiles > 1), where
    assert plan["threads_per_block"] == 256, where


@pytest.mark.parametrize("dtype,T,B,I,H,force,expect,reverse,relu,lengths", TILED_GRID)
def test_tiled_matches_the_reference(monkeypatch, dtype, T, B, I, H, force, expect, reverse, relu,
                                     lengths):
    monkeypatch.setenv("FASTRNN_CUDA_PATH", force)
    tensors, lens = _inputs(dtype, T, B, I, H, lengths is not None, seed=H * 5 + B)
    if lengths == SORTED:  # PackedSequence order: non-increasing
        lens = lens.sort(descending=True).values
    elif lengths == UNSORTED:
        lens[-1] = T + 1  # after shorter rows: never sorted
    y, h_n = _layer("cuda_sim", tensors, lens, reverse, relu)
    _check_tiled(last_cuda_plan(), "fwd", expect, T, B, H)
    grads = grads_of(random_loss([y, h_n]), tensors)
    _check_tiled(last_cuda_plan(), "bwd", expect, T, B, H)

    _assert_matches_reference(y, h_n, grads, tensors, lens, reverse, relu)


def test_the_tiled_grid_covers_every_instantiation():
    # Every micro tile of launch_plan.h (kTiledMicroRows x kTiledMicroCols), both compute
    # types, with and without the grid barrier, and every lengths kind, forward and backward.
    cases = [p.values for p in TILED_GRID]
    for dtype in (F32, F64):
        got = {c[6] for c in cases if c[0] == dtype}
        assert got == {(r, c, g) for r in (1, 2, 4) for c in (1, 4) for g in (False, True)}, dtype
        assert {c[9] for c in cases if c[0] == dtype} == {NONE, SORTED, UNSORTED}
        assert {(c[7], c[8]) for c in cases if c[0] == dtype} == {(False, False), (False, True),
                                                                 (True, False), (True, True)}


def test_tiled_results_repeat_bitwise():
    # The K split reduces in a fixed warp order: two runs, same bits (forward and every grad).
    tensors, lens = _inputs(torch.float32, 3, 40, 3, 129, True, seed=6)
    runs = []
    for _ in range(2):
        y, h_n = _layer("cuda_sim", tensors, lens, False, False)
        assert last_cuda_plan()["path"] == "tiled"
        runs.append([y, *grads_of(random_loss([y, h_n]), tensors)])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def _module_parity(ref, ours, x, hx=None):
    out_ref = ref(x) if hx is None else ref(x, hx)
    out = ours(x) if hx is None else ours(x, hx)
    tensors_ref = [p for p in ref.parameters()]
    tensors = [p for p in ours.parameters()]
    y_ref, y = out_ref[0], out[0]
    if isinstance(y, nn.utils.rnn.PackedSequence):
        y_ref, y = y_ref.data, y.data
    assert_close(y, y_ref, name="output")
    assert_close(out[1], out_ref[1], name="h_n")
    g = grads_of(random_loss([y, out[1]]), tensors)
    g_ref = grads_of(random_loss([y_ref, out_ref[1]]), tensors_ref)
    for (name, _), a, b in zip(ours.named_parameters(), g, g_ref):
        assert_close(a, b, name=f"grad {name}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_packed_bidirectional_stack_matches_torch(dtype):
    # Two layers, both directions, packed: reverse + lengths against nn.RNN itself.
    ref, ours = twin_rnn(3, 17, num_layers=2, bidirectional=True, backend="cuda_sim", dtype=dtype)
    lengths = torch.tensor([37, 30, 12, 1, 37, 5, 20, 2, 9])
    x = torch.randn(37, 9, 3, dtype=dtype)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    _module_parity(ref, ours, packed)
    plan = last_cuda_plan()
    assert plan["direction"] == "bwd" and plan["batch"] == 9 and plan["hidden"] == 17


def test_relu_batch_first_grid_matches_torch(monkeypatch):
    # Forced: the cost model takes the tiled family at B = 3, H = 129 (its one scale, make_plan).
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "grid")
    ref, ours = twin_rnn(4, 129, nonlinearity="relu", batch_first=True, backend="cuda_sim")
    x = torch.randn(3, 2, 4)  # [B, T, I]
    _module_parity(ref, ours, x, torch.randn(1, 3, 129))
    assert last_cuda_plan()["path"] == "grid"


@pytest.mark.parametrize("H,B,T", [(1, 1, 1), (3, 9, 2), (17, 3, 1)])
def test_odd_sizes_match_torch(H, B, T):
    ref, ours = twin_rnn(5, H, backend="cuda_sim")
    _module_parity(ref, ours, torch.randn(T, B, 5))
    assert last_cuda_plan()["hidden"] == H


def test_rnncell_matches_torch():
    torch.manual_seed(0)
    ref = nn.RNNCell(4, 33)
    ours = fastrnn.RNNCell(4, 33, backend="cuda_sim")
    ours.load_state_dict(ref.state_dict())
    x, h = torch.randn(5, 4), torch.randn(5, 33)
    out, out_ref = ours(x, h), ref(x, h)
    assert_close(out, out_ref, name="h'")
    g = grads_of(random_loss([out]), list(ours.parameters()))
    g_ref = grads_of(random_loss([out_ref]), list(ref.parameters()))
    for a, b in zip(g, g_ref):
        assert_close(a, b, name="grad")
    assert last_cuda_plan()["steps"] == 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("H", [33, 129], ids=["resident", "grid"])
def test_half_types_match_the_reference(dtype, H):
    # Computed in float32 and rounded once (rnn.h), like the reference: a few ulps.
    tensors, lens = _inputs(dtype, 3, 3, 4, H, True, seed=5)
    y, h_n = _layer("cuda_sim", tensors, lens, False, False)
    assert y.dtype == dtype
    assert last_cuda_plan()["compute_dtype"] == torch.float32
    grads = grads_of(random_loss([y, h_n]), tensors)
    y_ref, h_ref = _layer("reference", tensors, lens, False, False)
    grads_ref = grads_of(random_loss([y_ref, h_ref]), tensors)
    assert_close(y, y_ref, name="y")
    for a, b in zip(grads, grads_ref):
        assert_close(a, b, name="grad")


def _full_size_forward_matches_reference() -> dict:
    """Two forward steps at T2 B64 I8 H1024 through the simulation match the reference;
    returns the launch's plan (last_cuda_plan) for the caller's checks."""
    T, B, I, H = 2, 64, 8, 1024
    tensors, _ = _inputs(torch.float32, T, B, I, H, False, seed=1)
    with torch.no_grad():
        y, _ = _layer("cuda_sim", tensors, None, False, False)
        y_ref, _ = _layer("reference", tensors, None, False, False)
    plan = last_cuda_plan()
    assert_close(y, y_ref, name="y")
    return plan


def test_full_size_h100_grid_runs(monkeypatch):
    # The plan of a real workload spans the simulated H100: 64 blocks x 256 threads, every
    # one a fiber, 8 batch tiles per step, a grid sync per step. Forward only, two steps.
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "grid")  # "auto" takes the tiled family here
    plan = _full_size_forward_matches_reference()
    assert plan["path"] == "grid" and plan["blocks"] == 64 and plan["kpt"] == 64
    assert plan["tiles_per_step"] == 8


def test_full_size_h100_tiled_runs():
    # The model's plan for B=64, H=1024 on the simulated H100 (opt-in shared memory): 128 of
    # the 132 SMs, each block a 16 x 32 tile with its 32 x 1024 slice of W_hh (128 KiB) and
    # 16 state rows in ~208 KiB of shared memory, a grid sync per step. Forward, two steps.
    plan = _full_size_forward_matches_reference()
    assert plan["path"] == "tiled" and plan["blocks"] == 128 and plan["grid_barrier"]
    assert (plan["rows_per_tile"], plan["tile_cols"]) == (16, 32)
    assert 48 * 1024 < plan["smem_bytes"] <= fastrnn.cuda_sim.device()["smem_per_block_optin"]


def test_simulated_a100_takes_its_own_plan(monkeypatch):
    # H = 2048 needs 256 co-resident blocks: an H100 (132 SMs x 2) has them, an A100
    # (108 x 2) does not, so the simulated A100 runs the GEMM fallback, as a real one would.
    monkeypatch.setenv("FASTRNN_SIM_DEVICE", "a100")
    assert fastrnn.cuda_sim.device()["sm_count"] == 108
    tensors, _ = _inputs(torch.float32, 1, 1, 2, 2048, False, seed=2)
    with torch.no_grad():
        y, _ = _layer("cuda_sim", tensors, None, False, False)
        y_ref, _ = _layer("reference", tensors, None, False, False)
    assert last_cuda_plan()["path"] == "gemm"
    assert_close(y, y_ref, name="y")


def test_results_are_deterministic():
    tensors, lens = _inputs(torch.float32, 3, 64, 3, 65, True, seed=3)
    runs = []
    for _ in range(2):
        y, h_n = _layer("cuda_sim", tensors, lens, False, False)
        runs.append([y, *grads_of(random_loss([y, h_n]), tensors)])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_bad_settings_are_clear_errors(monkeypatch):
    tensors, _ = _inputs(torch.float32, 1, 1, 2, 3, False, seed=0)
    monkeypatch.setenv("FASTRNN_SIM_DEVICE", "tpu")
    with pytest.raises(ValueError, match="FASTRNN_SIM_DEVICE must be one of h100, a100"):
        _layer("cuda_sim", tensors, None, False, False)
    monkeypatch.delenv("FASTRNN_SIM_DEVICE")
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "fastest")
    with pytest.raises(ValueError, match="FASTRNN_CUDA_PATH"):
        _layer("cuda_sim", tensors, None, False, False)
    with pytest.raises(RuntimeError, match="cuda_sim.*CPU tensors"):
        F.resolve_backend("cuda_sim", torch.device("meta"))


def test_the_grid_covers_every_path_and_instantiation():
    # A new kpt in launch_plan.h, or a case edited away, must show up here.
    covered = {(p.values[0], d, e[1]) for p in PATH_GRID
               for d, e in (("fwd", p.values[6]), ("bwd", p.values[7])) if e[0] != "gemm"}
    for dtype, elem_size in ((F32, 4), (F64, 8)):
        for direction in ("fwd", "bwd"):
            for kpt in torch.ops.fastrnn._cuda_kernel_kpts(elem_size):
                assert (dtype, direction, kpt) in covered, (dtype, direction, kpt)
    for dtype in (F32, F64):
        paths = {(e[0], min(e[2], 2)) for p in PATH_GRID if p.values[0] == dtype
                 for e in (p.values[6], p.values[7])}
        assert {("resident", 1), ("single", 1), ("single", 2), ("grid", 1), ("grid", 2),
                ("gemm", 0)} <= paths, (dtype, paths)


def test_ops_pass_opcheck_and_gradcheck():
    # The sim ops carry the same fake kernels and autograd glue as the native ones.
    tensors, lens = _inputs(torch.float64, 2, 2, 3, 3, True, seed=4)
    x, h0, w_ih, w_hh, b_ih, b_hh = tensors
    args = (x, h0, w_ih, w_hh, b_ih, b_hh, lens, False, "tanh")
    torch.library.opcheck(torch.ops.fastrnn_cuda_sim.rnn_forward, args)
    y = torch.ops.fastrnn_cuda_sim.rnn_forward(*args).detach()
    torch.library.opcheck(torch.ops.fastrnn_cuda_sim.rnn_backward,
                          (torch.randn_like(y), x.detach(), h0.detach(), w_ih.detach(),
                           w_hh.detach(), y, lens, False, "tanh", [True, True]))
    assert torch.autograd.gradcheck(
        lambda *t: fastrnn.cuda_sim.rnn_forward(*t, lens, True, "tanh"), tuple(tensors))
