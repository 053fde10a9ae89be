"""CUDA kernels vs torch.nn.RNN (cuDNN) on CUDA tensors: forward, BPTT, every path.

Needs a GPU and fastrnn built with CUDA; skipped otherwise (this project's CI has no GPU,
so these tests were written but never executed there; `python -m fastrnn gpu-check` runs
them on a GPU box). FASTRNN_CUDA_PATH forces each path (single block, cooperative grid,
cuBLAS fallback) at small sizes; "auto" checks what the host picks by itself, including
a size beyond on-chip capacity. Every parity test also asserts which path ran, through
fastrnn.backends.last_cuda_plan(): the path csrc/cuda/launch_plan.h gives for the
device's limits. That each case's name is the path it reaches is checked without a GPU
too (test_case_names_match_the_launch_plan, on H100 and A100 limits).
"""
import copy
import math
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from helpers import TOLERANCES, assert_close, grads_of, random_loss, twin_rnn

needs_gpu_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and fastrnn._ops.has_kernel("cuda")),
    reason="needs a CUDA device and fastrnn built with CUDA kernels (no nvcc or FASTRNN_BUILD_CUDA=0)",
)
needs_two_gpus = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs a second CUDA device")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# The limits launch_plan.h reads (its Device struct), for checking the case names on a
# machine without a GPU: 48 KiB of shared memory per block without opt-in (227 / 163 KiB
# with it: the tiled kernels opt in), 64K registers per SM; the SM count decides whether a
# cooperative grid fits; the cost model that ranks the plans reads the device's name (its
# estimates), clock, compute capability and L2 (the modelled device's, csrc/sim/sim_device.h).
REFERENCE_DEVICES = {
    "H100": dict(sm_count=132, smem_per_block=48 * 1024, regs_per_sm=65536, smem_optin=227 * 1024,
                 device="h100"),
    "A100": dict(sm_count=108, smem_per_block=48 * 1024, regs_per_sm=65536, smem_optin=163 * 1024,
                 device="a100"),
}


def _device_limits(device=None):
    props = torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device())
    return dict(sm_count=props.multi_processor_count, smem_per_block=props.shared_memory_per_block,
                regs_per_sm=props.regs_per_multiprocessor,
                smem_optin=props.shared_memory_per_block_optin, device=props.name,
                clock_khz=props.clock_rate, cc_major=props.major, cc_minor=props.minor,
                l2_bytes=props.L2_cache_size)


def planned(B, H, dtype, force="auto", backward=False, limits=None, device=None, T=1):
    """(path, tiles per step) that launch_plan.h picks for B batch rows of hidden size H:
    "resident" (one block, the state kept on chip across steps; forward only), "single",
    "grid", "tiled" (batch x hidden tiles, each block keeps its tile: 1) or "gemm" (cuBLAS
    per step; 0 tiles). limits: a REFERENCE_DEVICES entry,
    default the limits of `device` (default: the current CUDA device). A forced path that cannot run gives "gemm", as on
    the GPU (rnn_cuda.cpp). T: the steps the plan is ranked for (it moves no decision at the
    small sizes of this file: the state fits in L2 either way)."""
    limits = limits or _device_limits(device)
    elem_size = 8 if dtype == torch.float64 else 4  # float16/bfloat16 compute in float32
    mma = {torch.float16: 1, torch.bfloat16: 2}.get(dtype, 0)  # their tensor-core tiles
    model = {k: limits[k] for k in ("clock_khz", "cc_major", "cc_minor", "l2_bytes") if k in limits}
    plan = torch.ops.fastrnn._cuda_launch_plan(
        B, H, elem_size, limits["sm_count"], limits["smem_per_block"], None, force,
        limits["regs_per_sm"], True, backward, limits["smem_optin"], T=T,
        device=limits["device"], mma=mma, **model)
    path, rows_per_tile, resident = plan[0], plan[5], plan[8]
    if path == 2:
        return "gemm", 0
    if path == 3:
        return "tiled", 1
    name = "resident" if resident else ("single" if path == 0 else "grid")
    return name, math.ceil(B / rows_per_tile)


