"""pytest-benchmark: fastrnn.RNNCell vs torch.nn.RNNCell on CPU (fp32, tanh, 2 threads).

A step of a cell is two small GEMMs and a tanh, so what decides the speed at small sizes is
the per-call overhead; the benchmark steps the cell STEPS times, feeding the state back, as a
decoder or sampler does. Inference: under no_grad. Training: the same loop, then backward.

    python benchmarks/bench_cell.py          # runs the benchmarks, prints the ratio table
    python benchmarks/bench_cell.py --interleaved   # the same loops alternating A/B (loaded machines)
    python benchmarks/bench_cell.py --cpu-time      # alternating, 1 thread, process CPU time
    python -m pytest benchmarks/bench_cell.py --benchmark-enable --benchmark-group-by=group

(benchmarks/ is outside testpaths: CI does not run these. Results: benchmarks/README.md.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest
import torch
from torch import nn

import fastrnn

STEPS = 16
BATCHES = (1, 32, 256)
HIDDEN = (32, 64, 256, 1024)
MODELS = ("nn.RNNCell", "fastrnn")


def _cell(model_name: str, H: int) -> nn.Module:
    torch.manual_seed(0)
    ref = nn.RNNCell(H, H)
    return ref if model_name == "nn.RNNCell" else fastrnn.convert(ref)


def _inference(cell, x, h0):
    def step():
        with torch.no_grad():
            h = h0
            for _ in range(STEPS):
                h = cell(x, h)
        return h

    return step


def _training(cell, x, h0):
    def step():
        h = h0
        for _ in range(STEPS):
            h = cell(x, h)
        h.sum().backward()

    return step


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("H", HIDDEN, ids=[f"H{h}" for h in HIDDEN])
@pytest.mark.parametrize("B", BATCHES, ids=[f"B{b}" for b in BATCHES])
def test_cell(benchmark, B, H, mode, model_name):
    cell = _cell(model_name, H)
    x, h0 = torch.randn(B, H), torch.randn(B, H)
    step = (_inference if mode == "inference" else _training)(cell, x, h0)
    benchmark.group = f"B{B} H{H} {mode}"
    benchmark.extra_info.update(model=model_name, B=B, H=H, mode=mode, steps=STEPS)
    rounds = 10 if H >= 1024 and B >= 32 else 50
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2, iterations=1)


def interleaved(rounds: int = 30, threads: int = 2, cpu_time: bool = False) -> str:
    """The same loops, nn.RNNCell and fastrnn alternating round by round (ABAB...), so a load
    spike from other processes hits both; medians and minima of the per-step time.
    ``cpu_time``: this process's CPU time instead of wall time (with one thread, the work
    done, whatever else the machine runs)."""
    import time

    clock = time.process_time if cpu_time else time.perf_counter
    torch.set_num_threads(threads)
    lines = ["| B | H | mode | nn.RNNCell µs/step (median / min) | fastrnn µs/step (median / min) "
             "| speedup of medians | of minima |", "|---|---|---|---|---|---|---|"]
    for B in BATCHES:
        for H in HIDDEN:
            for mode in ("inference", "training"):
                x, h0 = torch.randn(B, H), torch.randn(B, H)
                make = _inference if mode == "inference" else _training
                steps = [make(_cell(name, H), x, h0) for name in MODELS]
                times: list[list[float]] = [[], []]
                n = rounds if B * H * H < 2**24 else max(5, rounds // 3)
                for r in range(n + 2):
                    for k in ((0, 1) if r % 2 == 0 else (1, 0)):
                        t = clock()
                        steps[k]()
                        if r >= 2:  # two warm-up rounds
                            times[k].append((clock() - t) * 1e6 / STEPS)
                med = [sorted(t)[len(t) // 2] for t in times]
                low = [min(t) for t in times]
                lines.append(f"| {B} | {H} | {mode} | {med[0]:.1f} / {low[0]:.1f} | {med[1]:.1f} / {low[1]:.1f} "
                             f"| {med[0] / med[1]:.2f}x | {low[0] / low[1]:.2f}x |")
    return "\n".join(lines)


def _table(path: str) -> str:
    medians: dict[tuple, dict[str, float]] = {}
    for b in json.load(open(path))["benchmarks"]:
        info = b["extra_info"]
        medians.setdefault((info["B"], info["H"], info["mode"]), {})[info["model"]] = b["stats"]["median"]
    lines = ["| B | H | mode | nn.RNNCell (µs/step) | fastrnn (µs/step) | speedup |", "|---|---|---|---|---|---|"]
    for (B, H, mode), m in sorted(medians.items()):
        ref, ours = (m[k] * 1e6 / STEPS for k in MODELS)
        lines.append(f"| {B} | {H} | {mode} | {ref:.1f} | {ours:.1f} | {ref / ours:.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["--interleaved"]:
        print(interleaved())
        sys.exit(0)
    if sys.argv[1:] == ["--cpu-time"]:  # one thread, CPU time: for a machine others are loading
        print(interleaved(threads=1, cpu_time=True))
        sys.exit(0)
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cell.json")
        subprocess.run([sys.executable, "-m", "pytest", "-q", os.path.join(here, "bench_cell.py"),
                        "--benchmark-enable", f"--benchmark-json={out}", "-p", "no:cacheprovider",
                        *sys.argv[1:]], check=True)
        print(_table(out))
