"""The measured choice of how a layer runs on a GPU: fastrnn's paths or cuDNN, per shape bucket.

On the first call for a key (device name, dtype, shape bucket, direction / packed,
training), every candidate that can run is timed with CUDA events on the call's own
tensors -- fastrnn's persistent plans forced ``single`` (resident or staged), ``grid`` and
``tiled`` (batch x hidden tiles over all SMs),
the per-step cuBLAS path ``gemm``, and ``cudnn``: PyTorch's own RNN op (``torch._VF.rnn_*``,
the op nn.RNN calls, so ``torch.backends.cudnn.allow_tf32`` applies exactly as in nn.RNN)
-- and the fastest is kept for the process (and, with ``FASTRNN_CUDA_CHOICE_CACHE=<file>``,
on disk, keyed by device name, driver and fastrnn version).

* ``FASTRNN_CUDA_AUTOTUNE=0``: no timing; the cost model's choice (csrc/cuda/cost_model.h).
* ``torch.use_deterministic_algorithms(True)``: the cost model's choice among fastrnn's
  paths only (all deterministic: fixed-order reductions, no atomics), never cuDNN, never
  timed, so the choice and the results repeat bitwise.
* A refused cooperative launch (``cudaErrorCooperativeLaunchTooLarge``: the grid did not fit
  next to other work) drops that candidate and runs the next one instead of raising.

The forced path applies to the forward recurrence and to its backward recurrence (autograd
runs that on a device thread, which does not see the caller's per-thread override: the
backward sets it there itself, inside a try/finally, _ForcedPathLayer).

Shape buckets: H exactly (it decides the plan), T, B and the input size rounded up to a
power of two. ``fastrnn.backends.cuda_choice()`` reports the choices made. Under
torch.compile the layer calls the op directly (its own plan): the timing is eager-only.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import json
import os
import statistics
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from . import _op_glue, _ops

# The cost model's candidate order (cost_model.h Candidate); tiled_mma: the tiled family on
# tensor cores, bfloat16 models only (csrc/cuda/plan_types.h mma_keeps_contract).
CANDIDATES = ("single", "grid", "tiled", "gemm", "cudnn", "tiled_mma")
FASTRNN_PATHS = tuple(c for c in CANDIDATES if c != "cudnn")
ENV_AUTOTUNE = "FASTRNN_CUDA_AUTOTUNE"
ENV_CACHE = "FASTRNN_CUDA_CHOICE_CACHE"
_COST_FIELDS = ("candidate", "fits", "recorded_path", "grid", "kpt", "ks", "rows_per_tile",
                "tiles_per_step", "compute", "smem", "latency", "barrier", "launch", "total",
                "tile_cols", "grid_barrier")
_RECORDED = {0: "resident", 1: "single", 2: "grid", 3: "gemm", 4: "tiled", -1: "cudnn"}
_ELEM = {torch.float64: 8, torch.float32: 4, torch.float16: 2, torch.bfloat16: 2}
# A 16-bit model's type for the tensor-core tiles (launch_plan.h MmaType: bfloat16 only fits).
_MMA = {torch.float16: 1, torch.bfloat16: 2}


class LaunchRefused(RuntimeError):
    """A candidate's launch was refused by the driver (e.g. a cooperative grid too large)."""


def is_refusal(exc: BaseException) -> bool:
    """True for a refused launch: ours, or the CUDA runtime's cooperative-launch errors."""
    if isinstance(exc, LaunchRefused):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "cooperative launch" in text or "CooperativeLaunchTooLarge" in text)


# ---- per-call path override (csrc/cuda/path_override.h) ----------------------------------

@contextlib.contextmanager
def forced_path(path: str) -> Iterator[None]:
    """Runs fastrnn's CUDA / cuda_sim recurrences on this thread with ``path`` forced
    ("auto", "single", "grid", "tiled", "gemm" or "tiled_mma"), over FASTRNN_CUDA_PATH;
    restores the previous."""
    if path not in ("auto",) + FASTRNN_PATHS:
        raise ValueError("fastrnn: path must be auto, single, grid, tiled, gemm or tiled_mma, "
                         f"got {path!r}")
    previous = torch.ops.fastrnn._set_cuda_path_override(path)
    try:
        yield
    finally:
        torch.ops.fastrnn._set_cuda_path_override(previous)