def assert_ran(B, H, dtype, force, backward, stage, device=None):
    """The last CUDA launch on this thread took the path (and tile count) that the launch
    plan gives for this device. The registers and static shared memory of the built
    kernels are not visible from Python, hence the modelled limits; at the sizes used
    here they change no decision."""
    name, tiles = planned(B, H, dtype, force, backward, device=device)
    ran = fastrnn.backends.last_cuda_plan()
    assert ran is not None, f"{stage}: no CUDA launch was recorded"
    assert ran["path"] == name, f"{stage}: the launch plan says {name}, ran {ran}"
    if name != "gemm":
        assert ran["tiles_per_step"] == tiles, f"{stage}: {tiles} tile(s) per step planned, ran {ran}"


# (force, T, B, I, H, forward path, backward path) with the paths launch_plan.h gives on an
# H100 or A100 (test_case_names_match_the_launch_plan): each forced path at sizes where it
# runs; "grid" needs a hidden size larger than one block's columns; "auto" at 2304 exceeds
# on-chip capacity. The forward keeps a whole batch that fits twice in shared memory
# resident in one block; the backward has no resident mode.
PATH_CASES = [
    pytest.param("single", 5, 3, 7, 17, "resident", "single", id="single-H17"),
    pytest.param("single", 9, 1, 16, 64, "resident", "single", id="single-B1-H64"),
    # 257 rows do not fit in shared memory at once (192 of 64 floats do): two tiles a step.
    pytest.param("single", 3, 257, 5, 64, "single", "single", id="single-tiled-B257-H64"),
    pytest.param("grid", 5, 3, 7, 129, "grid", "grid", id="grid-H129"),
    pytest.param("grid", 4, 17, 33, 256, "grid", "grid", id="grid-B17-H256"),
    # 48 rows of 256 floats per tile: 100 rows take three tiles between grid barriers.
    pytest.param("grid", 3, 100, 8, 256, "grid", "grid", id="grid-tiled-B100-H256"),
    pytest.param("gemm", 5, 3, 7, 17, "gemm", "gemm", id="gemm-H17"),
    pytest.param("gemm", 4, 17, 33, 129, "gemm", "gemm", id="gemm-H129"),
    # The tiled family: one column tile (no grid barrier) and several (grid.sync()).
    pytest.param("tiled", 5, 3, 7, 17, "tiled", "tiled", id="tiled-H17"),
    pytest.param("tiled", 4, 70, 5, 129, "tiled", "tiled", id="tiled-B70-H129"),
    pytest.param("tiled", 3, 64, 8, 512, "tiled", "tiled", id="tiled-B64-H512"),
    # "auto": the cost model's fastest plan (launch_plan.h make_plan, cost_model.h): the tiled
    # family at small H and at B <= 8 with H = 129 (one column tile: no grid barrier; several:
    # 128 blocks), the older grid at B = 256 with a wide H.
    pytest.param("auto", 1, 1, 1, 1, "tiled", "tiled", id="auto-T1-B1-H1"),
    pytest.param("auto", 7, 5, 3, 1, "tiled", "tiled", id="auto-H1-B5"),
    pytest.param("auto", 1, 4, 6, 129, "tiled", "tiled", id="auto-T1-H129"),
    pytest.param("auto", 2, 256, 5, 1024, "grid", "grid", id="auto-B256-H1024"),
    pytest.param("auto", 6, 64, 5, 512, "tiled", "tiled", id="auto-B64-H512"),
    pytest.param("auto", 3, 2, 5, 4608, "gemm", "gemm", id="auto-beyond-chip-H4608"),
]

# float64 has fewer weights per lane (launch_plan.h kKptDouble): one block holds H <= 64,
# so H = 129 forced to "single", and H = 17 forced to "grid" (one block covers it), fall
# back to cuBLAS. Both were once named as if they ran the persistent paths.
FLOAT64_CASES = [
    pytest.param("single", 5, 17, "resident", "single", id="single-H17"),
    pytest.param("single", 5, 64, "resident", "single", id="single-H64"),
    pytest.param("grid", 5, 129, "grid", "grid", id="grid-H129"),
    pytest.param("grid", 70, 129, "grid", "grid", id="grid-tiled-B70-H129"),
    pytest.param("gemm", 5, 17, "gemm", "gemm", id="gemm-H17"),
    pytest.param("gemm", 5, 129, "gemm", "gemm", id="gemm-H129"),
    pytest.param("single", 5, 129, "gemm", "gemm", id="single-H129-falls-back"),
    pytest.param("grid", 5, 17, "gemm", "gemm", id="grid-H17-falls-back"),
    pytest.param("tiled", 5, 17, "tiled", "tiled", id="tiled-H17"),
    pytest.param("tiled", 70, 129, "tiled", "tiled", id="tiled-B70-H129"),
]


