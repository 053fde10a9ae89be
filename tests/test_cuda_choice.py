"""The measured choice between fastrnn's CUDA paths, cuBLAS and cuDNN (fastrnn/_cuda_choice.py)
and the cost model behind it (csrc/cuda/cost_model.h), tested on the CPU.

The selection logic runs with an injected timer (synthetic seconds per candidate), runner
(the real reference computation, recording which candidate ran) and environment (device
name, driver, fastrnn version), so cache keys, the disk cache, deterministic mode,
FASTRNN_CUDA_AUTOTUNE=0 and the fallback on a refused launch are exercised without a GPU.
The per-call path override drives the cuda_sim backend (the simulated CUDA kernels), and the
cuDNN candidate's wrapping of torch's RNN op (lengths, reverse) runs on torch's CPU RNN.
The GPU tests at the end time real candidates with CUDA events and skip here.
"""
from __future__ import annotations

import json

import pytest
import torch

import fastrnn
from fastrnn import _cuda_choice as cc
from fastrnn import cuda_sim, reference
from fastrnn.backends import cuda_choice, last_cuda_plan

from helpers import assert_close

H100 = ("NVIDIA H100 80GB HBM3", "580.65", "0.1.0")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in (cc.ENV_AUTOTUNE, cc.ENV_CACHE, "FASTRNN_CUDA_PATH", "FASTRNN_SIM_DEVICE"):
        monkeypatch.delenv(var, raising=False)
    # conftest.py turns deterministic mode on (warn-only) for the suite; the choice reads it,
    # so these tests start without it and the deterministic tests turn it on themselves.
    was = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    yield
    torch.use_deterministic_algorithms(was, warn_only=warn_only)


def _call(T=8, B=4, I=5, H=64, *, lengths=None, reverse=False, grad=False, dtype=torch.float32,
          nonlinearity="tanh", bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    s = H ** -0.5

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype).requires_grad_(grad)

    b = (rand(H, scale=s), rand(H, scale=s)) if bias else (None, None)
    return cc.LayerCall(rand(T, B, I), rand(B, H, scale=0.5), rand(H, I, scale=s), rand(H, H, scale=s),
                        *b, lengths, reverse, nonlinearity)


class Recorder:
    """Runner + timer: runs the reference computation, records the candidate, and reports the
    synthetic seconds given for it; `refuse` candidates raise a refused launch."""

    def __init__(self, seconds, refuse=(), refusal=None):
        # A test that does not time the tiled family makes it the slowest candidate.
        self.seconds = {"tiled": 9e-3, **seconds}
        self.refuse = set(refuse)
        self.refusal = refusal or cc.LaunchRefused("refused: cooperative grid too large")
        self.ran: list[str] = []
        self.timed: list[str] = []

    def runner(self, name, c):
        if name in self.refuse:
            raise self.refusal
        self.ran.append(name)
        return reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                     c.lengths, c.reverse, c.nonlinearity)

    def timer(self, fn):
        before = len(self.ran)
        fn()
        name = self.ran[before]
        self.timed.append(name)
        return self.seconds[name]

    def chooser(self, environment=H100, cudnn=True):
        return cc.Chooser(timer=self.timer, runner=self.runner, environment=lambda dev: environment,
                          cudnn_available=lambda: cudnn)


def _no_timer(fn):
    raise AssertionError("the timer must not run here")


# ---- selection with synthetic timings -------------------------------------------------------

def test_the_fastest_measured_candidate_wins_and_runs():
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 2.5e-3})
    chooser = rec.chooser()
    c = _call()
    y = chooser.run(c)
    choice = chooser.choices[c.key(H100[0])]
    assert choice.candidate == "grid" and choice.source == "measured"
    # every candidate that the model says fits was timed once, and nothing else
    fitting = [p["name"] for p in cc.predict("h100", 8, 4, 64, torch.float32) if p["fits"]]
    assert sorted(rec.timed) == sorted(fitting) and "cudnn" in fitting
    assert choice.ranking == sorted(choice.seconds, key=choice.seconds.get)
    assert rec.ran[-1] == "grid"  # the layer itself ran through the winner
    assert_close(y, reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih,
                                          c.bias_hh, None, False, "tanh"))


def test_cudnn_wins_when_it_is_fastest_and_is_never_offered_when_absent():
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 1e-3})
    assert rec.chooser().choose(_call()).candidate == "cudnn"
    rec2 = Recorder(rec.seconds)
    choice = rec2.chooser(cudnn=False).choose(_call())
    assert choice.candidate == "grid" and "cudnn" not in rec2.timed


def test_ties_keep_the_model_order():
    rec = Recorder({"single": 1e-3, "grid": 1e-3, "tiled": 1e-3, "gemm": 1e-3, "cudnn": 1e-3})
    choice = rec.chooser().choose(_call())
    model_rank, _ = rec.chooser()._model_ranking(_call(), H100[0], True)
    assert choice.candidate == model_rank[0]


def test_training_timing_runs_backward_without_touching_the_callers_grads():
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
    c = _call(grad=True)
    assert c.training and c.key(H100[0]).training
    rec.chooser().choose(c)
    assert all(t.grad is None for t in c.tensors())
    with torch.no_grad():
        assert not c.training


# ---- cache keys ----------------------------------------------------------------------------

def test_cache_hits_within_a_bucket_and_misses_across():
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
    chooser = rec.chooser()
    chooser.choose(_call(T=8, B=4))
    n = len(rec.timed)
    # same bucket: T 5..8 -> 8, B 3..4 -> 4, I 5..8 -> 8; H exact
    chooser.choose(_call(T=5, B=3, I=7))
    assert len(rec.timed) == n
    for other in (_call(T=9), _call(B=5), _call(H=65), _call(reverse=True), _call(grad=True),
                  _call(lengths=torch.tensor([8, 3, 1, 8])), _call(dtype=torch.float64)):
        before = len(rec.timed)
        chooser.choose(other)
        assert len(rec.timed) > before, other.key(H100[0])
    # another GPU is another key
    other_gpu = Recorder(rec.seconds)
    chooser.environment = lambda dev: ("NVIDIA A100-SXM4-80GB", "580.65", "0.1.0")
    chooser.timer, chooser.runner = other_gpu.timer, other_gpu.runner
    chooser.choose(_call(T=8, B=4))
    assert other_gpu.timed
    assert len(chooser.choices) == 9


