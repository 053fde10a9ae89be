"""Checks of the CUDA build that need no GPU: the dispatcher, the cubins, spills, and
the host's launch plan (csrc/cuda/launch_plan.h, through fastrnn::_cuda_launch_plan).

The plan tests run in every build (the hook is compiled without CUDA too). The others
inspect fastrnn/_C*.so and are skipped, with the reason, when it has no CUDA kernels.
"""
from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import subprocess

import pytest
import torch

import fastrnn
from fastrnn import _C

plan_op = torch.ops.fastrnn._cuda_launch_plan
SINGLE, GRID, GEMM, TILED = 0, 1, 2, 3
THREADS = 256          # launch_plan.h kThreads
MAX_REGS = 128         # launch_plan.h kMaxRegsPerThread (__launch_bounds__(256, 2))
ARCHS = ("sm_80", "sm_90")
H100 = dict(sm_count=132, smem_per_block=48 * 1024 - 1024)
A100 = dict(sm_count=108, smem_per_block=48 * 1024)
# The same with the opt-in per-block limit the tiled kernels use (cudaDeviceProp
# sharedMemPerBlockOptin: 227 KiB on sm_90, 163 KiB on sm_80; minus the static 1 KiB on sm_90).
H100_OPTIN = dict(H100, smem_optin=227 * 1024 - 1024)
A100_OPTIN = dict(A100, smem_optin=163 * 1024)

HAS_CUDA_KERNELS = fastrnn._ops.has_kernel("cuda")
needs_cuda_build = pytest.mark.skipif(
    not HAS_CUDA_KERNELS,
    reason="fastrnn._C was built without CUDA kernels (no nvcc / CPU-only torch, or "
           "FASTRNN_BUILD_CUDA=0): there is no CUDA code to inspect",
)


def plan(B, H, elem_size=4, device=H100, **kw):
    keys = ["path", "grid", "threads", "kpt", "ks", "rows", "smem", "blocks_per_sm", "resident",
            "tile_rows", "tile_cols", "lanes_r", "micro_r", "row_tiles", "col_tiles", "stride",
            "k_chunk", "micro_c", "mma"]
    if "smem_optin" in device:
        kw.setdefault("smem_optin", device["smem_optin"])
    return dict(zip(keys, plan_op(B, H, elem_size, device["sm_count"], device["smem_per_block"], **kw)))


# ----------------------------------------------------------------------------- the older family
# (one block, or a cooperative grid over columns only): forced, since "auto" now weighs the
# tiled family against it (tests of the tiled plan below).


# ----------------------------------------------------------------------------- launch plan

@pytest.mark.parametrize("H", [1, 17, 64, 128], ids=lambda h: f"H{h}")
@pytest.mark.parametrize("B", [1, 3], ids=lambda b: f"B{b}")
def test_small_hidden_small_batch_is_one_block(B, H):
    p = plan(B, H, force="single")
    assert p["path"] == SINGLE and p["grid"] == 1


@pytest.mark.parametrize("H", [129, 256, 1024, 2048], ids=lambda h: f"H{h}")
def test_larger_hidden_is_a_cooperative_grid(H):
    p = plan(17, H, force="grid")
    assert p["path"] == GRID
    assert p["grid"] > 1
    assert p["grid"] <= p["blocks_per_sm"] * H100["sm_count"], "blocks must all be co-resident"


@pytest.mark.parametrize("H,elem_size", [(2049, 4), (4096, 4), (1025, 8), (2048, 8)])
def test_beyond_on_chip_capacity_falls_back_to_cublas(H, elem_size):
    # Without the opt-in limit nothing fits, the tiled family included.
    assert plan(8, H, elem_size)["path"] == GEMM


def test_large_batch_spreads_small_hidden_over_blocks():
    # 256 rows x 64 columns is too much serial work for one block per step (old family); the
    # tiled family spreads the rows over blocks.
    assert plan(256, 64, force="grid")["path"] == GRID
    p = plan(256, 64)
    assert p["path"] == TILED and p["row_tiles"] > 1


