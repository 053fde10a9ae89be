"""fastrnn's CUDA kernels vs cuDNN (torch.nn.RNN) on one GPU: inference and training.

Two ways to run it (both need a GPU and fastrnn built with CUDA; skipped otherwise):

  python benchmarks/bench_cuda.py [--quick] [--json out.json]
      prints a table (median ms per call, speed-up vs nn.RNN) over a grid of
      batch 1-256, hidden 64-2048, T 16-4096, fp32/fp16/bf16, and writes JSON.
  python -m pytest benchmarks/bench_cuda.py --benchmark-only
      pytest-benchmark medians for a smaller grid, fastrnn and nn.RNN side by side.

Timing: CUDA events around each call after warm-up, torch.cuda.synchronize() before
reading them; TF32 off for both sides (IEEE fp32, what fastrnn guarantees).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

import pytest
import torch

if __name__ == "__main__":  # run as a script from a checkout: import this tree's fastrnn
    import os
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastrnn  # noqa: E402

HAVE_GPU = torch.cuda.is_available() and fastrnn._ops.has_kernel("cuda")

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# (T, B, H) with I = H; chosen to cover every path: single block (H 64), grid (256-1024),
# H 2048 (grid on H100-class parts, cuBLAS fallback on smaller ones), long sequences.
FULL_GRID = [
    (16, 1, 64), (256, 1, 64), (4096, 1, 64), (1024, 8, 64), (256, 64, 64), (256, 256, 64),
    (256, 1, 256), (1024, 16, 256), (256, 64, 256), (256, 256, 256),
    (256, 1, 512), (512, 32, 512), (128, 256, 512),
    (128, 1, 1024), (512, 16, 1024), (128, 128, 1024),
    (64, 1, 2048), (128, 32, 2048), (32, 256, 2048),
]
QUICK_GRID = [(256, 1, 64), (256, 64, 256), (128, 16, 1024), (64, 32, 2048)]


def _twins(H, dtype):
    torch.manual_seed(0)
    ref = torch.nn.RNN(H, H).to("cuda", dtype)
    ours = fastrnn.RNN(H, H, backend="native").to("cuda", dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _time_ms(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _inference(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _training(model, x):
    def run():
        x.grad = None
        model.zero_grad(set_to_none=True)
        y, hn = model(x)
        (y.float().square().mean() + hn.float().sum()).backward()
    return run


def measure(T, B, H, dtype, mode):
    ref, ours = _twins(H, dtype)
    x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=mode == "training")
    make = _inference if mode == "inference" else _training
    iters = 3 if T * B * H * H > 2**33 else 10
    t_ref = _time_ms(make(ref, x), iters=iters)
    t_ours = _time_ms(make(ours, x), iters=iters)
    return {"T": T, "B": B, "H": H, "dtype": str(dtype).split(".")[-1], "mode": mode,
            "cudnn_ms": t_ref, "fastrnn_ms": t_ours, "speedup": t_ref / t_ours}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 4-shape grid")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16")
    parser.add_argument("--json", default="bench_cuda.json")
    args = parser.parse_args(argv)
    if not HAVE_GPU:
        print("bench_cuda: needs a CUDA device and fastrnn built with CUDA kernels", file=sys.stderr)
        return 1
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    rows = []
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"cuDNN {torch.backends.cudnn.version()}")
    print(f"{'mode':<10}{'dtype':<9}{'T':>6}{'B':>5}{'H':>6}{'cuDNN ms':>11}{'fastrnn ms':>12}{'x':>7}")
    for dname in args.dtypes.split(","):
        for mode in ("inference", "training"):
            for T, B, H in (QUICK_GRID if args.quick else FULL_GRID):
                r = measure(T, B, H, DTYPES[dname], mode)
                rows.append(r)
                print(f"{mode:<10}{dname:<9}{T:>6}{B:>5}{H:>6}{r['cudnn_ms']:>11.3f}"
                      f"{r['fastrnn_ms']:>12.3f}{r['speedup']:>7.2f}", flush=True)
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "tf32": False}
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(f"wrote {args.json}")
    return 0


# pytest-benchmark: medians of fastrnn and nn.RNN in the same run (compare with
# --benchmark-group-by=param). Never a timed assertion.
BENCH_SHAPES = [(256, 1, 64), (256, 64, 256), (128, 16, 1024)]


@pytest.mark.skipif(not HAVE_GPU, reason="needs a CUDA device and fastrnn built with CUDA kernels")
@pytest.mark.parametrize("impl", ["cudnn", "fastrnn"])
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("T,B,H", BENCH_SHAPES, ids=lambda v: str(v))
def test_bench_cuda(benchmark, impl, mode, dtype, T, B, H):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    ref, ours = _twins(H, DTYPES[dtype])
    model = ref if impl == "cudnn" else ours
    x = torch.randn(T, B, H, device="cuda", dtype=DTYPES[dtype], requires_grad=mode == "training")
    step = (_inference if mode == "inference" else _training)(model, x)

    def synced():
        step()
        torch.cuda.synchronize()

    benchmark.group = f"{mode}-{dtype}-T{T}-B{B}-H{H}"
    benchmark.pedantic(synced, warmup_rounds=2, rounds=10)


if __name__ == "__main__":
    sys.exit(main())