def test_key_buckets():
    key = _call(T=100, B=64, I=40, H=128, lengths=torch.full((64,), 3)).key("GPU")
    assert (key.T, key.B, key.I, key.H, key.packed, key.reverse) == (128, 64, 64, 128, True, False)
    assert cc._bucket(1) == 1 and cc._bucket(2) == 2 and cc._bucket(3) == 4 and cc._bucket(1025) == 2048


# ---- disk cache ------------------------------------------------------------------------------

def test_disk_cache_round_trip_and_version_invalidation(tmp_path, monkeypatch):
    path = tmp_path / "choice.json"
    monkeypatch.setenv(cc.ENV_CACHE, str(path))
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
    first = rec.chooser().choose(_call())
    assert first.source == "measured" and path.exists()
    stored = json.loads(path.read_text())
    assert len(stored) == 1 and "driver 580.65|fastrnn 0.1.0" in next(iter(stored))

    # a new process (fresh chooser) reads it back without timing anything
    again = cc.Chooser(timer=_no_timer, runner=rec.runner, environment=lambda dev: H100,
                       cudnn_available=lambda: True).choose(_call())
    assert (again.source, again.candidate, again.ranking) == ("disk", "grid", first.ranking)

    # another fastrnn version or driver misses, measures, and adds its own entry
    for env in (H100[:2] + ("0.2.0",), (H100[0], "590.1", H100[2])):
        rec2 = Recorder({"single": 1e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
        choice = rec2.chooser(environment=env).choose(_call())
        assert choice.source == "measured" and choice.candidate == "single" and rec2.timed
    assert len(json.loads(path.read_text())) == 3


def test_an_unreadable_disk_cache_is_a_miss(tmp_path, monkeypatch):
    path = tmp_path / "choice.json"
    path.write_text("{not json")
    monkeypatch.setenv(cc.ENV_CACHE, str(path))
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
    assert rec.chooser().choose(_call()).source == "measured"
    assert len(json.loads(path.read_text())) == 1  # rewritten whole


# ---- no measurement: the cost model's choice --------------------------------------------------

def _model_best(c, *, allow_cudnn):
    totals = {}
    for p in cc.predict("h100", *c.input.shape[:2], c.weight_hh.shape[0], c.input.dtype):
        if p["fits"] and (allow_cudnn or p["name"] != "cudnn"):
            totals[p["name"]] = p["total"]
    return min(totals, key=totals.get)


def test_autotune_off_takes_the_models_choice(monkeypatch):
    monkeypatch.setenv(cc.ENV_AUTOTUNE, "0")
    rec = Recorder({})
    chooser = cc.Chooser(timer=_no_timer, runner=rec.runner, environment=lambda dev: H100,
                         cudnn_available=lambda: True)
    for c in (_call(T=1024, B=16, H=256), _call(T=512, B=8, H=128), _call(T=100, B=64, H=128)):
        choice = chooser.choose(c)
        assert choice.source == "model" and choice.seconds == {}
        assert choice.candidate == _model_best(c, allow_cudnn=True)


def test_deterministic_mode_fixes_the_choice_to_the_models_fastrnn_path():
    rec = Recorder({})
    torch.use_deterministic_algorithms(True)
    try:
        choices = []
        for _ in range(2):  # two processes' worth: a fresh chooser each time
            chooser = cc.Chooser(timer=_no_timer, runner=rec.runner, environment=lambda dev: H100,
                                 cudnn_available=lambda: True)
            for c in (_call(T=1024, B=16, H=256), _call()):  # chosen without running
                choices.append(chooser.choose(c))
            y1, y2 = chooser.run(c), chooser.run(c)
            assert torch.equal(y1, y2)
    finally:
        torch.use_deterministic_algorithms(False)
    assert choices[0].candidate == choices[2].candidate == _model_best(_call(T=1024, B=16, H=256),
                                                                       allow_cudnn=False)
    assert choices[1].candidate == choices[3].candidate == _model_best(_call(), allow_cudnn=False)
    assert all(ch.source == "deterministic" and "cudnn" not in ch.ranking for ch in choices)


# ---- refused launches ------------------------------------------------------------------------

@pytest.mark.parametrize("refusal", [
    cc.LaunchRefused("refused"),
    RuntimeError("CUDA error: too many blocks in cooperative launch"),
    RuntimeError("cudaErrorCooperativeLaunchTooLarge"),
])
def test_a_refused_candidate_is_skipped_while_measuring(refusal):
    rec = Recorder({"single": 3e-3, "grid": 1e-3, "gemm": 5e-3, "cudnn": 4e-3}, refuse={"grid"},
                   refusal=refusal)
    choice = rec.chooser().choose(_call())
    assert choice.candidate == "single" and choice.refused == ["grid"] and "grid" not in choice.ranking


def test_a_refused_winner_falls_back_to_the_next_candidate_at_run_time():
    rec = Recorder({"single": 3e-3, "grid": 1e-3, "gemm": 5e-3, "cudnn": 4e-3})
    chooser = rec.chooser()
    c = _call()
    assert chooser.choose(c).candidate == "grid"
    rec.refuse = {"grid"}  # e.g. another kernel now occupies the SMs
    y = chooser.run(c)
    choice = chooser.choices[c.key(H100[0])]
    assert rec.ran[-1] == "single" and choice.candidate == "single" and choice.refused == ["grid"]
    assert_close(y, reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih,
                                          c.bias_hh, None, False, "tanh"))


def test_other_errors_are_raised_not_swallowed():
    rec = Recorder({"single": 3e-3, "grid": 1e-3, "gemm": 5e-3, "cudnn": 4e-3}, refuse={"grid"},
                   refusal=RuntimeError("CUDA error: an illegal memory access was encountered"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        rec.chooser().choose(_call())
    everything = Recorder({}, refuse=set(cc.CANDIDATES))
    with pytest.raises(RuntimeError, match="every CUDA candidate was refused"):
        everything.chooser().choose(_call())


# ---- the cost model --------------------------------------------------------------------------

PARTS = ("compute", "smem", "latency", "barrier", "launch")
SHAPES = [(1024, 16, 256), (1024, 64, 512), (256, 16, 256), (128, 64, 1024), (512, 8, 128),
          (100, 256, 64), (100, 64, 128), (64, 1, 1), (16, 3, 2048)]


@pytest.mark.parametrize("device", ["h100", "h200", "a100"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_cost_model_breakdown_sums_to_the_total(device, dtype):
    for T, B, H in SHAPES:
        for backward in (False, True):
            preds = cc.predict(device, T, B, H, dtype, backward=backward)
            assert [p["name"] for p in preds] == list(cc.CANDIDATES)
            for p in preds:
                if not p["fits"]:
                    assert p["total"] == 0
                    continue
                assert all(p[k] >= 0 for k in PARTS), p
                assert p["total"] == pytest.approx(sum(p[k] for k in PARTS), rel=1e-12), p
                assert p["total"] > 0


def test_cost_model_plans_are_the_hosts_plans():
    # the persistent candidates are the plans make_plan returns when the path is forced, on
    # the simulated H100 (the same device numbers), so the simulation can run them
    for T, B, H in [(4, 2, 64), (4, 16, 256), (4, 8, 128)]:
        for p in cc.predict("h100", T, B, H, torch.float32)[:2]:
            if not p["fits"]:
                continue
            plan = torch.ops.fastrnn._cuda_launch_plan(B, H, 4, 132, 47 * 1024, force=p["name"])
            assert (plan[1], plan[3], plan[4], plan[5]) == (p["grid"], p["kpt"], p["ks"], p["rows_per_tile"])
            assert p["path"] == ("resident" if plan[8] else ("single" if plan[0] == 0 else "grid"))
        # the tiled candidate: make_plan forced "tiled" with the H100's opt-in limit
        p = cc.predict("h100", T, B, H, torch.float32)[2]
        assert p["name"] == "tiled" and p["fits"] and p["path"] == "tiled"
        plan = torch.ops.fastrnn._cuda_launch_plan(B, H, 4, 132, 47 * 1024, force="tiled",
                                                   smem_optin=226 * 1024)
        assert (plan[0], plan[1], plan[9], plan[10]) == (3, p["grid"], p["rows_per_tile"], p["tile_cols"])
        assert p["grid_barrier"] == (plan[14] > 1)


# The occupancy-relevant numbers of the simulated devices (csrc/sim/sim_device.h) as
# _cuda_launch_plan arguments: sharedMemPerBlock and the opt-in limit minus the static 1 KiB
# on sm_90.
_PLAN_DEVICES = {"h100": dict(sm_count=132, smem_per_block=47 * 1024, smem_optin=226 * 1024),
                 "a100": dict(sm_count=108, smem_per_block=48 * 1024, smem_optin=163 * 1024)}
_PLAN_PATHS = {0: ("single", "resident"), 1: ("grid",), 2: ("gemm",), 3: ("tiled",)}


@pytest.mark.parametrize("device", sorted(_PLAN_DEVICES))
def test_make_plan_auto_is_the_cost_models_argmin(device):
    """One cost scale: make_plan's unforced plan is the fastest fastrnn candidate the cost model
    predicts (cost_model.h, ns per step), in both directions and types, over batch x hidden
    (the older family's grid wins at B = 256 with a wide H, its single block at a tiny batch in
    float64 on the H100, the tiled family elsewhere, the GEMM path where nothing fits). For a
    float16/bfloat16 model (elem_size 4 with its 16-bit type, mma, as the host plans it) the
    tensor-core tiles (tiled_mma) are one more candidate on the same scale, and where they are
    the argmin the plan is theirs (its mma field set)."""
    d = _PLAN_DEVICES[device]
    chosen = set()
    for dtype, elem, mma in ((torch.float32, 4, 0), (torch.float64, 8, 0), (torch.bfloat16, 4, 2),
                             (torch.float16, 4, 1)):
        for backward in (False, True):
            for T in (16, 1024):
                for B in (1, 3, 8, 16, 64, 256):
                    for H in (1, 33, 64, 128, 129, 256, 512, 1024, 2048):
                        preds = [p for p in cc.predict(device, T, B, H, dtype, backward=backward)
                                 if p["fits"] and p["name"] in ("single", "grid", "tiled", "tiled_mma")]
                        want = min(preds, key=lambda p: p["total"]) if preds else None
                        got = torch.ops.fastrnn._cuda_launch_plan(
                            B, H, elem, d["sm_count"], d["smem_per_block"], backward=backward,
                            smem_optin=d["smem_optin"], T=T, device=device, mma=mma)
                        where = (device, dtype, backward, T, B, H, got, want)
                        if want is None:
                            assert got[0] == 2, where
                            continue
                        assert want["path"] in _PLAN_PATHS[got[0]], where
                        assert got[1] == want["grid"], where
                        assert got[18] == (mma if want["name"] == "tiled_mma" else 0), where
                        if want["name"] in ("tiled", "tiled_mma"):
                            assert (got[9], got[10]) == (want["rows_per_tile"], want["tile_cols"]), where
                        else:
                            assert (got[3], got[4], got[5]) == (want["kpt"], want["ks"],
                                                                want["rows_per_tile"]), where
                        chosen.add((want["name"], mma > 0))
    names = {name for name, _ in chosen}
    assert {"grid", "tiled", "tiled_mma"} <= names and (device != "h100" or "single" in names), chosen
    # the tensor cores win some 16-bit shapes and lose others to the FMA tiles
    assert {("tiled_mma", True), ("tiled", True)} <= chosen, chosen


def test_make_plan_reads_the_device_it_is_given():
    """The model's device numbers come from what the host knows (plan::Device): the A100's clock
    and FP32 lanes rank differently from the H100's for the same occupancy limits; a GPU's own
    name (cudaDeviceProp::name) with its properties plans as the modelled device it matches."""
    h100 = _PLAN_DEVICES["h100"]

    def path(device, B, H, **props):
        return torch.ops.fastrnn._cuda_launch_plan(B, H, 4, h100["sm_count"], h100["smem_per_block"],
                                                   smem_optin=h100["smem_optin"], T=128,
                                                   device=device, **props)[0]
    # (B=1, H=1024) float32: the tiled plan on an H100 (128 FP32 lanes per SM), the older
    # grid with the A100's 64 lanes and lower clock (its FMAs weigh more in the tiled step).
    assert (path("h100", 1, 1024), path("a100", 1, 1024)) == (3, 1)
    a100 = dict(clock_khz=1410000, cc_major=8, cc_minor=0, l2_bytes=40 * 1024 * 1024)
    assert path("NVIDIA A100-SXM4-80GB", 1, 1024, **a100) == 1
    # the clock the host reads alone moves it (an H100 clocked like an A100)
    assert path("NVIDIA H100 80GB HBM3", 1, 1024) == 3
    assert path("NVIDIA H100 80GB HBM3", 1, 1024, clock_khz=1410000) == 1
    assert cc.model_device("NVIDIA GH200 480GB") == "h200"
    with pytest.raises(ValueError, match="clock_khz, cc_major, cc_minor and l2_bytes must be >= 0"):
        path("h100", 1, 64, clock_khz=-1)


def test_a_float16_model_never_plans_the_tensor_cores():
    """The tensor-core tiles split the fp32 state into hi + lo of the 16-bit type, which keeps
    rnn.h's contract only with bfloat16's exponent range (plan_types.h mma_keeps_contract):
    a float16 model (mma 1) never gets them, with auto or forced (which falls back to gemm,
    like any forced path that cannot run), and the cost model says they do not fit."""
    d = _PLAN_DEVICES["h100"]
    bf16_took_mma = 0
    for backward in (False, True):
        for B, H in [(1, 512), (16, 256), (64, 512), (64, 1024), (8, 128), (256, 64)]:
            def plan(mma, force="auto"):
                return torch.ops.fastrnn._cuda_launch_plan(
                    B, H, 4, d["sm_count"], d["smem_per_block"], force=force, backward=backward,
                    smem_optin=d["smem_optin"], T=128, mma=mma)
            where = (backward, B, H)
            assert plan(1)[18] == 0, where
            assert plan(1, "tiled_mma")[0] == 2 and plan(1, "tiled_mma")[18] == 0, where
            forced = plan(2, "tiled_mma")
            assert forced[0] == 3 and forced[18] == 2, where
            bf16_took_mma += plan(2)[18] == 2
            f16 = {p["name"]: p for p in cc.predict("h100", 128, B, H, torch.float16, backward=backward)}
            bf16 = {p["name"]: p for p in cc.predict("h100", 128, B, H, torch.bfloat16, backward=backward)}
            assert not f16["tiled_mma"]["fits"] and bf16["tiled_mma"]["fits"], where
    assert bf16_took_mma > 0  # the same shapes do plan the tensor cores for bfloat16


# A GPU that is not a tabled one: an RTX 4090-like part (sm_89) with the H100's name-less
# estimates: 128 SMs, 99 KiB of opt-in shared memory per block (the H100: 227), 48 KiB without
# (minus 1 KiB static), and the H100's per-SM limits (the ones _cuda_launch_plan takes from its
# device). As host_device.h's fields: [sm_count, smem_per_block, smem_optin, smem_per_sm,
# regs_per_sm, max_threads_per_sm, max_blocks_per_sm, cooperative_launch, clock_khz, cc_major,
# cc_minor, l2_bytes, tiled_regs, kpt_regs x 5 (0: the model's)].
_OTHER_GPU_NAME = "NVIDIA GeForce RTX 4090"
_OTHER_GPU = dict(sm_count=128, smem_per_block=47 * 1024, smem_optin=98 * 1024, clock_khz=2520000,
                  cc_major=8, cc_minor=9, l2_bytes=72 * 1024 * 1024)
_OTHER_GPU_FIELDS = [128, 47 * 1024, 98 * 1024, 228 * 1024, 65536, 2048, 32, 1, 2520000, 8, 9,
                     72 * 1024 * 1024, 0, 0, 0, 0, 0, 0]


def test_predictions_plan_on_the_gpus_own_properties():
    """On a GPU the predictions (the measured choice's ranking, FASTRNN_CUDA_AUTOTUNE=0 and
    deterministic mode) must be of the plans make_plan launches there: the GPU's SMs and opt-in
    shared memory, not the tabled H100's 132 SMs and 227 KiB. Each persistent candidate's
    predicted plan is make_plan's, forced, on that device; and the tabled H100's prediction
    differs at these shapes (it was what the choice used before)."""
    differs = 0
    for dtype, elem, mma in ((torch.float32, 4, 0), (torch.bfloat16, 4, 2)):
        for backward in (False, True):
            for B, H in [(64, 1024), (64, 512), (16, 256), (8, 128), (256, 64), (16, 2048)]:
                preds = cc.predict(_OTHER_GPU_NAME, 128, B, H, dtype, backward=backward,
                                   gpu=_OTHER_GPU_FIELDS)
                tabled = cc.predict("h100", 128, B, H, dtype, backward=backward)
                for p, q in zip(preds, tabled):
                    if p["name"] not in ("single", "grid", "tiled", "tiled_mma"):
                        continue
                    plan = torch.ops.fastrnn._cuda_launch_plan(
                        B, H, elem, force=p["name"], backward=backward, T=128,
                        device=_OTHER_GPU_NAME, mma=mma, **_OTHER_GPU)
                    where = (dtype, backward, B, H, p, plan)
                    assert p["fits"] == (plan[0] != 2), where
                    if not p["fits"]:
                        continue
                    assert plan[1] == p["grid"], where
                    if p["name"] in ("tiled", "tiled_mma"):
                        assert (plan[9], plan[10]) == (p["rows_per_tile"], p["tile_cols"]), where
                    else:
                        assert (plan[3], plan[4], plan[5]) == (p["kpt"], p["ks"], p["rows_per_tile"]), where
                    differs += (p["fits"], p["grid"], p["tile_cols"]) != (q["fits"], q["grid"], q["tile_cols"])
    assert differs > 0


def test_the_choice_predicts_with_the_gpus_properties(monkeypatch):
    """The chooser asks the GPU for its properties (host_device; injected here) and ranks with
    them: its predictions are predict(gpu=...)'s, not the tabled H100's."""
    monkeypatch.setenv(cc.ENV_AUTOTUNE, "0")
    asked = []

    def props(device, dtype, backward):
        asked.append((dtype, backward))
        return _OTHER_GPU_FIELDS

    chooser = cc.Chooser(environment=lambda dev: (_OTHER_GPU_NAME, "drv", "ver"),
                         device_properties=props, cudnn_available=lambda: False)
    c = _call(T=128, B=64, I=8, H=1024)
    choice = chooser.choose(c)
    want = {p["name"]: p["total"] for p in cc.predict(_OTHER_GPU_NAME, 128, 64, 1024, torch.float32,
                                                      gpu=_OTHER_GPU_FIELDS)
            if p["fits"] and p["name"] != "cudnn"}
    assert choice.predicted_ns_per_step == pytest.approx(want) and asked == [(torch.float32, False)]
    with pytest.raises(ValueError, match="gpu must have 18 entries"):
        cc.predict(_OTHER_GPU_NAME, 8, 4, 16, torch.float32, gpu=[1, 2, 3])


def test_a_refused_tiled_plan_replans_with_the_measured_occupancy():
    """CudaTarget::plan (rnn_cuda.cpp): when the runtime's occupancy calculator refuses the
    model's tiled plan, it re-plans with the measured occupancy of every tiled configuration
    and runs the next best plan -- not straight to gemm. Here the measured occupancy refuses
    every block above the chosen plan's shared memory (occupancy_smem_limit); the re-plan is
    then exactly the plan of a device whose opt-in limit is that much."""
    d = _PLAN_DEVICES["h100"]
    replanned_tiled = 0
    for B, H in [(64, 1024), (64, 512), (16, 256), (256, 128), (16, 1024)]:
        def plan(**kw):
            return torch.ops.fastrnn._cuda_launch_plan(B, H, 4, d["sm_count"], d["smem_per_block"],
                                                       T=128, **kw)
        first = plan(smem_optin=d["smem_optin"])
        assert first[0] == 3, first  # tiled
        limit = first[6] - 1  # its block no longer fits
        again = plan(smem_optin=d["smem_optin"], occupancy_smem_limit=limit)
        where = (B, H, first, again)
        assert again[0] != 2 and again != first, where
        assert again[0] != 3 or again[6] <= limit, where
        if limit >= d["smem_per_block"]:  # else the default per-block limit still admits more
            assert again == plan(smem_optin=limit), where
            replanned_tiled += again[0] == 3
    assert replanned_tiled >= 2  # the next best tiled plan, where one fits


def test_packed_prediction_credits_the_live_rows():
    """Packed input, sorted lengths: the tiled step is predicted for the mean live rows per step
    (its blocks of finished rows skip the multiply) on the plan the host launches (planned for
    every row), cuDNN's per-step GEMM for the live rows too; unpacked, live_rows is ignored."""
    def preds(T, B, H, **kw):
        return {p["name"]: p for p in cc.predict("h100", T, B, H, torch.float32, **kw)}

    # B=1024, H=128: 256 blocks of 4 rows on 132 SMs (two per busy SM); a quarter of the rows
    # live on average keeps 64 blocks busy, one per SM: about half the FMA and load time.
    full, quarter = preds(100, 1024, 128, packed=True), preds(100, 1024, 128, packed=True,
                                                              live_rows=256.0)
    for k in ("grid", "rows_per_tile", "tile_cols"):
        assert full["tiled"][k] == quarter["tiled"][k]
    assert quarter["tiled"]["compute"] == pytest.approx(full["tiled"]["compute"] / 2)
    assert quarter["tiled"]["total"] < 0.6 * full["tiled"]["total"]
    assert quarter["tiled"]["barrier"] == full["tiled"]["barrier"]
    # B=64, H=1024: 128 blocks of 16 rows x 32 columns, staged; 2 live rows (mean): the first
    # block stages 2 rows instead of 16 (latency), and 4 row tiles -> 1 busy.
    a, b = preds(100, 64, 1024, packed=True), preds(100, 64, 1024, packed=True, live_rows=2.0)
    assert b["tiled"]["latency"] < a["tiled"]["latency"] and b["tiled"]["total"] < a["tiled"]["total"]
    assert b["cudnn"]["total"] < a["cudnn"]["total"]
    # One row per block, each on its own SM: the first row is live every step, nothing to gain.
    a, b = preds(100, 64, 128, packed=True), preds(100, 64, 128, packed=True, live_rows=16.0)
    assert a["tiled"]["rows_per_tile"] == 1 and b["tiled"]["total"] == a["tiled"]["total"]
    # not packed: every row runs
    assert preds(100, 1024, 128, live_rows=256.0)["tiled"]["total"] == full["tiled"]["total"]
    with pytest.raises(ValueError, match="live_rows must be in"):
        preds(100, 4, 128, packed=True, live_rows=5.0)


def test_packed_prediction_credits_the_live_rows_of_the_tensor_core_tiles():
    """The tensor-core tiles (a bfloat16 model) are credited like the FMA tiles: finished row
    tiles skip their step, a live block stages and reduces only its live rows; its mmas still
    run whole 16-row fragments."""
    def mma(T, B, H, **kw):
        return next(p for p in cc.predict("h100", T, B, H, torch.bfloat16, **kw)
                    if p["name"] == "tiled_mma")

    # B=4096, H=32: 256 blocks of 16 rows x 32 columns (one column tile: resident) on 132 SMs,
    # two waves; a quarter of the rows live keeps 64 blocks busy, one wave: half the mma time.
    full, quarter = mma(100, 4096, 32, packed=True), mma(100, 4096, 32, packed=True,
                                                         live_rows=1024.0)
    assert full["fits"] and (full["grid"], full["rows_per_tile"], full["tile_cols"]) == (256, 16, 32)
    assert (quarter["grid"], quarter["rows_per_tile"]) == (full["grid"], full["rows_per_tile"])
    assert quarter["compute"] == pytest.approx(full["compute"] / 2)
    assert quarter["barrier"] == full["barrier"] and quarter["total"] < full["total"]
    # B=64, H=1024: 128 blocks of 16 x 32, staged (grid sync); 2 live rows: the busy blocks
    # stage and reduce 2 rows instead of 16 (less latency and smem), the fragments stay whole.
    a, b = mma(100, 64, 1024, packed=True), mma(100, 64, 1024, packed=True, live_rows=2.0)
    assert a["grid_barrier"] and b["compute"] == a["compute"]
    assert b["latency"] < a["latency"] and b["smem"] < a["smem"] and b["total"] < a["total"]
    # not packed: every row runs; and no tensor-core tiles for a float32 model
    assert mma(100, 4096, 32, live_rows=1024.0)["total"] == full["total"]
    assert not next(p for p in cc.predict("h100", 100, 64, 1024, torch.float32)
                    if p["name"] == "tiled_mma")["fits"]


def test_mean_live_rows():
    T = 10
    assert cc.mean_live_rows(torch.tensor([10, 5, 5, 0]), T) == pytest.approx(2.0)
    assert cc.mean_live_rows(torch.tensor([30, 10]), T) == pytest.approx(2.0)  # past T: T
    assert cc.mean_live_rows(torch.tensor([3, 7]), T) == 0.0  # unsorted: every row multiplied
    assert cc.mean_live_rows(None, T) == 0.0


def test_the_choice_predicts_packed_calls_with_their_live_rows():
    lengths = torch.tensor([8, 6, 2, 0])
    c = _call(T=8, B=4, H=64, lengths=lengths)
    ranking, predicted = cc.Chooser(environment=lambda d: H100)._model_ranking(c, H100[0], True)
    want = {p["name"]: p["total"] for p in cc.predict("h100", 8, 4, 64, torch.float32, packed=True,
                                                      live_rows=2.0) if p["fits"]}
    assert predicted == pytest.approx(want)


def test_cost_model_monotone_and_sane():
    def total(name, T, B, H, dtype=torch.float32, device="h100", **kw):
        return next(p for p in cc.predict(device, T, B, H, dtype, **kw) if p["name"] == name)

    # more rows or more columns never make a step cheaper (per candidate, while it fits)
    for name in cc.CANDIDATES:
        for H in (64, 128, 256, 512, 1024):
            prev = 0.0
            for B in (1, 2, 4, 8, 16, 32, 64):
                p = total(name, 256, B, H)
                if p["fits"]:
                    assert p["total"] >= prev * (1 - 1e-9), (name, B, H)
                    prev = p["total"]
        for B in (1, 16, 64):
            prev = 0.0
            for H in (32, 64, 128, 256, 512, 1024, 2048):
                p = total(name, 256, B, H)
                if p["fits"] and name in ("gemm", "cudnn"):
                    assert p["total"] >= prev * (1 - 1e-9), (name, B, H)
                    prev = p["total"]
    # a longer sequence amortises the one launch of a persistent kernel
    assert total("grid", 1024, 16, 256)["launch"] < total("grid", 16, 16, 256)["launch"]
    # only the grid pays a grid barrier: its barrier term is larger than the single block's
    assert total("grid", 64, 8, 128)["barrier"] > total("single", 64, 8, 128)["barrier"]
    assert total("single", 64, 8, 128)["path"] == "resident"  # whole batch on chip
    assert total("single", 64, 8, 128, backward=True)["path"] == "single"  # no resident BPTT
    # the per-step GEMM paths pay two launches per step, the persistent ones one per sequence
    assert total("gemm", 256, 16, 256)["launch"] > 100 * total("grid", 256, 16, 256)["launch"]
    # an H100 (132 SMs at 128 FP32 lanes) computes a GEMM step faster than an A100
    assert total("gemm", 256, 64, 1024)["compute"] < total("gemm", 256, 64, 1024, device="a100")["compute"]
    # PyTorch asks cuDNN for its persistent small-H kernel only unpacked at H <= 384 (fwd)
    assert total("cudnn", 256, 16, 256)["barrier"] > 0
    assert total("cudnn", 256, 16, 256, packed=True)["barrier"] == 0
    assert total("cudnn", 256, 16, 512)["barrier"] == 0
    assert total("cudnn", 256, 16, 256, backward=True)["barrier"] > 0
    assert total("cudnn", 256, 16, 320, backward=True)["barrier"] == 0
    # bf16 cuDNN runs its GEMMs on tensor cores; fastrnn computes bf16 in fp32 (same cost)
    assert total("cudnn", 256, 64, 1024, torch.bfloat16)["compute"] < total("cudnn", 256, 64, 1024)["compute"]
    assert total("grid", 256, 64, 1024, torch.bfloat16)["total"] == total("grid", 256, 64, 1024)["total"]
    # tiled: one column tile (H <= 128) means no grid barrier and nothing staged from L2;
    # several column tiles pay both; the opt-in shared memory holds H = 1024's slices
    small, large = total("tiled", 256, 64, 128), total("tiled", 256, 64, 512)
    assert not small["grid_barrier"] and small["latency"] == 0
    assert small["barrier"] < total("grid", 256, 64, 128)["barrier"]
    assert large["grid_barrier"] and large["latency"] > 0 and large["barrier"] > small["barrier"]
    assert total("tiled", 128, 64, 1024)["fits"] and total("tiled", 128, 64, 1024)["grid"] > 100


def test_cost_model_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"device must be one of h100, h200, a100 \(or a GPU's "
                                         r"name with gpu\), got 'v100'"):
        cc.predict("v100", 8, 4, 16, torch.float32)
    with pytest.raises(ValueError, match="T, B and H must be positive"):
        cc.predict("h100", 8, 0, 16, torch.float32)
    with pytest.raises(ValueError, match="dtype must be"):
        cc.predict("h100", 8, 4, 16, torch.int32)
    assert cc.model_device("NVIDIA H100 80GB HBM3") == "h100"
    assert cc.model_device("NVIDIA H200") == "h200"
    assert cc.model_device("NVIDIA A100-SXM4-40GB") == "a100"
    assert cc.model_device("NVIDIA GeForce RTX 4090") == "h100"
    assert list(torch.ops.fastrnn._cuda_cost_devices()) == ["h100", "h200", "a100"]


# ---- the per-call path override drives the simulated CUDA kernels ------------------------------

def _sim_layer(c):
    return cuda_sim.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                c.lengths, c.reverse, c.nonlinearity)


def test_path_override_drives_cuda_sim(monkeypatch):
    # H=64 lets every path run: resident (single block), grid (4 blocks of 16 columns), tiled,
    # gemm.
    # float64: the simulated kernels and the reference agree to rounding (1e-12 relative).
    c = _call(T=2, B=2, I=3, H=64, dtype=torch.float64)
    ref = reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                None, False, "tanh")
    monkeypatch.setenv("FASTRNN_CUDA_PATH", "gemm")  # the override wins over the env var
    for path, recorded in (("single", "resident"), ("grid", "grid"), ("tiled", "tiled"),
                           ("gemm", "gemm"), ("auto", None)):
        with cc.forced_path(path):
            y = _sim_layer(c)
        plan = last_cuda_plan()
        assert plan["target"] == "cuda_sim" and plan["direction"] == "fwd"
        if recorded:
            assert plan["path"] == recorded, (path, plan)
        else:  # auto: the plan's own choice, not the env var's gemm
            assert plan["path"] != "gemm"
        torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    _sim_layer(c)  # the override is gone: FASTRNN_CUDA_PATH applies again
    assert last_cuda_plan()["path"] == "gemm"


def test_path_override_restores_on_error_and_rejects_bad_names():
    with pytest.raises(ValueError, match="path must be auto, single, grid, tiled, gemm or tiled_mma"):
        with cc.forced_path("fast"):
            pass
    with pytest.raises(ValueError, match="path must be"):
        torch.ops.fastrnn._set_cuda_path_override("fast")
    with pytest.raises(KeyError):
        with cc.forced_path("grid"):
            raise KeyError("inner")
    assert torch.ops.fastrnn._set_cuda_path_override("") == ""  # nothing was left set


# ---- the cuDNN candidate's wrapping of torch's RNN op (CPU RNN here) -----------------------------

@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, [6, 0, 3, 9, 1]])
@pytest.mark.parametrize("nonlinearity,bias", [("tanh", True), ("relu", False)])
def test_cudnn_candidate_has_fastrnns_contract(reverse, lengths, nonlinearity, bias):
    # torch's RNN op on the CPU (the same op that reaches cuDNN on a GPU) wrapped to
    # rnn_forward's contract: lengths 0 and beyond T, reverse inside each length, carried
    # state past the length. float64 against the reference: rounding-level agreement.
    lens = None if lengths is None else torch.tensor(lengths)
    c = _call(T=7, B=5, I=3, H=6, lengths=lens, reverse=reverse, grad=True, dtype=torch.float64,
              nonlinearity=nonlinearity, bias=bias)
    y = cc.run_candidate("cudnn", c)
    ref = reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                lens, reverse, nonlinearity)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    wrt = [t for t in c.tensors() if t is not None]
    g = torch.randn_like(y)
    got = torch.autograd.grad(y, wrt, g)
    want = torch.autograd.grad(ref, wrt, g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_backends_cuda_choice_reports_the_default_choosers_choices(monkeypatch):
    rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
    monkeypatch.setattr(cc, "default_chooser", rec.chooser())
    assert cuda_choice() == {}
    cc.default_chooser.choose(_call())
    (key, choice), = cuda_choice().items()
    assert key.startswith("NVIDIA H100 80GB HBM3|float32|T8|B4|I8|H64|fwd|dense|infer|measure")
    assert choice["candidate"] == "grid" and choice["source"] == "measured"


# ---- on a GPU ------------------------------------------------------------------------------------

needs_cuda_kernels = pytest.mark.skipif(
    not (torch.cuda.is_available() and fastrnn._ops.has_kernel("cuda")),
    reason="needs an NVIDIA GPU and fastrnn built with its CUDA kernels")


@needs_cuda_kernels
def test_gpu_measured_choice_matches_nn_rnn_and_reports():
    torch.manual_seed(0)
    ref = torch.nn.RNN(32, 256).cuda()
    model = fastrnn.RNN.from_torch(ref)
    x = torch.randn(64, 16, 32, device="cuda")
    y, h = model(x)
    y_ref, h_ref = ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)  # nn.RNN parity contract (fp32)
    choices = cuda_choice()
    assert choices and all(v["source"] in ("measured", "disk") for v in choices.values())
    assert all(v["candidate"] in cc.CANDIDATES and v["seconds"] for v in choices.values())


