"""pytest-benchmark: multi-layer and bidirectional stacks keep the single-layer gains.

fastrnn vs torch.nn.RNN (fp32, tanh, 2 threads) for 1-2 layers x 1-2 directions on the
smaller shapes of the issue-3 table, inference and training, grouped per configuration.

    python -m pytest benchmarks/bench_stacks.py --benchmark-enable
"""
from __future__ import annotations

import pytest
import torch

import fastrnn
from common import inference_step, shape_id, training_step

SHAPES = [(128, 8, 64, 64), (64, 32, 128, 128), (256, 32, 256, 256)]
STACKS = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize("mode", ["inference", "training"])
@pytest.mark.parametrize("model_name", ["nn.RNN", "fastrnn"])
@pytest.mark.parametrize("layers, bidirectional", STACKS, ids=[f"L{n}x{2 if b else 1}" for n, b in STACKS])
@pytest.mark.parametrize("shape", SHAPES, ids=[shape_id(s) for s in SHAPES])
def test_stack(benchmark, shape, layers, bidirectional, model_name, mode):
    T, B, I, H = shape
    torch.manual_seed(0)
    ref = torch.nn.RNN(I, H, layers, bidirectional=bidirectional)
    model = ref if model_name == "nn.RNN" else fastrnn.RNN.from_torch(ref)
    x = torch.randn(T, B, I)  # [T, B, I]
    step = (inference_step if mode == "inference" else training_step)(model, x)
    benchmark.group = f"{shape_id(shape)} L{layers}x{2 if bidirectional else 1} {mode}"
    benchmark.extra_info.update(shape=shape_id(shape), layers=layers, bidirectional=bidirectional)
    benchmark.pedantic(step, rounds=10 if H >= 256 else 30, warmup_rounds=2, iterations=1)