# ---- the cost model --------------------------------------------------------------------

def model_device(device_name: str) -> str:
    """The cost model's device for a GPU name (the tabled GPU whose name it contains, any case;
    an unknown GPU is modelled as an H100): the rule make_plan applies on the GPU."""
    return torch.ops.fastrnn._cuda_model_device(device_name)


def mean_live_rows(lengths: Tensor | None, T: int) -> float:
    """The batch rows still running per step, averaged over the T steps (sum of min(length, T)
    over T), for lengths sorted non-increasing (PackedSequence order: the tiled kernel then
    multiplies only the live prefix); 0.0 (= every row) for unsorted or no lengths."""
    if lengths is None or lengths.numel() == 0 or T <= 0:
        return 0.0
    n = lengths.detach().clamp(0, T)  # [B]
    if bool((n[1:] > n[:-1]).any()):
        return 0.0
    return float(n.sum()) / T


def host_device(device: torch.device, dtype: torch.dtype, backward: bool) -> list[int] | None:
    """The GPU ``device`` as CudaTarget::plan plans on it (csrc/cuda/host_device.h fields: SMs,
    shared memory with and without opt-in, registers, the kernels' register counts, clock, L2,
    compute capability, cooperative launch), or None without a CUDA build or a CUDA device."""
    if device.type != "cuda" or not hasattr(torch.ops.fastrnn, "_cuda_host_device"):
        return None
    with torch.cuda.device(device):
        return list(torch.ops.fastrnn._cuda_host_device(8 if dtype == torch.float64 else 4,
                                                        backward))


def predict(device: str, T: int, B: int, H: int, dtype: torch.dtype, *, backward: bool = False,
            packed: bool = False, live_rows: float = 0.0,
            gpu: list[int] | None = None) -> list[dict]:
    """The cost model's prediction per candidate, ns per time step, with its breakdown.

    One dict per candidate of CANDIDATES: ``name``, ``fits``, ``path`` (what
    last_cuda_plan() would report: resident/single/grid/gemm, or cudnn), the plan's ``grid``,
    ``kpt``, ``ks``, ``rows_per_tile``, ``tiles_per_step`` (tiled: ``rows_per_tile`` x
    ``tile_cols`` per block, ``grid_barrier``), and ``compute`` / ``smem`` /
    ``latency`` / ``barrier`` / ``launch`` summing to ``total``. ``live_rows``: packed, the
    mean live rows per step (mean_live_rows; 0: all B). ``gpu``: the GPU's own properties
    (host_device) -- then ``device`` is its name, which only picks the estimates; without it
    ``device`` is a modelled GPU (h100, h200, a100). Unmeasured constants:
    csrc/cuda/cost_model.h.
    """
    if dtype not in _ELEM:
        raise ValueError(f"fastrnn: dtype must be float64, float32, float16 or bfloat16, got {dtype}")
    flat = torch.ops.fastrnn._cuda_cost_model(device, T, B, H, _ELEM[dtype], backward, packed,
                                              float(live_rows), _MMA.get(dtype, 0), gpu)
    n = len(_COST_FIELDS)
    out = []
    for i in range(0, len(flat), n):
        row = dict(zip(_COST_FIELDS, flat[i:i + n]))
        pred = {"name": CANDIDATES[int(row["candidate"])], "fits": bool(row["fits"]),
                "path": _RECORDED[int(row["recorded_path"])]}
        pred.update({k: int(row[k]) for k in ("grid", "kpt", "ks", "rows_per_tile", "tiles_per_step",
                                              "tile_cols")})
        pred["grid_barrier"] = bool(row["grid_barrier"])
        pred.update({k: row[k] for k in ("compute", "smem", "latency", "barrier", "launch", "total")})
        out.append(pred)
    return out