@needs_cuda_kernels
def test_gpu_deterministic_mode_is_bitwise_repeatable(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(0)
    model = fastrnn.RNN(32, 256).cuda()
    x = torch.randn(64, 16, 32, device="cuda", requires_grad=True)
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            y, _ = model(x)
            (gx,) = torch.autograd.grad(y.square().sum(), x)
            runs.append((y, gx))
    finally:
        torch.use_deterministic_algorithms(was)
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert all(v["candidate"] != "cudnn" for k, v in cuda_choice().items() if "float32" in k)


# ---- the documented predictions --------------------------------------------------------------

def test_readme_table_is_what_the_model_prints(capsys):
    # csrc/cuda/README.md holds `python -m fastrnn cost-model`'s table: regenerate it there
    # whenever cost_model.h changes (this fails until then).
    from pathlib import Path

    from fastrnn.__main__ import main

    assert main(["cost-model"]) == 0
    printed = capsys.readouterr().out
    table = printed.split("\n", 1)[1].strip()
    assert table.count("\n") == 2 + 7 * 2 * 2 - 1  # header, rule, 7 shapes x 2 dtypes x fwd/bwd
    readme = (Path(__file__).resolve().parents[1] / "csrc" / "cuda" / "README.md").read_text()
    assert table in readme
    assert main(["cost-model", "--device", "a100", "--dtype", "float32"]) == 0
    assert "100, 64, 128 packed | float32 | bwd" in capsys.readouterr().out


def test_forced_path_reaches_the_backward_recurrence(monkeypatch):
    # H=64, B=2: unforced, the backward plans a single block; a layer run through a forced
    # "grid" candidate must take the grid in its backward too (hooks on its autograd node),
    # and leave no override behind. float64: rounding-level agreement with the reference.
    c = _call(T=2, B=2, I=3, H=64, dtype=torch.float64, grad=True)
    wrt = [t for t in c.tensors()]
    ref = reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                None, False, "tanh")
    want = torch.autograd.grad(ref, wrt, torch.ones_like(ref))
    y = _sim_layer(c)
    torch.autograd.grad(y, wrt, torch.ones_like(y))
    auto_bwd = last_cuda_plan()
    assert auto_bwd["direction"] == "bwd" and auto_bwd["path"] != "grid"
    for path in ("grid", "gemm"):
        y = cc._run_fastrnn(path, c, forward=cuda_sim.rnn_forward)
        assert last_cuda_plan()["path"] == path
        got = torch.autograd.grad(y, wrt, torch.ones_like(y))
        plan = last_cuda_plan()
        assert (plan["direction"], plan["path"]) == ("bwd", path)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.ops.fastrnn._set_cuda_path_override("") == ""  # restored after the node ran


