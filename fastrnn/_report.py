"""What ``python -m fastrnn`` measures: environment, backends, parity with nn.RNN, speed.

Every function returns plain data (dicts, lists) so the same results feed the printed
tables, the ``--json`` file and the ``--plot`` figure. ``fastrnn/__main__.py`` only
parses arguments and calls these.
"""
from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from . import __version__, _ops, backends, functional
from .modules import RNN

BACKEND_NAMES = ("native", "triton", "reference")
BASELINE = "nn.RNN"

# Pass/fail bound for parity: max |fastrnn - nn.RNN| / max |nn.RNN| over every output or
# gradient tensor. Gradients sum T*B products, so fp32 is allowed a little more than 1e-5.
PARITY_TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass(frozen=True)
class Shape:
    T: int  # sequence length
    B: int  # batch
    I: int  # input features  # noqa: E741
    H: int  # hidden features

    def __str__(self) -> str:
        return f"{self.T},{self.B},{self.I},{self.H}"


# Speed grids: a sweep over the hidden size (input size = hidden size) at a fixed T and B,
# so the plot reads as "speedup vs hidden size".
DEFAULT_T_B = {"cpu": (128, 32), "cuda": (256, 64)}
DEFAULT_HIDDEN = {"cpu": (32, 64, 128, 256, 512, 1024), "cuda": (64, 128, 256, 512, 1024, 2048)}
QUICK_T_B = {"cpu": (64, 16), "cuda": (128, 32)}
QUICK_HIDDEN = {"cpu": (32, 128, 256), "cuda": (64, 256, 1024)}
# Parity shapes: odd sizes so transposes and tails show; the interpreter gets a tiny one.
PARITY_SHAPE = Shape(23, 5, 19, 33)
PARITY_SHAPE_INTERPRETER = Shape(5, 3, 6, 8)


def default_grid(device_type: str, quick: bool, T=None, B=None, I=None, hidden=None) -> list[Shape]:  # noqa: E741
    """The default sweep for a device, with any of T, B, I, hidden (a list) overridden."""
    t0, b0 = (QUICK_T_B if quick else DEFAULT_T_B)[device_type]
    hs = hidden or (QUICK_HIDDEN if quick else DEFAULT_HIDDEN)[device_type]
    return [Shape(T or t0, B or b0, I or h, h) for h in hs]


# ----------------------------------------------------------------------------- environment
def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what platform knows; the one place it is read
    (benchmarks record it through here too)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict:
    env = {
        "fastrnn": __version__,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "cuda": None,
    }
    if torch.cuda.is_available():
        env["cuda"] = {
            "runtime": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "devices": [
                {"index": i, "name": torch.cuda.get_device_name(i),
                 "capability": ".".join(map(str, torch.cuda.get_device_capability(i)))}
                for i in range(torch.cuda.device_count())
            ],
        }
    return env


def backend_status(device: torch.device) -> list[dict]:
    """For each fastrnn backend: can it run on ``device``, and how (``mode``)?"""
    out = []
    native = _ops.has_kernel(device.type)
    out.append({"name": "native", "available": native,
                "mode": ("C++" if device.type == "cpu" else "CUDA") if native else None,
                "note": "" if native else f"fastrnn was built without {device.type.upper()} kernels"})
    out.append(backends.triton_status(device.type))
    out.append({"name": "reference", "available": True, "mode": "PyTorch loop",
                "note": "the executable spec (slow by design)"})
    return out


