"""Prints the CPU speed table: fastrnn vs torch.nn.RNN (fp32, tanh, one layer).

For each shape: medians (and minima) of inference and training steps, measured interleaved
in one process so that both models see the same machine load; speedups vs nn.RNN; GFLOP/s;
and the physical limit measured in the same run, right before each row: the FMA-throughput
peak of the ISA in use on the same threads (fastrnn's probe, torch.ops.fastrnn._cpu_fma_peak),
so every rate is also given as "% of peak". Also: GEMM rates for context (torch.mm = MKL /
oneDNN, numpy = OpenBLAS), the batch-1 row, and PackedSequence rows (B=64, T <= 100,
uni- and bidirectional) that exercise the active-row kernels.

    python benchmarks/run.py [--repeat 15] [--shapes 0,3] [--no-extra] [--json out.json]

On a shared, loaded machine wall-clock medians swing by 10x; `--threads 1 --clock thread`
times with the calling thread's CPU time instead (time.thread_time), which a descheduled
process does not accumulate: a noise-robust view of single-thread kernel efficiency.
"""
from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

import numpy as np
from torch.nn.utils.rnn import pack_padded_sequence

from common import SHAPES, cpu_model, TARGETS, forward_flops, inference_step, shape_id, training_flops, \
    training_step, twins

import fastrnn
from fastrnn import backends

# Issue 14's targets: (inference, training) speedups over nn.RNN, or for the large shapes
# forward / forward+backward as a fraction of the FMA peak measured in the same run.
ISSUE14_TARGETS = {
    (128, 8, 64, 64): ("8x", "12x"),
    (64, 32, 128, 128): ("4x", "6x"),
    (2048, 4, 32, 32): ("20x", "40x"),
    (256, 32, 256, 256): ("fwd 70% of peak", "fwd+bwd 60% of peak"),
    (128, 64, 1024, 1024): ("fwd 70% of peak", "fwd+bwd 60% of peak"),
}


CLOCK = time.perf_counter


def timed(fn) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def interleaved(fns: dict, repeat: int) -> dict:
    """name -> sorted seconds; the functions take turns so load spikes hit all of them."""
    for fn in fns.values():
        fn()  # warm-up (allocations, packing, thread pool)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: sorted(ts) for name, ts in times.items()}