# ---- keys ------------------------------------------------------------------------------

def _bucket(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class Key:
    device: str  # torch.cuda.get_device_name
    dtype: str
    T: int  # buckets: next power of two
    B: int
    I: int
    H: int  # exact
    reverse: bool
    packed: bool
    training: bool
    mode: str  # "measure" | "model" (FASTRNN_CUDA_AUTOTUNE=0) | "deterministic"

    def text(self) -> str:
        return (f"{self.device}|{self.dtype}|T{self.T}|B{self.B}|I{self.I}|H{self.H}|"
                f"{'rev' if self.reverse else 'fwd'}|{'packed' if self.packed else 'dense'}|"
                f"{'train' if self.training else 'infer'}|{self.mode}")


@dataclasses.dataclass
class LayerCall:
    """One layer, one direction: rnn_forward's arguments (csrc/rnn.h)."""
    input: Tensor  # [T, B, I]
    hx: Tensor  # [B, H]
    weight_ih: Tensor  # [H, I]
    weight_hh: Tensor  # [H, H]
    bias_ih: Tensor | None
    bias_hh: Tensor | None
    lengths: Tensor | None  # [B] int64
    reverse: bool
    nonlinearity: str

    @property
    def training(self) -> bool:
        return _op_glue.wants_grad(*self.tensors())

    def tensors(self) -> tuple:
        return (self.input, self.hx, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def key(self, device_name: str, mode: str | None = None) -> Key:
        T, B, I = self.input.shape
        return Key(device_name, str(self.input.dtype).replace("torch.", ""), _bucket(T), _bucket(B),
                   _bucket(I), int(self.weight_hh.shape[0]), bool(self.reverse),
                   self.lengths is not None, self.training, mode or current_mode())


def current_mode() -> str:
    """How a choice is made now: never measured in deterministic mode or with AUTOTUNE=0."""
    if torch.are_deterministic_algorithms_enabled():
        return "deterministic"
    if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
        return "model"  # no timing inside a CUDA graph capture
    return "model" if os.environ.get(ENV_AUTOTUNE, "1").strip() == "0" else "measure"


# ---- running a candidate -----------------------------------------------------------------

def _run_fastrnn(path: str, c: LayerCall, forward: Callable[..., Tensor] = _ops.rnn_forward) -> Tensor:
    """The layer through fastrnn's op (``forward``: the native op, or cuda_sim's) with ``path``
    forced for its forward recurrence and for its backward (_ForcedPathLayer); the per-thread
    override is restored on every exit, a raise included."""
    args = (c.lengths, c.reverse, c.nonlinearity)
    # Under torch.func the op runs its own Function (_op_glue) that functorch sees; an
    # old-style Function around it would not be: the forward alone is forced there.
    if not c.training or torch._C._are_functorch_transforms_active():
        with forced_path(path):
            return forward(*c.tensors(), *args)  # [T, B, H]
    return _ForcedPathLayer.apply(path, forward, args, *c.tensors())


class _ForcedPathLayer(torch.autograd.Function):
    """``forward`` with ``path`` forced, differentiable, the backward forced the same way.

    Autograd runs a node's backward on its own thread (a device thread on CUDA), which does
    not see the caller's per-thread override, and no autograd hook runs when a node raises,
    so hooks that set and restore the override would leave it set on that thread after a
    failed backward. Instead the op runs on an inner graph (detached inputs) and this node's
    backward differentiates it inside ``forced_path``: set and restore in one try/finally, on
    the thread that runs it."""

    @staticmethod
    def forward(ctx, path, forward, args, *tensors):  # -> [T, B, H]
        with torch.enable_grad():
            inner = [None if t is None else t.detach().requires_grad_(t.requires_grad)
                     for t in tensors]
            with forced_path(path):
                y = forward(*inner, *args)  # [T, B, H], on the inner graph
        ctx.path, ctx.y, ctx.inner = path, y, inner
        return y.detach()

    @staticmethod
    def backward(ctx, grad_y):
        wrt = [t for t in ctx.inner if t is not None and t.requires_grad]
        with forced_path(ctx.path):
            # retain_graph: the inner graph lives as long as this node (a second backward
            # with retain_graph=True needs it); create_graph reaches the op's own rule for
            # second derivatives.
            grads = iter(torch.autograd.grad(ctx.y, wrt, grad_y, retain_graph=True,
                                             create_graph=torch.is_grad_enabled(),
                                             allow_unused=True))
        return (None, None, None) + tuple(
            next(grads) if t is not None and t.requires_grad else None for t in ctx.inner)


def _run_cudnn(c: LayerCall) -> Tensor:  # [T, B, H]
    """The layer through torch's RNN op (cuDNN on a GPU), with fastrnn's contract: steps past
    a sequence's length carry the state (forward: h_n; reverse: h0), as in rnn.h.

    The weights are the layer's own tensors, not one flattened cuDNN buffer, so cuDNN copies
    them per call (what nn.RNN does with non-flattened weights; its warning is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="RNN module weights are not part")
        return _run_torch_rnn(c)


def _run_torch_rnn(c: LayerCall) -> Tensor:  # [T, B, H]
    fn = torch._VF.rnn_tanh if c.nonlinearity == "tanh" else torch._VF.rnn_relu
    params = [c.weight_ih, c.weight_hh] + ([c.bias_ih, c.bias_hh] if c.bias_ih is not None else [])
    has_bias = c.bias_ih is not None
    x, h0 = c.input, c.hx.unsqueeze(0)  # [T, B, I], [1, B, H]
    T, B = x.shape[0], x.shape[1]
    if c.lengths is None:
        if c.reverse:
            x = x.flip(0)
        y, _ = fn(x, h0, params, has_bias, 1, 0.0, False, False, False)
        return y.flip(0) if c.reverse else y
    # Padded with lengths: reverse each sequence inside its length, run packed, undo. Lengths
    # past T count as T; a length <= 0 (never updated: y = h0) is packed as 1 and masked.
    t = torch.arange(T, device=x.device).unsqueeze(1)  # [T, 1]
    lengths = c.lengths.to(x.device).clamp(min=0, max=T)  # [B]
    active = t < lengths.unsqueeze(0)  # [T, B]
    if c.reverse:
        src = torch.where(active, lengths.unsqueeze(0) - 1 - t, t)  # [T, B], an involution
        x = x.gather(0, src.unsqueeze(2).expand_as(x))
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths.clamp(min=1).cpu(),
                                                     enforce_sorted=False)
    h0p = h0.index_select(1, packed.sorted_indices)
    yp, hn = fn(packed.data, packed.batch_sizes, h0p, params, has_bias, 1, 0.0, False, False)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(
        torch.nn.utils.rnn.PackedSequence(yp, packed.batch_sizes, packed.sorted_indices,
                                          packed.unsorted_indices), total_length=T)  # [T, B, H]
    if c.reverse:
        y = y.gather(0, src.unsqueeze(2).expand_as(y))
        return torch.where(active.unsqueeze(2), y, c.hx.unsqueeze(0))
    hn = hn[0].index_select(0, packed.unsorted_indices)  # [B, H]
    carry = torch.where((lengths == 0).unsqueeze(1), c.hx, hn)  # [B, H]
    return torch.where(active.unsqueeze(2), y, carry.unsqueeze(0))


def run_candidate(name: str, c: LayerCall) -> Tensor:
    """Runs one layer with the named candidate; differentiable."""
    return _run_cudnn(c) if name == "cudnn" else _run_fastrnn(name, c)


def _trial(runner: Callable[[str, LayerCall], Tensor], name: str, c: LayerCall) -> Callable[[], None]:
    """One timed repetition: the forward, and with training also the backward -- on detached
    copies, so the timing never writes .grad of the caller's tensors."""
    leaves = [None if t is None else t.detach().requires_grad_(t.requires_grad) for t in c.tensors()]
    trial_call = dataclasses.replace(c, **dict(zip(
        ("input", "hx", "weight_ih", "weight_hh", "bias_ih", "bias_hh"), leaves)))
    training = c.training
    wrt = [t for t in leaves if t is not None and t.requires_grad]

    def once() -> None:
        with torch.set_grad_enabled(training):
            y = runner(name, trial_call)
            if training:
                torch.autograd.grad(y, wrt, torch.ones_like(y))
    return once


def cuda_event_timer(fn: Callable[[], None], repeat: int = 3) -> float:
    """Median seconds per call of fn on the current stream, by CUDA events (after a warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return statistics.median(times)


# ---- environment (device, driver, version) -----------------------------------------------

def _driver_version() -> str:
    try:
        v = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v)) == 0:
            return str(v.value)
    except OSError:
        pass
    return "unknown"


@functools.lru_cache(maxsize=None)
def gpu_environment(device: torch.device) -> tuple[str, str, str]:
    """(device name, driver version, fastrnn version), read once per device."""
    from . import __version__
    return torch.cuda.get_device_name(device), _driver_version(), __version__


# ---- the choice ----------------------------------------------------------------------------

@dataclasses.dataclass
class Choice:
    candidate: str  # "single" | "grid" | "tiled" | "gemm" | "cudnn"
    source: str  # "measured" | "disk" | "model" | "deterministic"
    ranking: list[str]  # the candidates, best first (fallback order on a refused launch)
    seconds: dict[str, float]  # measured seconds per call (empty unless measured)
    predicted_ns_per_step: dict[str, float]  # the cost model's totals (fitting candidates)
    refused: list[str]


class Chooser:
    """Chooses and runs a layer's candidate; one per process (``default_chooser``), and
    fresh ones in tests, with an injected timer, runner and environment."""

    def __init__(self, *, timer: Callable[[Callable[[], None]], float] | None = None,
                 runner: Callable[[str, LayerCall], Tensor] | None = None,
                 environment: Callable[[torch.device], tuple[str, str, str]] | None = None,
                 cudnn_available: Callable[[], bool] | None = None,
                 device_properties: Callable[[torch.device, torch.dtype, bool], list[int] | None]
                 | None = None) -> None:
        self.timer = timer or cuda_event_timer
        self.runner = runner or run_candidate
        self.environment = environment or gpu_environment
        self.cudnn_available = cudnn_available or (
            lambda: torch.backends.cudnn.enabled and torch.backends.cudnn.is_available())
        # The GPU as the plan sees it (host_device), for predictions of what would launch.
        self.device_properties = device_properties or host_device
        self.choices: dict[Key, Choice] = {}
        self._lock = threading.Lock()

    # The model's ranking of the candidates that fit (and may run), best first, with their
    # predicted ns per step (forward, plus backward when training; fitting both ways).
    def _model_ranking(self, c: LayerCall, device_name: str, allow_cudnn: bool) -> tuple[list[str], dict]:
        T, B, _ = c.input.shape
        H = c.weight_hh.shape[0]
        live = mean_live_rows(c.lengths, T)
        total = {name: 0.0 for name in CANDIDATES if name != "cudnn" or allow_cudnn}
        for backward in ((False, True) if c.training else (False,)):
            # On a GPU its own properties (the plan CudaTarget::plan launches), the tabled
            # GPU's estimates; elsewhere the tabled GPU whole.
            gpu = self.device_properties(c.input.device, c.input.dtype, backward)
            dev = device_name if gpu is not None else model_device(device_name)
            for p in predict(dev, T, B, H, c.input.dtype, backward=backward,
                             packed=c.lengths is not None, live_rows=live, gpu=gpu):
                if p["name"] in total:
                    if p["fits"]:
                        total[p["name"]] += p["total"]
                    else:
                        del total[p["name"]]
        return sorted(total, key=lambda k: (total[k], CANDIDATES.index(k))), total

    def choose(self, c: LayerCall) -> Choice:
        name, driver, version = self.environment(c.input.device)
        key = c.key(name)
        with self._lock:
            if key in self.choices:
                return self.choices[key]
        allow_cudnn = self.cudnn_available() and key.mode != "deterministic"
        ranking, predicted = self._model_ranking(c, name, allow_cudnn)
        if key.mode != "measure":
            choice = Choice(ranking[0], key.mode, ranking, {}, predicted, [])
        else:
            choice = self._from_disk(key, driver, version, predicted) or self._measure(c, ranking, predicted)
            self._to_disk(key, driver, version, choice)
        with self._lock:
            return self.choices.setdefault(key, choice)

    def _measure(self, c: LayerCall, ranking: list[str], predicted: dict) -> Choice:
        seconds: dict[str, float] = {}
        refused: list[str] = []
        for name in ranking:
            try:
                seconds[name] = self.timer(_trial(self.runner, name, c))
            except RuntimeError as exc:
                if not is_refusal(exc):
                    raise
                refused.append(name)
        if not seconds:
            raise RuntimeError(f"fastrnn: every CUDA candidate was refused for this layer: {refused}")
        order = sorted(seconds, key=lambda k: (seconds[k], ranking.index(k)))
        return Choice(order[0], "measured", order, seconds, predicted, refused)

    def run(self, c: LayerCall) -> Tensor:
        """The layer through its chosen candidate; a refused launch moves to the next one."""
        choice = self.choose(c)
        while True:
            try:
                return self.runner(choice.candidate, c)
            except RuntimeError as exc:
                if not is_refusal(exc) or len(choice.ranking) < 2:
                    raise
                with self._lock:
                    choice.refused.append(choice.candidate)
                    choice.ranking = [n for n in choice.ranking if n != choice.candidate]
                    choice.candidate = choice.ranking[0]

    # ---- disk cache (FASTRNN_CUDA_CHOICE_CACHE) ----
    @staticmethod
    def _disk_key(key: Key, driver: str, version: str) -> str:
        return f"{key.text()}|driver {driver}|fastrnn {version}"

    def _from_disk(self, key: Key, driver: str, version: str, predicted: dict) -> Choice | None:
        path = os.environ.get(ENV_CACHE)
        if not path or not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                entry = json.load(f).get(self._disk_key(key, driver, version))
        except (OSError, ValueError):
            return None  # an unreadable cache is a miss, never an error
        if not entry or entry.get("candidate") not in CANDIDATES:
            return None
        return Choice(entry["candidate"], "disk", list(entry.get("ranking", [entry["candidate"]])),
                      dict(entry.get("seconds", {})), predicted, [])

    def _to_disk(self, key: Key, driver: str, version: str, choice: Choice) -> None:
        path = os.environ.get(ENV_CACHE)
        if not path or choice.source != "measured":
            return
        data = {}
        if os.path.exists(path):
            try:
                with open(path) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = {}
        data[self._disk_key(key, driver, version)] = {
            "candidate": choice.candidate, "ranking": choice.ranking, "seconds": choice.seconds}
        # A private temp file, then an atomic rename: threads and processes writing at once
        # never interleave; the last rename wins (an entry it lacks is measured again later).
        # The file is an optional cache: failing to write it must not fail the user's forward.
        try:
            fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                       dir=os.path.dirname(os.path.abspath(path)))
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except OSError as exc:
            warnings.warn(f"fastrnn: could not write the CUDA choice cache {path!r}: {exc}")


default_chooser = Chooser()


def rnn_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths, reverse, nonlinearity):
    """rnn_forward's contract (csrc/rnn.h) on a CUDA device, through the chosen candidate."""
    out = _op_glue.forward_mode_call(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, lengths,
                                     reverse, nonlinearity)
    if out is not None:  # forward-mode AD: no candidate has a jvp
        return out
    return default_chooser.run(LayerCall(input, hx, weight_ih, weight_hh, bias_ih, bias_hh,
                                         lengths, bool(reverse), nonlinearity))
