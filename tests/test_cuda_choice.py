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
    with pytest.raises(ValueError, match="device must be one of h100, h200, a100, got 'v100'"):
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