@pytest.mark.parametrize("limits", REFERENCE_DEVICES.values(), ids=REFERENCE_DEVICES.keys())
def test_case_names_match_the_launch_plan(limits):
    """Runs without a GPU: the path each case claims is what launch_plan.h chooses (the
    same function the CUDA host code calls), and the tiled cases really take several tiles."""
    for dtype, cases in ((torch.float32, PATH_CASES), (torch.float64, FLOAT64_CASES)):
        for case in cases:
            if dtype == torch.float64:
                force, B, H, fwd, bwd = case.values
            else:
                force, _, B, _, H, fwd, bwd = case.values
            got = (planned(B, H, dtype, force, False, limits)[0], planned(B, H, dtype, force, True, limits)[0])
            assert got == (fwd, bwd), f"{case.id} ({dtype}): the launch plan gives {got}"
            if "-tiled-" in case.id:  # several batch tiles per step (older family)
                assert planned(B, H, dtype, force, False, limits)[1] > 1, f"{case.id}: one tile"
                assert planned(B, H, dtype, force, True, limits)[1] > 1, f"{case.id}: one tile"


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


def _warn_if_not_reached(B, H, dtype, force, fwd_path, bwd_path):
    """A case's intended paths hold on H100/A100 limits (test above); a smaller GPU may plan
    otherwise. The test still checks parity and the path the plan gives, and says so."""
    got = (planned(B, H, dtype, force, False)[0], planned(B, H, dtype, force, True)[0])
    if got != (fwd_path, bwd_path):
        warnings.warn(f"on this GPU B={B} H={H} {dtype} force={force} plans {got}, "
                      f"not the intended {(fwd_path, bwd_path)}")


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


def _check_twins(ref, ours, x, h0, dtype, name, force="auto"):
    """Forward outputs, h_n and every gradient of ours vs the nn.RNN oracle; the path the
    forward and the backward took (one layer, one direction: one launch each)."""
    B, H = h0.shape[-2], h0.shape[-1]
    ref = _oracle(ref, dtype)
    x_ref = x.to(ref.weight_hh_l0.dtype).requires_grad_()
    x_ours = x.clone().requires_grad_()
    h_ref = h0.to(ref.weight_hh_l0.dtype).requires_grad_()
    h_ours = h0.clone().requires_grad_()
    y_r, hn_r = ref(x_ref, h_ref)
    y_o, hn_o = ours(x_ours, h_ours)
    assert_ran(B, H, dtype, force, False, f"{name} forward", x.device)
    assert_close(y_o, y_r.to(dtype), dtype, f"{name} output")
    assert_close(hn_o, hn_r.to(dtype), dtype, f"{name} h_n")
    # The oracle's loss sees its outputs rounded to dtype, so both get the same dy.
    loss_r = random_loss([y_r.to(dtype), hn_r.to(dtype)])
    loss_o = random_loss([y_o, hn_o])
    g_r = grads_of(loss_r, [x_ref, h_ref, *ref.parameters()])
    g_o = grads_of(loss_o, [x_ours, h_ours, *ours.parameters()])
    assert_ran(B, H, dtype, force, True, f"{name} backward", x.device)
    names = ["input", "hx"] + [n for n, _ in ref.named_parameters()]
    for n, a, e in zip(names, g_o, g_r):
        _assert_grad_close(a, e, dtype, f"{name} grad {n}")


