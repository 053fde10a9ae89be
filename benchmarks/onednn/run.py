"""oneDNN peer benchmark (issue 14, point 4): oneDNN's vanilla RNN primitive against
torch.nn.RNN and fastrnn.RNN on the CPU table's shapes, fp32, tanh, one layer.

    python benchmarks/onednn/run.py --threads 2

Builds rnn_bench.cpp with g++ against the system's oneDNN (`apt-get install libdnnl-dev`),
writes the same random input and nn.RNN weights for each shape, checks oneDNN's output
(inference and forward_training), input gradient and dW_hh against torch.nn.RNN (run in
float64 on the same weights) to max|err| / max|ref| <= 1e-5, and only then times: oneDNN in
the harness (OMP_NUM_THREADS=threads, weights reordered once outside the timed loop),
nn.RNN and fastrnn in this process (torch.set_num_threads(threads)); medians of --runs.
Without oneDNN it says how to get it and exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HOW_TO_GET = ("oneDNN not found ({}): skipping the oneDNN benchmark. "
              "Install it with `apt-get install libdnnl-dev` (Debian/Ubuntu; oneDNN 2.x), "
              "or pass --include-dir / --lib-dir.")
SHAPES = [(128, 8, 64, 64), (64, 32, 128, 128), (2048, 4, 32, 32), (256, 32, 256, 256),
          (128, 64, 1024, 1024), (32, 1, 1024, 1024)]
TOLERANCE = 1e-5


def build(include_dir: str, lib_dir: str | None, out_dir: str) -> str | None:
    """The harness's path, or None (after printing how to get oneDNN) when oneDNN is absent."""
    if not os.path.isfile(os.path.join(include_dir, "dnnl.hpp")):
        print(HOW_TO_GET.format(f"no dnnl.hpp in {include_dir}"))
        return None
    exe = os.path.join(out_dir, "rnn_bench")
    cmd = ["g++", "-O2", "-std=c++14", f"-I{include_dir}", os.path.join(HERE, "rnn_bench.cpp"), "-o", exe]
    cmd += [f"-L{lib_dir}", f"-Wl,-rpath,{lib_dir}"] if lib_dir else []
    done = subprocess.run(cmd + ["-ldnnl"], capture_output=True, text=True)
    if done.returncode != 0:
        if "-ldnnl" in done.stderr:  # header there, library not
            print(HOW_TO_GET.format("cannot link -ldnnl"))
            return None
        sys.exit("building rnn_bench.cpp failed:\n" + done.stderr)
    return exe


def max_rel_err(got, ref) -> float:
    return float((got.double() - ref).abs().max() / ref.abs().max())


