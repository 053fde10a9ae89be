"""pytest-benchmark: fastrnn vs torch.nn.RNN on CPU for the table of issue 3 (fp32, tanh,
one layer, 2 threads). nn.RNN and fastrnn are separate benchmarks of the same run, grouped
per shape and mode, so the report shows their medians side by side.

    python -m pytest benchmarks/bench_cpu.py --benchmark-enable [--benchmark-group-by=group]

(benchmarks/ is outside testpaths: CI does not run these. benchmarks/run.py prints the
table with speedups and GFLOP/s.)
"""
from __future__ import annotations

import pytest
import torch

from common import SHAPES, forward_flops, inference_step, shape_id, training_flops, \
    training_step, twins

MODELS = ["nn.RNN", "fastrnn"]


def _run(benchmark, shape, model_name, mode):
    ref, ours, x = twins(shape)
    model = ref if model_name == "nn.RNN" else ours
    step = (inference_step if mode == "inference" else training_step)(model, x)
    flops = (forward_flops if mode == "inference" else training_flops)(shape)
    benchmark.group = f"{shape_id(shape)} {mode}"
    benchmark.extra_info.update(flops=flops, shape=shape_id(shape), model=model_name)
    T = shape[0]
    rounds = 5 if shape[3] >= 1024 else 20 if T * shape[3] >= 2**15 else 50
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=[shape_id(s) for s in SHAPES])
def test_inference(benchmark, shape, model_name):
    _run(benchmark, shape, model_name, "inference")


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("shape", SHAPES, ids=[shape_id(s) for s in SHAPES])
def test_training(benchmark, shape, model_name):
    _run(benchmark, shape, model_name, "training")