@needs_gpu_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("forced,T,B,I,H,fwd_path,bwd_path", PATH_CASES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_paths_match_cudnn(path, forced, T, B, I, H, fwd_path, bwd_path, dtype, nonlinearity):
    path(forced)
    _warn_if_not_reached(B, H, dtype, forced, fwd_path, bwd_path)
    ref, ours = twin_rnn(I, H, nonlinearity=nonlinearity, backend="native", device="cuda",
                         dtype=dtype)
    torch.manual_seed(2)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    h0 = torch.randn(1, B, H, device="cuda", dtype=dtype)
    _check_twins(ref, ours, x, h0, dtype, f"{forced}", forced)


@needs_gpu_kernels
@pytest.mark.parametrize("forced,B,H,fwd_path,bwd_path", FLOAT64_CASES)
def test_float64_matches_reference(path, forced, B, H, fwd_path, bwd_path):
    # cuDNN has no float64 RNN math of note; the plain-PyTorch spec is the oracle here.
    path(forced)
    _warn_if_not_reached(B, H, torch.float64, forced, fwd_path, bwd_path)
    torch.manual_seed(3)
    T, I = 7, 6
    args = [torch.randn(T, B, I), torch.randn(B, H), torch.randn(H, I) / H**0.5,
            torch.randn(H, H) / H**0.5, torch.randn(H), torch.randn(H)]
    args = [a.to("cuda", torch.float64).requires_grad_() for a in args]
    # 0, T, and past T (the contract: any value is safe), cycled over the batch.
    lengths = torch.tensor([7, 0, 3, 9, 1] * (B // 5) + [4] * (B % 5), device="cuda")
    for reverse in (False, True):
        y = fastrnn._ops.rnn_forward(*args, lengths, reverse, "tanh")
        assert_ran(B, H, torch.float64, forced, False, f"{forced} reverse={reverse} forward")
        y_ref = fastrnn.reference.rnn_forward(*args, lengths, reverse, "tanh")
        assert_close(y, y_ref, name=f"{forced} reverse={reverse} output")
        g = torch.autograd.grad(random_loss([y]), args)
        assert_ran(B, H, torch.float64, forced, True, f"{forced} reverse={reverse} backward")
        g_ref = torch.autograd.grad(random_loss([y_ref]), args)
        for i, (a, e) in enumerate(zip(g, g_ref)):
            assert_close(a, e, name=f"{forced} reverse={reverse} grad {i}")


@needs_gpu_kernels
@pytest.mark.parametrize("forced,H", [("single", 64), ("grid", 256), ("gemm", 64)])
def test_long_sequence(path, forced, H):
    """T = 1500: every step's barrier (block or grid) and the state hand-over between steps
    repeat a thousand times; an error that compounds per step shows here. The truth is
    nn.RNN in float64 on the same weights. A weight gradient sums T*B = 4500 float32
    products, so its rounding error is that of the summation order, not of the kernel:
    ours may be off the truth by at most 4x cuDNN's error (another order, equally sound)
    plus the float32 tolerance times the largest entry."""
    path(forced)
    T, B, I = 1500, 3, 8
    ref, ours = twin_rnn(I, H, backend="native", device="cuda")
    truth = copy.deepcopy(ref).double()
    torch.manual_seed(7)
    x = torch.randn(T, B, I, device="cuda")
    h0 = torch.randn(1, B, H, device="cuda")
    results = {}
    for name, model, dtype in (("ours", ours, torch.float32), ("cudnn", ref, torch.float32),
                               ("truth", truth, torch.float64)):
        xi, hi = x.to(dtype).requires_grad_(), h0.to(dtype).requires_grad_()
        y, hn = model(xi, hi)
        if name == "ours":
            assert_ran(B, H, torch.float32, forced, False, f"{forced} T={T} forward")
        grads = grads_of(random_loss([y.double(), hn.double()]), [xi, hi, *model.parameters()])
        if name == "ours":
            assert_ran(B, H, torch.float32, forced, True, f"{forced} T={T} backward")
        results[name] = [y, hn, *grads]
    rtol, _ = TOLERANCES[torch.float32]
    names = ["output", "h_n", "grad input", "grad hx"] + [f"grad {n}" for n, _ in ref.named_parameters()]
    for i, name in enumerate(names):
        exact = results["truth"][i]
        err = {k: (results[k][i].double() - exact).abs().max().item() for k in ("ours", "cudnn")}
        scale = exact.abs().max().item()
        assert err["ours"] <= 4 * err["cudnn"] + rtol * scale, (
            f"{forced} T={T} {name}: error {err['ours']:.3g} vs cuDNN's {err['cudnn']:.3g}, largest {scale:.3g}")


@needs_gpu_kernels
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
    assert_ran(5, H, dtype, forced, False, "packed forward (last layer, last direction)")
    pad_r, _ = pad_packed_sequence(out_r)
    pad_o, _ = pad_packed_sequence(out_o)
    assert_close(pad_o, pad_r.to(dtype), dtype, "packed output")
    assert_close(hn_o, hn_r.to(dtype), dtype, "packed h_n")
    g_r = grads_of(random_loss([pad_r.to(dtype), hn_r.to(dtype)]), [x_ref, *ref.parameters()])
    g_o = grads_of(random_loss([pad_o, hn_o]), [x_ours, *ours.parameters()])
    assert_ran(5, H, dtype, forced, True, "packed backward (first layer's last direction)")
    for n, a, e in zip(["input"] + [n for n, _ in ref.named_parameters()], g_o, g_r):
        _assert_grad_close(a, e, dtype, f"packed grad {n}")


@needs_gpu_kernels
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
    assert_ran(3, H, torch.float32, forced, False, f"{forced} no-bias forward")
    y_ref = fastrnn.reference.rnn_forward(x, h0, *w, None, None, lengths, False, "tanh")
    assert_close(y, y_ref, name=f"{forced} no-bias lengths")


@needs_gpu_kernels
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
        assert_ran(16, H, torch.float32, forced, True, f"{forced} backward")
    for a, b in zip(*runs):
        assert torch.equal(a, b), "two identical backward passes differ"


@needs_gpu_kernels
def test_forced_path_that_cannot_run_falls_back(path):
    # "single" cannot hold H=1024 in one block: the host must fall back, not fail.
    path("single")
    ref, ours = twin_rnn(8, 1024, backend="native", device="cuda")
    x = torch.randn(3, 2, 8, device="cuda")
    out = ours(x)[0]
    assert fastrnn.backends.last_cuda_plan()["path"] == "gemm"
    assert_close(out, ref(x)[0], torch.float32, "fallback output")


# The tiled family on tensor cores (bfloat16 only: float16 runs the FMA tiles, forced
# tiled_mma falls back to gemm): one column tile (resident), a grid barrier with odd H, and a
# shape of issue 12.
MMA_CASES = [
    pytest.param(4, 16, 5, 20, id="mma-B16-H20"),
    pytest.param(3, 33, 5, 129, id="mma-B33-H129"),
    pytest.param(3, 64, 8, 512, id="mma-B64-H512"),
]


@needs_gpu_kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("T,B,I,H", MMA_CASES)
def test_tensor_core_tiles_match_cudnn(path, T, B, I, H, dtype):
    path("tiled_mma")
    ref, ours = twin_rnn(I, H, backend="native", device="cuda", dtype=dtype)
    torch.manual_seed(3)
    x = torch.randn(T, B, I, device="cuda", dtype=dtype)
    h0 = torch.randn(1, B, H, device="cuda", dtype=dtype)
    _check_twins(ref, ours, x, h0, dtype, "tiled_mma", "tiled_mma")
    ran = fastrnn.backends.last_cuda_plan()
    if dtype == torch.bfloat16:
        assert ran["mma"] == dtype and ran["path"] == "tiled", ran
    else:  # plan_types.h mma_keeps_contract
        assert ran["mma"] is None and ran["path"] == "gemm", ran


@needs_gpu_kernels
def test_bad_forced_path_is_an_error(path):
    path("fastest")
    _, ours = twin_rnn(4, 8, backend="native", device="cuda")
    with pytest.raises(ValueError, match="FASTRNN_CUDA_PATH"):
        ours(torch.randn(2, 1, 4, device="cuda"))


@needs_gpu_kernels
@pytest.mark.parametrize("forced,H", [("single", 64), ("grid", 256), ("gemm", 64)])
def test_waits_for_work_queued_on_the_current_stream(path, forced, H):
    """The kernels (and cuBLAS on the fallback path) must run on the caller's current
    stream. A side stream first sleeps, then writes the input: a launch on any other
    stream (the legacy default stream does not wait for torch's non-blocking streams)
    reads the zeros that were there before, and its output differs."""
    path(forced)
    ref, ours = twin_rnn(8, H, backend="native", device="cuda")
    x = torch.randn(5, 3, 8, device="cuda", requires_grad=True)
    y_ref, hn_ref = ref(x)
    g_ref = grads_of(random_loss([y_ref, hn_ref]), [x, *ref.parameters()])
    x_late = torch.zeros_like(x)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU cycles before the input exists
        x_late.copy_(x.detach())
        x_late.requires_grad_()
        y, hn = ours(x_late)
        # The backward runs on the forward's stream (autograd's stream semantics): sleep
        # again, so that the output gradient is written late and a backward launched on
        # another stream would read it before it exists.
        torch.cuda._sleep(100_000_000)
        g = grads_of(random_loss([y, hn]), [x_late, *ours.parameters()])
    side.synchronize()
    assert_close(y, y_ref, torch.float32, f"{forced} output on a side stream")
    for a, e in zip(g, g_ref):
        assert_close(a, e, torch.float32, f"{forced} gradient on a side stream")


@needs_gpu_kernels
@needs_two_gpus
@pytest.mark.parametrize("forced,H", [("single", 64), ("grid", 256), ("gemm", 64)])
def test_inputs_on_the_second_gpu(path, forced, H):
    """Everything on cuda:1 while cuda:0 stays current: the kernels must launch on the
    tensors' device (a launch on cuda:0 faults or reads another device's memory), with a
    plan for cuda:1's limits, and leave the current device alone."""
    path(forced)
    torch.cuda.set_device(0)
    ref, ours = twin_rnn(8, H, backend="native", device="cuda:1")
    x = torch.randn(5, 3, 8, device="cuda:1")
    h0 = torch.randn(1, 3, H, device="cuda:1")
    _check_twins(ref, ours, x, h0, torch.float32, f"{forced} on cuda:1", forced)
    assert torch.cuda.current_device() == 0


@needs_gpu_kernels
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


# Tiny shapes for compute-sanitizer (python -m fastrnn gpu-check runs `-k sanitizer` under
# memcheck, racecheck and synccheck): every path, forward and backward, lengths, both dtypes
# families; racecheck instruments every shared-memory access, so sizes stay minimal.
SANITIZER_CASES = [
    pytest.param("single", 2, 17, torch.float32, id="resident-f32"),
    pytest.param("single", 257, 64, torch.float32, id="single-tiled-f32"),
    pytest.param("grid", 100, 256, torch.float32, id="grid-tiled-f32"),
    pytest.param("grid", 3, 129, torch.bfloat16, id="grid-bf16"),
    pytest.param("single", 5, 17, torch.float64, id="resident-f64"),
    pytest.param("grid", 5, 129, torch.float64, id="grid-f64"),
    pytest.param("gemm", 3, 33, torch.float16, id="gemm-f16"),
]


@needs_gpu_kernels
@pytest.mark.parametrize("forced,B,H,dtype", SANITIZER_CASES)
def test_sanitizer_smoke(path, forced, B, H, dtype):
    """Two steps forward and backward with lengths (0, full and past T) against the
    reference; under compute-sanitizer a stray access or race fails the run even when
    the numbers happen to agree."""
    path(forced)
    torch.manual_seed(8)
    T, I = 2, 3
    args = [torch.randn(T, B, I), torch.randn(B, H), torch.randn(H, I) / H**0.5,
            torch.randn(H, H) / H**0.5, torch.randn(H), torch.randn(H)]
    args = [a.to("cuda", dtype).requires_grad_() for a in args]
    lengths = torch.tensor([(b * 3) % (T + 2) for b in range(B)], device="cuda")
    y = fastrnn._ops.rnn_forward(*args, lengths, True, "relu")
    assert_ran(B, H, dtype, forced, False, f"{forced} forward")
    g = torch.autograd.grad(random_loss([y]), args)
    assert_ran(B, H, dtype, forced, True, f"{forced} backward")
    y_ref = fastrnn.reference.rnn_forward(*args, lengths, True, "relu")
    g_ref = torch.autograd.grad(random_loss([y_ref]), args)
    assert_close(y, y_ref, dtype, f"{forced} output")
    for i, (a, e) in enumerate(zip(g, g_ref)):
        _assert_grad_close(a, e, dtype, f"{forced} grad {i}")