# ----------------------------------------------------------------------------- parity
@contextmanager
def _exact_fp32():
    """nn.RNN on GPU may run cuDNN in TF32; parity compares full-precision fp32 math."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _errors(actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> tuple[float, float]:
    """(max abs error, max over tensors of max abs error / max |expected|)."""
    abs_err = rel_err = 0.0
    for a, e in zip(actual, expected):
        if a is None or e is None:
            if a is not e:
                return float("inf"), float("inf")
            continue
        if a.shape != e.shape:
            return float("inf"), float("inf")
        a, e = a.double(), e.double()
        err = (a - e).abs().max().item() if e.numel() else 0.0
        scale = e.abs().max().item() if e.numel() else 0.0
        if not math.isfinite(err):  # NaN would slip through max(); a NaN or inf is a failure
            err = float("inf")
        abs_err = max(abs_err, err)
        rel_err = max(rel_err, err / scale if scale > 0 else err)
    return abs_err, rel_err


def _run_model(model: nn.Module, x, h0, lengths, params, seed: int):
    """Outputs and gradients (w.r.t. x, h0 and params) of a loss that weighs each output differently."""
    inp = pack_padded_sequence(x, lengths, enforce_sorted=False) if lengths is not None else x
    out, h_n = model(inp, h0)
    if lengths is not None:
        out = out.data  # the packed rows: padding is not part of the result
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device, t.dtype) for t in (out, h_n)]
    loss = (out * weights[0]).sum() + (h_n * weights[1]).sum()
    grads = torch.autograd.grad(loss, [x, h0, *params])
    return [out.detach(), h_n.detach()], list(grads)


def parity(backend: str, shape: Shape, *, device, dtype, num_layers: int = 2, bidirectional: bool = True,
           packed: bool = False, seed: int = 0) -> dict:
    """One backend against torch.nn.RNN with the same weights: outputs and gradients."""
    row = {"backend": backend, "shape": str(shape), "num_layers": num_layers, "bidirectional": bidirectional,
           "packed": packed, "dtype": str(dtype).replace("torch.", ""), "tolerance": PARITY_TOL[dtype]}
    torch.manual_seed(seed)
    ref = nn.RNN(shape.I, shape.H, num_layers, bidirectional=bidirectional, device=device, dtype=dtype)
    twin = RNN.from_torch(ref, backend=backend)  # shares ref's Parameters
    params = list(ref.parameters())
    D = 2 if bidirectional else 1
    x = torch.randn(shape.T, shape.B, shape.I, device=device, dtype=dtype, requires_grad=True)
    h0 = torch.randn(num_layers * D, shape.B, shape.H, device=device, dtype=dtype, requires_grad=True)
    lengths = None
    if packed:  # random lengths in [1, T], the longest = T; lengths stay on the CPU
        lengths = torch.randint(1, shape.T + 1, (shape.B,), generator=torch.Generator().manual_seed(seed))
        lengths[0] = shape.T
    try:
        with _exact_fp32():
            out_e, grad_e = _run_model(ref, x, h0, lengths, params, seed + 1)
            out_a, grad_a = _run_model(twin, x, h0, lengths, params, seed + 1)
    except Exception as exc:  # a backend that raises is reported, not fatal to the report
        row.update(error=f"{type(exc).__name__}: {exc}", ok=False)
        return row
    row["output_abs"], row["output_rel"] = _errors(out_a, out_e)
    row["grad_abs"], row["grad_rel"] = _errors(grad_a, grad_e)
    row["ok"] = max(row["output_rel"], row["grad_rel"]) <= row["tolerance"]
    return row


# ----------------------------------------------------------------------------- speed
def flops(shape: Shape, num_layers: int, bidirectional: bool, mode: str) -> float:
    """Multiply-adds x 2 of the GEMMs; backward does two GEMMs per forward GEMM (dx/dh and dW)."""
    D = 2 if bidirectional else 1
    total = 0.0
    for layer in range(num_layers):
        layer_in = shape.I if layer == 0 else D * shape.H
        total += D * 2.0 * shape.T * shape.B * shape.H * (layer_in + shape.H)
    return total * (3 if mode == "training" else 1)


def _bench_fn(impl: str, shape: Shape, mode: str, *, device, dtype, num_layers, bidirectional, seed) -> Callable:
    torch.manual_seed(seed)
    ref = nn.RNN(shape.I, shape.H, num_layers, bidirectional=bidirectional, device=device, dtype=dtype)
    model = ref if impl == BASELINE else RNN.from_torch(ref, backend=impl)
    x = torch.randn(shape.T, shape.B, shape.I, device=device, dtype=dtype)
    if mode == "inference":
        model.eval()

        def run():
            with torch.no_grad():
                model(x)
        return run
    # Training step without the optimizer: forward, then gradients of input and weights.
    x.requires_grad_(True)
    params = list(ref.parameters())
    D = 2 if bidirectional else 1
    grad_out = torch.randn(shape.T, shape.B, D * shape.H, device=device, dtype=dtype)

    def run():
        out, _ = model(x)
        torch.autograd.grad(out, [x, *params], grad_out)
    return run


def time_fn(fn: Callable, min_run_time: float, device: torch.device) -> tuple[float, int, float]:
    """(median seconds per call, calls measured, fastest call), after warm-up calls.

    The warm-up absorbs one-time costs: lazy initialisation, autograd threads, kernel compiles.

    On a GPU each timed block holds enough calls to last about a millisecond, so the
    synchronisation around a block does not dominate small kernels.
    """
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    fn()
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    per_call = time.perf_counter() - start
    block = max(1, int(1e-3 / per_call)) if device.type == "cuda" else 1
    times: list[float] = []
    deadline = time.perf_counter() + min_run_time
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < 1000):
        sync()
        t = time.perf_counter()
        for _ in range(block):
            fn()
        sync()
        times.append((time.perf_counter() - t) / block)
    return statistics.median(times), len(times) * block, min(times)


def speed(shapes: Sequence[Shape], backends: Sequence[str], *, device, dtype, num_layers: int = 1,
          bidirectional: bool = False, modes=("inference", "training"), min_run_time: float = 0.2,
          seed: int = 0, progress: bool = True) -> list[dict]:
    """Median time of nn.RNN and each backend per shape and mode; speedup is nn.RNN's time / ours."""
    jobs = [(s, m, impl) for s in shapes for m in modes for impl in (BASELINE, *backends)]
    rows: list[dict] = []
    baseline: dict[tuple, float] = {}
    for shape, mode, impl in _progress(jobs, progress):
        row = {"shape": str(shape), "T": shape.T, "B": shape.B, "I": shape.I, "H": shape.H, "mode": mode,
               "backend": impl, "num_layers": num_layers, "bidirectional": bidirectional}
        try:
            fn = _bench_fn(impl, shape, mode, device=device, dtype=dtype, num_layers=num_layers,
                           bidirectional=bidirectional, seed=seed)
            t, n, fastest = time_fn(fn, min_run_time, torch.device(device))
        except Exception as exc:
            row.update(error=f"{type(exc).__name__}: {exc}", median_ms=None, speedup=None, gflops=None)
            rows.append(row)
            continue
        if impl == BASELINE:
            baseline[(shape, mode)] = t
        base = baseline.get((shape, mode))
        row.update(median_ms=t * 1e3, min_ms=fastest * 1e3, runs=n, speedup=(base / t) if base else None,
                   gflops=flops(shape, num_layers, bidirectional, mode) / t / 1e9)
        rows.append(row)
    return rows