def test_grid_that_cannot_be_co_resident_falls_back():
    # H=2048 needs 256 blocks; two fit per SM: fine on 132 SMs, not on 108 (A100).
    assert plan(4, 2048, device=H100, force="grid")["path"] == GRID
    assert plan(4, 2048, device=A100, force="grid")["path"] == GEMM
    assert plan(4, 1024, device=dict(sm_count=8, smem_per_block=48 * 1024))["path"] == GEMM


def test_real_register_counts_change_residency():
    # With 255 registers per thread only one 256-thread block fits per SM.
    assert plan(4, 2048, regs_per_kpt=[255] * 5, force="grid")["path"] == GEMM
    assert plan(4, 256, regs_per_kpt=[64] * 5, force="grid")["blocks_per_sm"] == 4


def test_no_cooperative_launch_means_no_grid():
    assert plan(4, 256, cooperative_launch=False)["path"] == GEMM
    assert plan(4, 64, cooperative_launch=False, force="single")["path"] == SINGLE
    # The tiled family needs no cooperative launch when one column tile covers H.
    p = plan(4, 64, cooperative_launch=False, force="tiled")
    assert p["path"] == TILED and p["col_tiles"] == 1
    assert plan(4, 256, cooperative_launch=False, force="tiled")["path"] == GEMM


def test_forced_paths():
    assert plan(4, 64, force="gemm")["path"] == GEMM
    assert plan(1, 129, force="grid")["path"] == GRID
    assert plan(1, 64, force="grid")["path"] == GRID
    assert plan(4, 129, force="single")["path"] == GEMM  # cannot: falls back, never fails
    assert plan(256, 64, force="single")["path"] == SINGLE


@pytest.mark.parametrize("elem_size", [4, 8])
@pytest.mark.parametrize("device", [H100, A100, dict(sm_count=1, smem_per_block=16 * 1024)],
                         ids=["H100", "A100", "tiny"])