def median(ts):
    return ts[len(ts) // 2]


def gemm_rate(repeat: int) -> dict:
    """GFLOP/s (best run) of [M x 1024] x [1024 x 1024] for M = 8192 and 64 through torch.mm
    (MKL), oneDNN with a pre-packed weight, and numpy (OpenBLAS), for context."""
    rates = {}
    for m in (8192, 64):
        k = n = 1024
        a, w = torch.randn(m, k), torch.randn(n, k)
        a_np, wt_np = a.numpy(), np.ascontiguousarray(w.t().numpy())
        fns = {f"torch.mm {m}x1024x1024": lambda: torch.mm(a, w.t()),
               f"numpy {m}x1024x1024": lambda: a_np @ wt_np}
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(w, m)
            fns[f"oneDNN {m}x1024x1024"] = \
                lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
        except (AttributeError, RuntimeError):
            pass
        times = interleaved(fns, repeat if m > 64 else 10 * repeat)
        rates.update({name: 2 * m * k * n / ts[0] / 1e9 for name, ts in times.items()})
    return rates


def fma_peak(threads: int) -> float:
    """The FMA peak (GFLOP/s) on `threads` threads right now, median of 3 x 0.1 s, on the
    clock the table uses: wall, or (--clock thread) the threads' own CPU time."""
    key = "cpu_gflops" if CLOCK is time.thread_time else "wall_gflops"
    return sorted(backends.cpu_fma_peak(0.1, threads)[key] for _ in range(3))[1]


def measure_shape(shape, repeat: int, threads: int) -> dict:
    ref, ours, x = twins(shape)
    peak = fma_peak(threads)
    times = interleaved({
        "nn.RNN inference": inference_step(ref, x),
        "fastrnn inference": inference_step(ours, x),
        "nn.RNN training": training_step(ref, x),
        "fastrnn training": training_step(ours, x),
    }, repeat)
    with torch.no_grad():
        ours(x)
    plan = backends.last_cpu_plan()
    row = {"shape": shape_id(shape), "fma_peak_gflops": peak, "forward_plan": plan,
           "issue14_target": ISSUE14_TARGETS.get(shape)}
    for mode, flops in (("inference", forward_flops(shape)), ("training", training_flops(shape))):
        ref_ts, our_ts = times[f"nn.RNN {mode}"], times[f"fastrnn {mode}"]
        row[mode] = {
            "nn.RNN_median_ms": median(ref_ts) * 1e3,
            "fastrnn_median_ms": median(our_ts) * 1e3,
            "nn.RNN_min_ms": ref_ts[0] * 1e3,
            "fastrnn_min_ms": our_ts[0] * 1e3,
            "speedup_median": median(ref_ts) / median(our_ts),
            "speedup_min": ref_ts[0] / our_ts[0],
            "fastrnn_gflops": flops / median(our_ts) / 1e9,
            "nn.RNN_gflops": flops / median(ref_ts) / 1e9,
            "fastrnn_fraction_of_peak": flops / median(our_ts) / 1e9 / peak,
            "issue3_target": TARGETS[shape][0 if mode == "inference" else 1],
        }
    return row


def packed_input(B=64, T=100, I=128, seed=0):
    """A PackedSequence of B rows with lengths uniform in [1, T] (the issue's packed case)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    x = torch.randn(T, B, I, generator=gen)  # [T, B, I]
    return x, lengths


def measure_packed(bidirectional: bool, repeat: int, threads: int, B=64, T=100, I=128, H=128):
    torch.manual_seed(0)
    ref = torch.nn.RNN(I, H, bidirectional=bidirectional)
    ours = fastrnn.RNN(I, H, bidirectional=bidirectional)
    ours.load_state_dict(ref.state_dict())
    x, lengths = packed_input(B, T, I)
    peak = fma_peak(threads)
    # FLOPs of the rows that are active (what nn.RNN computes): per active (t, b).
    dirs = 2 if bidirectional else 1
    flops = 2 * int(lengths.clamp(max=T).sum()) * (I * H + H * H) * dirs

    def infer(model):
        def step():
            with torch.no_grad():
                model(pack_padded_sequence(x, lengths, enforce_sorted=False))
        return step

    def train(model):
        xg = x.clone().requires_grad_()

        def step():
            model.zero_grad(set_to_none=True)
            out, h_n = model(pack_padded_sequence(xg, lengths, enforce_sorted=False))
            (out.data.sum() + h_n.sum()).backward()
        return step

    times = interleaved({"nn.RNN inference": infer(ref), "fastrnn inference": infer(ours),
                         "nn.RNN training": train(ref), "fastrnn training": train(ours)}, repeat)
    infer(ours)()
    row = {"shape": f"packed B{B} T<={T} I{I} H{H} {'bi' if bidirectional else 'uni'}",
           "fma_peak_gflops": peak, "forward_plan": backends.last_cpu_plan(),
           "issue14_target": (">= 1.5x", ">= 1.5x")}
    for mode, fl in (("inference", flops), ("training", 3 * flops)):
        ref_ts, our_ts = times[f"nn.RNN {mode}"], times[f"fastrnn {mode}"]
        row[mode] = {"nn.RNN_median_ms": median(ref_ts) * 1e3,
                     "fastrnn_median_ms": median(our_ts) * 1e3,
                     "speedup_median": median(ref_ts) / median(our_ts),
                     "fastrnn_gflops": fl / median(our_ts) / 1e9,
                     "fastrnn_fraction_of_peak": fl / median(our_ts) / 1e9 / peak}
    return row


def measure_batch1(repeat: int, threads: int, T=32, I=1024, H=1024):
    """Inference at batch 1: the row where packing the weights per call matters most."""
    shape = (T, 1, I, H)
    ref, ours, x = twins(shape)
    peak = fma_peak(threads)
    times = interleaved({"nn.RNN": inference_step(ref, x), "fastrnn": inference_step(ours, x)},
                        repeat)
    inference_step(ours, x)()
    flops = forward_flops(shape)
    return {"shape": shape_id(shape), "fma_peak_gflops": peak,
            "forward_plan": backends.last_cpu_plan(),
            "inference": {"nn.RNN_median_ms": median(times["nn.RNN"]) * 1e3,
                          "fastrnn_median_ms": median(times["fastrnn"]) * 1e3,
                          "speedup_median": median(times["nn.RNN"]) / median(times["fastrnn"]),
                          "fastrnn_gflops": flops / median(times["fastrnn"]) / 1e9,
                          "fastrnn_fraction_of_peak":
                              flops / median(times["fastrnn"]) / 1e9 / peak}}


def machine_info(threads: int) -> dict:
    peak = fma_peak(threads)
    info = {"cpu": cpu_model(), "threads": threads, "torch": torch.__version__,
            "numpy": np.__version__, "machine": backends.cpu_machine(), "fma_peak_gflops": peak}
    try:  # the shared metadata helper (CPU, ISA, threads, peak, commit), when present
        import common
        if hasattr(common, "machine_metadata"):
            info["metadata"] = common.machine_metadata(peak)
    except Exception as err:  # noqa: BLE001  (metadata is optional context)
        info["metadata_error"] = repr(err)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--shapes", default="", help="comma list of table row indices (default all)")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="thread: CPU time of the calling thread (needs --threads 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    parser.add_argument("--no-extra", action="store_true",
                        help="only the shape table (no packed and batch-1 rows)")
    args = parser.parse_args()
    if args.clock == "thread":
        if args.threads != 1:
            parser.error("--clock thread measures one thread: use it with --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    torch.set_num_threads(args.threads)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES

    gemm = gemm_rate(max(3, args.repeat // 3))
    info = machine_info(args.threads)
    m = info["machine"]
    print(f"# {cpu_model()}, ISA {m['isa']}, L1d {m['l1d_bytes'] >> 10} KiB, "
          f"L2 {m['l2_bytes'] >> 10} KiB, L3 {m['l3_bytes'] >> 20} MiB ({m['cache_source']}); "
          f"{args.threads} threads, {args.clock} clock, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("# GEMM GFLOP/s (best run): " + ", ".join(f"{k} {v:.0f}" for k, v in gemm.items()))
    print("# peak = the ISA's FMA-loop rate on the same threads, measured right before each row")
    print("| T, B, I, H | inference: nn.RNN / fastrnn ms (speedup) | "
          "training: nn.RNN / fastrnn ms (speedup) | fastrnn GFLOP/s fwd, fwd+bwd "
          "(% of peak) | peak GFLOP/s | issue-14 target (inf, train) | path |")
    print("|---|---|---|---|---|---|---|")
    rows = []

    def path_of(plan):
        if not plan:
            return ""
        extra = "+pre" if plan["project_first"] else ""
        extra += "+active_rows" if plan.get("active_rows") else ""
        return f"{plan['path']}{extra} x{plan['threads']}"

    def print_row(row):
        inf, tr = row["inference"], row.get("training")
        cells = [row["shape"] if isinstance(row["shape"], str) else row["shape"],
                 f"{inf['nn.RNN_median_ms']:.3f} / {inf['fastrnn_median_ms']:.3f} "
                 f"({inf['speedup_median']:.2f}x)"]
        cells.append(f"{tr['nn.RNN_median_ms']:.3f} / {tr['fastrnn_median_ms']:.3f} "
                     f"({tr['speedup_median']:.2f}x)" if tr else "-")
        rate = f"{inf['fastrnn_gflops']:.0f} ({100 * inf['fastrnn_fraction_of_peak']:.0f}%)"
        if tr:
            rate += f", {tr['fastrnn_gflops']:.0f} ({100 * tr['fastrnn_fraction_of_peak']:.0f}%)"
        cells += [rate, f"{row['fma_peak_gflops']:.0f}",
                  ", ".join(row.get("issue14_target") or ("-",)), path_of(row["forward_plan"])]
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)

    for shape in shapes:
        row = measure_shape(shape, args.repeat, args.threads)
        row["forward_fraction_of_gemm"] = row["inference"]["fastrnn_gflops"] / max(gemm.values())
        rows.append(row)
        print_row(row)
    if not args.no_extra:
        for bidirectional in (False, True):
            row = measure_packed(bidirectional, args.repeat, args.threads)
            rows.append(row)
            print_row(row)
        row = measure_batch1(args.repeat, args.threads)
        rows.append(row)
        print_row(row)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                **info, "clock": args.clock,
                "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "gemm_gflops": gemm, "rows": rows,
            }, f, indent=2)


if __name__ == "__main__":
    main()
