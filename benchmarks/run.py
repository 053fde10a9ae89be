"""Prints the CPU speed table of issue 3: fastrnn vs torch.nn.RNN (fp32, tanh, one layer).

For each shape: medians (and minima) of inference and training steps, measured interleaved
in one process so that both models see the same machine load; speedups vs nn.RNN; GFLOP/s.
Also measures the machine's large-GEMM rate (best of torch.mm and oneDNN with a pre-packed
weight) and the forward rate as a fraction of it.

    python benchmarks/run.py [--repeat 15] [--shapes 0,3] [--json out.json]

On a shared, loaded machine wall-clock medians swing by 10x; `--threads 1 --clock thread`
times with the calling thread's CPU time instead (time.thread_time), which a descheduled
process does not accumulate: a noise-robust view of single-thread kernel efficiency.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import torch

from common import SHAPES, TARGETS, forward_flops, inference_step, shape_id, training_flops, \
    training_step, twins


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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
    """GFLOP/s of [8192 x 1024] x [1024 x 1024] through torch.mm (MKL) and oneDNN."""
    m, k, n = 8192, 1024, 1024
    a, w = torch.randn(m, k), torch.randn(n, k)
    fns = {"torch.mm": lambda: torch.mm(a, w.t())}
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w, m)
        fns["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    except (AttributeError, RuntimeError):
        pass
    times = interleaved(fns, repeat)
    return {name: 2 * m * k * n / ts[0] / 1e9 for name, ts in times.items()}


def measure_shape(shape, repeat: int) -> dict:
    ref, ours, x = twins(shape)
    times = interleaved({
        "nn.RNN inference": inference_step(ref, x),
        "fastrnn inference": inference_step(ours, x),
        "nn.RNN training": training_step(ref, x),
        "fastrnn training": training_step(ours, x),
    }, repeat)
    row = {"shape": shape_id(shape)}
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
            "target": TARGETS[shape][0 if mode == "inference" else 1],
        }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--shapes", default="", help="comma list of table row indices (default all)")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="thread: CPU time of the calling thread (needs --threads 1)")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    if args.clock == "thread":
        if args.threads != 1:
            parser.error("--clock thread measures one thread: use it with --threads 1")
        global CLOCK
        CLOCK = time.thread_time
    torch.set_num_threads(args.threads)
    shapes = [SHAPES[int(i)] for i in args.shapes.split(",")] if args.shapes else SHAPES

    gemm = gemm_rate(max(3, args.repeat // 3))
    best_gemm = max(gemm.values())
    print(f"# {cpu_model()}, {args.threads} threads, {args.clock} clock, torch {torch.__version__}, "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print("# large GEMM [8192x1024]x[1024x1024]: " +
          ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in gemm.items()))
    print("| T, B, I, H | inference: nn.RNN / fastrnn ms (speedup, target) | "
          "training: nn.RNN / fastrnn ms (speedup, target) | fwd GFLOP/s (% of GEMM) |")
    print("|---|---|---|---|")
    rows = []
    for shape in shapes:
        row = measure_shape(shape, args.repeat)
        inf, tr = row["inference"], row["training"]
        row["forward_fraction_of_gemm"] = inf["fastrnn_gflops"] / best_gemm
        rows.append(row)
        print(f"| {', '.join(map(str, shape))} "
              f"| {inf['nn.RNN_median_ms']:.3f} / {inf['fastrnn_median_ms']:.3f} "
              f"({inf['speedup_median']:.1f}x, min-based {inf['speedup_min']:.1f}x; >= {inf['target']}x) "
              f"| {tr['nn.RNN_median_ms']:.3f} / {tr['fastrnn_median_ms']:.3f} "
              f"({tr['speedup_median']:.1f}x, min-based {tr['speedup_min']:.1f}x; >= {tr['target']}x) "
              f"| {inf['fastrnn_gflops']:.0f} ({100 * row['forward_fraction_of_gemm']:.0f}%) |",
              flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "cpu": cpu_model(), "threads": args.threads, "clock": args.clock,
                "torch": torch.__version__,
                "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "gemm_gflops": gemm, "rows": rows,
            }, f, indent=2)


if __name__ == "__main__":
    main()