def test_plan_invariants(elem_size, device):
    kpts = set(torch.ops.fastrnn._cuda_kernel_kpts(elem_size))
    for H, B, force in itertools.product(
            [1, 3, 17, 31, 64, 100, 129, 255, 256, 511, 768, 1000, 1024, 1500, 2048, 2049],
            [1, 3, 17, 129, 256], ["single", "grid"]):
            p = plan(B, H, elem_size, device, force=force)
            if p["path"] == GEMM:
                continue
            where = f"B={B} H={H} elem={elem_size} {device}: {p}"
            assert p["kpt"] in kpts, where
            assert p["threads"] == THREADS, where
            assert p["ks"] & (p["ks"] - 1) == 0 and p["ks"] <= 32, where
            assert p["ks"] * p["kpt"] >= H, "lanes x weights must cover the hidden size: " + where
            assert p["grid"] == math.ceil(H / (THREADS // p["ks"])), where
            assert p["path"] == (SINGLE if p["grid"] == 1 else GRID), where
            assert p["rows"] % 4 == 0 and 4 <= p["rows"] <= math.ceil(B / 4) * 4, where
            tiles = 2 if p["resident"] else 1
            assert p["smem"] == tiles * p["rows"] * p["ks"] * p["kpt"] * elem_size, where
            if p["resident"]:
                assert p["path"] == SINGLE and p["rows"] >= B, where
            assert p["smem"] <= device["smem_per_block"], where
            assert p["grid"] <= p["blocks_per_sm"] * device["sm_count"], where


def test_state_stays_on_chip_when_the_batch_fits_one_block():
    # Forward only: two tiles of the whole batch in shared memory, one barrier per step.
    p = plan(3, 64, force="single")
    assert p["path"] == SINGLE and p["resident"] == 1 and p["rows"] == 4
    assert plan(3, 64, backward=True, force="single")["resident"] == 0
    assert plan(256, 64, force="single")["resident"] == 0  # 2 x 256 rows do not fit
    assert plan(3, 256, force="grid")["resident"] == 0  # a grid re-reads the state from global memory


def test_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="elem_size"):
        plan_op(1, 8, 2, 1, 49152)
    with pytest.raises(ValueError, match="force"):
        plan_op(1, 8, 4, 1, 49152, force="fastest")
    with pytest.raises(ValueError, match="regs_per_kpt"):
        plan_op(1, 8, 4, 1, 49152, regs_per_kpt=[64, 64])
    with pytest.raises(ValueError, match="sm_count"):
        plan_op(1, 8, 4, 0, 49152)


def test_zero_sizes_take_the_fallback():
    # The host never launches a kernel for B = 0 or H = 0; the plan agrees.
    assert plan(0, 64)["path"] == GEMM
    assert plan(4, 0)["path"] == GEMM


# ----------------------------------------------------------------------------- tiled plan

def _tiled_smem(p, elem_size):
    # launch_plan.h tiled_smem_bytes: weights [cols, stride], state [rows, stride] (x2 when
    # resident), partial sums [8 warps, rows, cols].
    states = 2 if p["col_tiles"] == 1 else 1
    return (p["tile_cols"] * p["stride"] + states * p["tile_rows"] * p["stride"]
            + 8 * p["tile_rows"] * p["tile_cols"]) * elem_size


@pytest.mark.parametrize("elem_size", [4, 8])
@pytest.mark.parametrize("device", [H100_OPTIN, A100_OPTIN, H100], ids=["H100", "A100", "H100-no-optin"])
def test_tiled_plan_invariants(elem_size, device):
    limit = max(device.get("smem_optin", 0), device["smem_per_block"])
    for H, B in itertools.product([1, 3, 17, 33, 64, 100, 128, 129, 256, 513, 768, 1024, 2048],
                                  [1, 5, 16, 64, 256]):
        p = plan(B, H, elem_size, device, force="tiled")
        if p["path"] == GEMM:
            continue
        where = f"B={B} H={H} elem={elem_size} {device}: {p}"
        assert p["path"] == TILED and p["threads"] == THREADS, where
        assert p["micro_r"] in (1, 2, 4) and p["micro_c"] in (1, 4), where
        lanes_c = 32 // p["lanes_r"]
        assert p["tile_rows"] == p["lanes_r"] * p["micro_r"] <= 32, where
        assert p["tile_cols"] == lanes_c * p["micro_c"], where
        assert p["row_tiles"] == math.ceil(B / p["tile_rows"]), where
        assert p["col_tiles"] == math.ceil(H / p["tile_cols"]), where
        assert p["grid"] == p["row_tiles"] * p["col_tiles"], where
        # No power-of-two padding: the row stride is H (odd) or H + 1 (even, for the banks),
        # the warps' K shares cover H with less than one share of 4 to spare per warp.
        assert p["stride"] == (H + 1 if H % 2 == 0 else H), where
        assert 8 * p["k_chunk"] >= H and p["k_chunk"] % 4 == 0 and p["k_chunk"] - 4 < math.ceil(H / 8), where
        # The tile fits the (opt-in) per-block limit; one column tile keeps the state resident.
        assert p["smem"] == _tiled_smem(p, elem_size) <= limit, where
        assert p["resident"] == (p["col_tiles"] == 1), where
        if p["col_tiles"] > 1:  # grid.sync(): every block co-resident
            assert p["grid"] <= p["blocks_per_sm"] * device["sm_count"], where


@pytest.mark.parametrize("device", [H100_OPTIN, A100_OPTIN, H100], ids=["H100", "A100", "H100-no-optin"])
def test_tensor_core_plan_invariants(device):
    # launch_plan.h make_tiled_mma_plan: tiles of 16 x 16 fragments (kMmaTiles), shared memory
    # in 4-byte words (a 16-bit pair per k) with the float layout's sizes, wmma's rules.
    # bfloat16 only (plan_types.h mma_keeps_contract; float16: test_cuda_choice.py).
    limit = max(device.get("smem_optin", 0), device["smem_per_block"])
    mma = 2
    for H, B in itertools.product([1, 9, 16, 17, 33, 100, 256, 513, 1024, 2048], [1, 16, 17, 64, 256]):
        p = plan(B, H, 4, device, force="tiled_mma", mma=mma)
        if p["path"] == GEMM:
            continue
        where = f"B={B} H={H} mma={mma} {device}: {p}"
        assert p["path"] == TILED and p["mma"] == mma and p["threads"] == THREADS, where
        assert (p["micro_r"], p["micro_c"]) in ((1, 1), (1, 2), (2, 1)), where
        assert (p["tile_rows"], p["tile_cols"]) == (16 * p["micro_r"], 16 * p["micro_c"]), where
        assert p["row_tiles"] == math.ceil(B / p["tile_rows"]), where
        assert p["col_tiles"] == math.ceil(H / p["tile_cols"]), where
        assert p["grid"] == p["row_tiles"] * p["col_tiles"], where
        # stride: H rounded up to 8 words (a fragment's 16 elements) plus 4 (banks); a multiple
        # of 4 words keeps every fragment 32-byte aligned and ldm (2 x stride) a multiple of 8.
        h8 = math.ceil(H / 8) * 8
        assert p["stride"] == h8 + 4 and p["stride"] % 4 == 0, where
        # The warps' K shares: whole fragment steps of 8 words covering H.
        assert p["k_chunk"] % 8 == 0 and 8 * p["k_chunk"] >= h8 > 8 * (p["k_chunk"] - 8), where
        assert p["smem"] == _tiled_smem(p, 4) <= limit, where
        assert p["resident"] == (p["col_tiles"] == 1), where
        if p["col_tiles"] > 1:
            assert p["grid"] <= p["blocks_per_sm"] * device["sm_count"], where
    # Only 16-bit models and the float32 compute type take it.
    assert plan(64, 256, 4, device, force="tiled_mma")["path"] == GEMM
    assert plan(64, 256, 8, device, force="tiled_mma", mma=mma)["path"] == GEMM


def test_auto_weighs_the_tensor_cores_only_for_16_bit_models():
    # The tensor-core tiles are one more candidate of make_plan's ranking (cost_model.h
    # tiled_mma_cost, the one scale; tests/test_cuda_choice.py checks the argmin over a grid):
    # ahead of the FMA tiles at B = 64, H = 512 for bfloat16, behind at B = 8 (a fragment's 16
    # rows half padding), never for a float16 model (plan_types.h mma_keeps_contract), a float32
    # model or float64 compute.
    assert plan(64, 512, 4, H100_OPTIN, mma=2)["mma"] == 2
    assert plan(64, 512, 4, H100_OPTIN, mma=1)["mma"] == 0
    assert plan(64, 512, 4, H100_OPTIN)["mma"] == 0
    assert plan(64, 512, 8, H100_OPTIN, mma=2)["mma"] == 0
    assert plan(8, 512, 4, H100_OPTIN, mma=2)["mma"] == 0


@pytest.mark.parametrize("B,H", [(16, 256), (64, 512), (64, 1024), (256, 64)])
def test_tiled_plan_uses_all_sms_when_the_batch_and_hidden_allow(B, H):
    # B x H outputs in tiles of 32 x micro_r x micro_c: enough tiles for every SM here.
    p = plan(B, H, device=H100_OPTIN)
    assert p["path"] == TILED, p
    assert 0.9 * H100["sm_count"] <= p["grid"], p
    if p["col_tiles"] > 1:
        assert p["grid"] <= H100["sm_count"] * p["blocks_per_sm"], p


@pytest.mark.parametrize("H", [1, 17, 64, 100, 128])
@pytest.mark.parametrize("B", [1, 8, 64, 256])
def test_tiled_small_hidden_needs_no_grid_barrier(B, H):
    # One column tile covers H <= 128: blocks split only the batch, a plain launch with
    # __syncthreads alone, whatever the number of blocks (they never wait for each other).
    p = plan(B, H, device=H100_OPTIN, force="tiled", cooperative_launch=False)
    assert p["path"] == TILED and p["col_tiles"] == 1 and p["resident"] == 1, p
    assert p["row_tiles"] == math.ceil(B / p["tile_rows"]), p


def test_tiled_plan_uses_the_opt_in_limit():
    # B=64, H=1024: a 32-column slice of W_hh alone is 128 KiB: only with the opt-in.
    p = plan(64, 1024, device=H100_OPTIN)
    assert p["path"] == TILED and 48 * 1024 < p["smem"] <= H100_OPTIN["smem_optin"], p
    assert plan(64, 1024, device=H100, force="tiled")["smem"] <= H100["smem_per_block"]
    # H = 513 and 768 run at their size (odd stride, no padding to 1024).
    for H in (513, 768):
        q = plan(64, H, device=H100_OPTIN)
        assert q["path"] == TILED and q["stride"] in (H, H + 1), q


def test_auto_weighs_the_tiled_family_against_the_older_one():
    # The cost model ranks both families; each wins somewhere (csrc/cuda/README.md's table;
    # tests/test_cuda_choice.py checks the choice is the model's argmin everywhere).
    assert plan(64, 512, device=H100_OPTIN)["path"] == TILED
    assert plan(8, 256, device=H100_OPTIN)["path"] == TILED  # the older family's cycles said single
    assert plan(2, 64, 8, device=H100_OPTIN)["path"] == SINGLE  # float64, a tiny batch
    assert plan(256, 1024, device=H100_OPTIN)["path"] == GRID
    assert plan(64, 512, device=H100_OPTIN, force="grid")["path"] == GRID


# ----------------------------------------------------------------------------- the binary

def _cuobjdump():
    try:
        import triton
        path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    for cand in (shutil.which("cuobjdump"), os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "cuobjdump")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.skip("no cuobjdump (neither triton's bundled copy nor the CUDA toolkit's)")


def _run_cuobjdump(flag):
    return subprocess.run([_cuobjdump(), flag, _C.__file__], check=True, capture_output=True,
                          text=True).stdout


KERNEL_RE = re.compile(r"(fwd|bwd)_persistent_kernelI([fd])Li(\d+)E")


def _functions_resource_usage():
    """[(arch, mangled kernel name, {REG, STACK, SHARED, LOCAL, ...})] of every kernel in the
    extension, from ``cuobjdump --dump-resource-usage``."""
    out, arch, name = [], None, None
    for line in _run_cuobjdump("--dump-resource-usage").splitlines():
        m = re.search(r"arch = (sm_\d+)", line)
        if m:
            arch = m.group(1)
            continue
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            out.append((arch, name, dict((k, int(v)) for k, v in re.findall(r"(\w+):(\d+)", line))))
            name = None
    return out


def _resource_usage():
    """{(arch, direction, 'f'|'d', kpt): {REG, STACK, SHARED, LOCAL}} of the persistent kernels."""
    out = {}
    for arch, name, fields in _functions_resource_usage():
        k = KERNEL_RE.search(name)
        if k:
            out[(arch, k.group(1), k.group(2), int(k.group(3)))] = fields
    return out


@needs_cuda_build
def test_dispatcher_has_cuda_kernels():
    for op in ("fastrnn::rnn_forward", "fastrnn::rnn_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), op
        assert "CUDA" in torch._C._dispatch_dump(op)


@needs_cuda_build
def test_cubins_for_sm80_and_sm90():
    listing = _run_cuobjdump("--list-elf")
    for arch in ARCHS:
        for unit in ("rnn_fwd_kernels", "rnn_bwd_kernels", "rnn_pointwise", "rnn_tiled_kernels"):
            assert re.search(rf"{unit}\.{arch}\.cubin", listing), f"{unit} has no {arch} code:\n{listing}"


@needs_cuda_build
def test_every_selectable_kernel_is_built_without_spills():
    usage = _resource_usage()
    # Every kpt the plan can select (older family: forced, as the measured choice runs it), for
    # both compute types (float also serves fp16/bf16). The tiled family: the next test.
    selectable = set()
    for elem_size, tag in ((4, "f"), (8, "d")):
        for device, force in itertools.product((H100, A100), ("single", "grid")):
            for H in range(1, 2049, 7):
                for B in (1, 256):
                    p = plan(B, H, elem_size, device, force=force)
                    if p["path"] != GEMM:
                        selectable.add((tag, p["kpt"]))
        assert {k for t, k in selectable if t == tag} <= set(torch.ops.fastrnn._cuda_kernel_kpts(elem_size))
    problems = []
    for arch in ARCHS:
        for direction in ("fwd", "bwd"):
            for tag, kpt in sorted(selectable):
                r = usage.get((arch, direction, tag, kpt))
                if r is None:
                    problems.append(f"{direction} {tag} kpt={kpt} not built for {arch}")
                elif r["STACK"] or r["LOCAL"] or r["REG"] > MAX_REGS:
                    problems.append(f"{direction} {tag} kpt={kpt} {arch}: {r} (spills / local memory / registers)")
    assert not problems, "\n".join(problems)


# The FMA kernels (last template argument void) and the tensor-core ones (__half /
# __nv_bfloat16 operands, float accumulation; micro tile = fragments).
TILED_RE = re.compile(r"tiled_kernelI([fd])Li(\d)ELi(\d)ENS0_7(Fwd|Bwd)ArgsI[fd]EEvEE")
MMA_RE = re.compile(
    r"tiled_kernelIfLi(\d)ELi(\d)ENS0_7(Fwd|Bwd)ArgsIfEE(?:6__half|13__nv_bfloat16)EE")
TILED_MAX_REGS = 255  # launch_plan.h kTiledMaxRegsPerThread (__launch_bounds__(256, 1))


@needs_cuda_build
def test_every_tiled_kernel_is_built_without_spills():
    # Every micro tile of launch_plan.h, fwd and bwd, float and double, on both architectures.
    usage = {}
    problems = []
    for arch, name, fields in _functions_resource_usage():
        k = TILED_RE.search(name)
        if k:
            usage[(arch,) + k.groups()] = fields
        k = MMA_RE.search(name)
        if k:
            mma = "bf16" if "bfloat16" in name else "f16"
            usage[(arch, mma) + k.groups()] = fields
            if mma != "bf16":
                problems.append(f"{arch}: a float16 tensor-core kernel was built: {name}")
    for arch in ARCHS:
        for tag, mr, mc, direction in itertools.product("fd", "124", "14", ("Fwd", "Bwd")):
            r = usage.get((arch, tag, mr, mc, direction))
            if r is None:
                problems.append(f"tiled {direction} {tag} {mr}x{mc} not built for {arch}")
            elif r["STACK"] or r["LOCAL"] or r["REG"] > TILED_MAX_REGS:
                problems.append(f"tiled {direction} {tag} {mr}x{mc} {arch}: {r}")
        # launch_plan.h kMmaTiles, bfloat16 only (plan_types.h mma_keeps_contract).
        for mma, (fr, fc), direction in itertools.product(("bf16",), ((1, 1), (1, 2), (2, 1)),
                                                          ("Fwd", "Bwd")):
            r = usage.get((arch, mma, str(fr), str(fc), direction))
            if r is None:
                problems.append(f"tiled mma {direction} {mma} {fr}x{fc} not built for {arch}")
            elif r["STACK"] or r["LOCAL"] or r["REG"] > TILED_MAX_REGS:
                problems.append(f"tiled mma {direction} {mma} {fr}x{fc} {arch}: {r}")
    assert not problems, "\n".join(problems)


@needs_cuda_build
def test_no_kernel_in_the_library_uses_local_memory():
    # Beyond the persistent kernels: the fallback's pointwise kernels too.
    bad, seen = [], 0
    for line in _run_cuobjdump("--dump-resource-usage").splitlines():
        if "REG:" in line:
            seen += 1
            f = dict((k, int(v)) for k, v in re.findall(r"(\w+):(\d+)", line))
            if f["STACK"] or f["LOCAL"]:
                bad.append(line.strip())
    assert seen >= 2 * (9 + 9 + 4), "fewer kernels than instantiated"
    assert not bad, "\n".join(bad)


@needs_cuda_build
def test_built_register_counts_keep_the_plan():
    # The host feeds the real register counts to the plan; with the built kernels an
    # H100 must still run H=2048 fp32 and H=1024 fp64 as a co-resident grid.
    usage = _resource_usage()
    for elem_size, tag, H in ((4, "f", 2048), (8, "d", 1024)):
        kpts = torch.ops.fastrnn._cuda_kernel_kpts(elem_size)
        for direction in ("fwd", "bwd"):
            regs = [usage[("sm_90", direction, tag, k)]["REG"] for k in kpts]
            static = max(usage[("sm_90", direction, tag, k)]["SHARED"] for k in kpts)
            dev = dict(sm_count=132, smem_per_block=48 * 1024 - static)
            assert plan(8, H, elem_size, dev, regs_per_kpt=regs)["path"] == GRID, (direction, tag, regs)