def _progress(jobs, enabled: bool):
    if not enabled:
        return jobs
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional (pip install fastrnn[cli]); run without a bar
        return jobs

    bar = tqdm(jobs, desc="speed", unit="run", file=sys.stderr, leave=False, dynamic_ncols=True)

    def labelled():
        for shape, mode, impl in bar:
            bar.set_postfix_str(f"{shape} {mode} {impl}")
            yield shape, mode, impl
    return labelled()


# ----------------------------------------------------------------------------- output
def format_table(headers: Sequence[str], rows: Sequence[Sequence], aligns: str | None = None) -> str:
    """A plain-text table; ``aligns`` holds one of '<' '>' per column (default: numbers right)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    aligns = aligns or "<" * len(headers)
    line = lambda vals: "  ".join(f"{v:{a}{w}}" for v, a, w in zip(vals, aligns, widths))  # noqa: E731
    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def environment_text(env: dict, backends_by_device: dict[str, Sequence[dict]]) -> str:
    lines = [f"fastrnn {env['fastrnn']}  torch {env['torch']}  triton {env['triton'] or 'not installed'}"
             f"  python {env['python']}",
             f"CPU: {env['cpu']} ({env['cpu_count']} logical cores, torch uses {env['threads']} threads)"]
    if env["cuda"]:
        for d in env["cuda"]["devices"]:
            lines.append(f"CUDA {d['index']}: {d['name']} (sm_{d['capability'].replace('.', '')}), "
                         f"CUDA {env['cuda']['runtime']}, cuDNN {env['cuda']['cudnn']}")
    else:
        lines.append("CUDA: no device")
    for dev, backends in backends_by_device.items():
        lines.append(f"Backends on {dev}:")
        for b in backends:
            state = f"yes ({b['mode']})" if b["available"] else "no"
            lines.append(f"  {b['name']:<10} {state:<20} {b['note']}".rstrip())
    lines.append(f"Device under test: {env['device']}")
    return "\n".join(lines)


def parity_text(rows: Sequence[dict]) -> str:
    body = []
    for r in rows:
        config = f"{r['shape']} L{r['num_layers']}" + (" bi" if r["bidirectional"] else "") + (
            " packed" if r["packed"] else "")
        if "error" in r:
            body.append([r["backend"], config, r["dtype"], "error", "", "", "", r["error"][:60]])
            continue
        body.append([r["backend"], config, r["dtype"], _fmt(r["output_abs"], ".1e"), _fmt(r["output_rel"], ".1e"),
                     _fmt(r["grad_abs"], ".1e"), _fmt(r["grad_rel"], ".1e"),
                     ("ok" if r["ok"] else "FAIL") + f" (rel <= {r['tolerance']:g})"])
    headers = ["backend", "T,B,I,H config", "dtype", "out abs", "out rel", "grad abs", "grad rel", "verdict"]
    return format_table(headers, body, "<<<>>>><")


def speed_text(rows: Sequence[dict], baseline_label: str) -> str:
    body = []
    for r in rows:
        name = baseline_label if r["backend"] == BASELINE else r["backend"]
        if r.get("error"):
            body.append([r["shape"], r["mode"], name, "error", "", "", r["error"][:60]])
            continue
        body.append([r["shape"], r["mode"], name, _fmt(r["median_ms"], ".3f"),
                     _fmt(r["speedup"], ".2f") + "x" if r["speedup"] is not None else "-",
                     _fmt(r["gflops"], ".1f"), ""])
    headers = ["T,B,I,H", "mode", "backend", "median ms", "vs nn.RNN", "GFLOP/s", ""]
    return format_table(headers, body, "<<<>>><")


def plot(rows: Sequence[dict], path: str, title: str, baseline_label: str) -> None:
    """PNG: speedup over nn.RNN vs hidden size, one line per backend, inference and training side by side."""
    import matplotlib  # lazily: only --plot needs it (pip install matplotlib)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in ("inference", "training") if any(r["mode"] == m for r in rows)]
    backends = [b for b in dict.fromkeys(r["backend"] for r in rows) if b != BASELINE]
    fig, axes = plt.subplots(1, len(modes), figsize=(5.5 * len(modes), 4.2), squeeze=False, sharey=True)
    for ax, mode in zip(axes[0], modes):
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1.2, label=f"{baseline_label} = 1")
        for i, b in enumerate(backends):
            pts = sorted((r["H"], r["speedup"]) for r in rows
                         if r["mode"] == mode and r["backend"] == b and r.get("speedup"))
            if pts:
                line, = ax.plot(*zip(*pts), marker="o", linewidth=1.8, label=b)
                for h, v in pts:  # labels above for even backends, below for odd: close lines stay legible
                    ax.annotate(f"{v:.2f}x" if v < 10 else f"{v:.0f}x", (h, v), textcoords="offset points",
                                xytext=(0, 6 if i % 2 == 0 else -12), ha="center", fontsize=7,
                                color=line.get_color())
        hs = sorted({r["H"] for r in rows})
        ax.set_xscale("log", base=2)
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.set_yscale("log", base=2)
        ax.margins(y=0.12)  # room for the value labels above the top points
        ax.set_xlabel("hidden size H")
        ax.set_title(mode)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel(f"speedup over {baseline_label} (higher is better)")
    from matplotlib.ticker import FuncFormatter

    axes[0][0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    axes[0][-1].legend(loc="best", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def shape_dicts(shapes: Sequence[Shape]) -> list[dict]:
    return [asdict(s) for s in shapes]