def check_and_time_onednn(exe, shape, runs, threads, work, clock="wall"):
    """oneDNN's results for one shape, checked against nn.RNN (float64), then its timings."""
    import numpy as np
    import torch
    from common import twins

    T, B, I, H = shape
    ref, ours, x = twins(shape)
    dy = torch.randn(T, B, H, generator=torch.Generator().manual_seed(1))
    files = {"x": x, "w_ih": ref.weight_ih_l0, "w_hh": ref.weight_hh_l0,
             "bias": ref.bias_ih_l0 + ref.bias_hh_l0, "dy": dy}
    for name, t in files.items():
        t.detach().contiguous().numpy().astype(np.float32).tofile(os.path.join(work, name + ".bin"))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), RNN_BENCH_CLOCK=clock)
    done = subprocess.run([exe, work, str(T), str(B), str(I), str(H), str(runs)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"rnn_bench failed on {shape}:\n{done.stderr}")
    result = json.loads(done.stdout)

    def read(name, *dims):
        return torch.from_numpy(np.fromfile(os.path.join(work, name + ".bin"), dtype=np.float32)).view(*dims)

    truth = torch.nn.RNN(I, H).double()
    truth.load_state_dict(ref.state_dict())
    x64 = x.double().requires_grad_()
    y64, _ = truth(x64)
    y64.backward(dy.double())
    errors = {"y_inference": max_rel_err(read("y", T, B, H), y64.detach()),
              "y_training": max_rel_err(read("y_train", T, B, H), y64.detach()),
              "dx": max_rel_err(read("dx", T, B, I), x64.grad),
              "dw_hh": max_rel_err(read("dw_hh", H, H), truth.weight_hh_l0.grad)}
    bad = {k: e for k, e in errors.items() if not e <= TOLERANCE}
    if bad:
        sys.exit(f"oneDNN disagrees with nn.RNN on {shape}: {bad} (tolerance {TOLERANCE}); no timings")
    result["max_rel_err"] = errors
    return result, ref, ours, x


def median_ms(fn, runs: int, clock: str = "wall") -> float:
    import time
    now = time.thread_time if clock == "thread" else time.perf_counter
    for _ in range(3):
        fn()
    ts = []
    for _ in range(runs):
        t0 = now()
        fn()
        ts.append((now() - t0) * 1e3)
    return sorted(ts)[len(ts) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=11, help="timed runs per measurement (median)")
    ap.add_argument("--include-dir", default="/usr/include", help="where dnnl.hpp is")
    ap.add_argument("--lib-dir", default=None, help="where libdnnl.so is (default: the linker's path)")
    ap.add_argument("--clock", choices=["wall", "thread"], default="wall",
                    help="thread: each side's CPU time on its one thread (needs --threads 1); "
                         "robust to other load on a shared machine")
    ap.add_argument("--shapes", default=None,
                    help="semicolon list of T,B,I,H to run instead of the table's (e.g. '32,1,1024,1024;32,4,1024,1024')")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/onednn_<cpu>_<N>threads.json)")
    args = ap.parse_args()
    if args.clock == "thread" and args.threads != 1:
        ap.error("--clock thread measures one thread: use it with --threads 1")

    with tempfile.TemporaryDirectory(prefix="onednn_bench_") as work:
        exe = build(args.include_dir, args.lib_dir, work)
        if exe is None:
            return  # the message is printed; exit 0
        import torch
        sys.path.insert(0, os.path.dirname(HERE))
        from common import inference_step, machine_metadata, training_step

        torch.set_num_threads(args.threads)
        rows = []
        shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes.split(";")] if args.shapes else SHAPES
        for shape in shapes:
            one, ref, ours, x = check_and_time_onednn(exe, shape, args.runs, args.threads, work, args.clock)
            row = {"shape": list(shape), "onednn_infer_ms": one["infer_ms"], "onednn_train_ms": one["train_ms"],
                   "max_rel_err": one["max_rel_err"],
                   "nn_rnn_infer_ms": median_ms(inference_step(ref, x), args.runs, args.clock),
                   "fastrnn_infer_ms": median_ms(inference_step(ours, x), args.runs, args.clock),
                   "nn_rnn_train_ms": median_ms(training_step(ref, x), args.runs, args.clock),
                   "fastrnn_train_ms": median_ms(training_step(ours, x), args.runs, args.clock)}
            rows.append(row)
            print(f"{shape}: checked (max rel err {max(one['max_rel_err'].values()):.1e}), timed", flush=True)

    meta = machine_metadata()
    meta.update(onednn=one["onednn"], runs=args.runs, onednn_threads_env={"OMP_NUM_THREADS": args.threads},
                clock=args.clock)
    print(f"\n{meta['cpu_model']}, {args.threads} threads, {args.clock} clock, oneDNN {one['onednn']}, "
          f"fp32, medians of {args.runs} (ms)\n")
    print("| T,B,I,H | oneDNN inf | nn.RNN inf | fastrnn inf | fastrnn/oneDNN inf "
          "| oneDNN train | nn.RNN train | fastrnn train | fastrnn/oneDNN train |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {','.join(map(str, r['shape']))} | {r['onednn_infer_ms']:.2f} | {r['nn_rnn_infer_ms']:.2f} "
              f"| {r['fastrnn_infer_ms']:.2f} | {r['onednn_infer_ms'] / r['fastrnn_infer_ms']:.2f}x "
              f"| {r['onednn_train_ms']:.2f} | {r['nn_rnn_train_ms']:.2f} | {r['fastrnn_train_ms']:.2f} "
              f"| {r['onednn_train_ms'] / r['fastrnn_train_ms']:.2f}x |")
    cpu = re.sub(r"[^a-z0-9]+", "_", meta["cpu_model"].lower()).strip("_")
    out = args.out or os.path.join(os.path.dirname(HERE), "results", f"onednn_{cpu}_{args.threads}threads.json")
    with open(out, "w") as f:
        json.dump({"machine": meta, "rows": rows}, f, indent=1)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