class _RaisesInBackward(torch.autograd.Function):
    """Identity whose backward raises after recording the path override it runs under."""
    seen: list[str] = []

    @staticmethod
    def forward(ctx, y):
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad):
        # Reading the override returns it and clears it: put it back, so only a leak shows.
        path = torch.ops.fastrnn._set_cuda_path_override("")
        torch.ops.fastrnn._set_cuda_path_override(path)
        _RaisesInBackward.seen.append(path)
        raise RuntimeError("planted failure inside the forced backward")


def test_forced_path_is_cleared_when_the_backward_raises():
    """A winner's backward that raises must not leave its path forced on the thread that ran
    it (here the caller's: CPU autograd runs on it), for the forward nor the backward."""
    c = _call(T=2, B=2, I=3, H=8, dtype=torch.float64, grad=True)

    def failing_forward(*args):
        return _RaisesInBackward.apply(cuda_sim.rnn_forward(*args))

    _RaisesInBackward.seen.clear()
    y = cc._run_fastrnn("grid", c, forward=failing_forward)
    assert torch.ops.fastrnn._set_cuda_path_override("") == ""  # the forward restored it
    with pytest.raises(RuntimeError, match="planted failure"):
        torch.autograd.grad(y, [c.weight_hh], torch.ones_like(y))
    assert _RaisesInBackward.seen == ["grid"]  # the failing node ran with the path forced
    assert torch.ops.fastrnn._set_cuda_path_override("") == ""  # and nothing is left set
    # a raise inside the forward: restored too
    with pytest.raises(RuntimeError, match="planted"):
        cc._run_fastrnn("tiled", c, forward=lambda *a: (_ for _ in ()).throw(RuntimeError("planted")))
    assert torch.ops.fastrnn._set_cuda_path_override("") == ""


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_cudnn_candidate_keeps_the_contract_for_any_length(reverse):
    """The cuDNN candidate (torch's RNN op, here on the CPU) against the reference for lengths
    <= 0 (never updated: y = h0), inside and past T -- rnn.h's 'any value is safe'."""
    c = _call(T=4, B=5, H=6, lengths=torch.tensor([3, -2, 0, 9, 4]), reverse=reverse, dtype=torch.float64)
    expected = reference.rnn_forward(c.input, c.hx, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh,
                                     c.lengths, reverse, "tanh")
    torch.testing.assert_close(cc._run_torch_rnn(c), expected, rtol=1e-10, atol=1e-10)


def test_disk_cache_survives_concurrent_writers(tmp_path, monkeypatch):
    """Threads measuring different shapes at once each write the file: no exception reaches
    the caller, and the file stays valid JSON."""
    import threading

    path = tmp_path / "choice.json"
    monkeypatch.setenv(cc.ENV_CACHE, str(path))
    errors = []

    def work(k):
        try:
            rec = Recorder({"single": 3e-3, "grid": 2e-3, "gemm": 5e-3, "cudnn": 4e-3})
            for j in range(5):
                rec.chooser().choose(_call(B=1 + k, T=2 ** (j + 1)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors
    assert json.loads(path.read_text())
