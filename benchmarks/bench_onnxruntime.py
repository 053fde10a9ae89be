"""CPU inference against the peer a CPU-only user would reach for: ONNX Runtime's RNN operator.

pytest-benchmark, fp32, tanh, one layer, 2 threads (torch and ONNX Runtime alike); nn.RNN,
fastrnn and ONNX Runtime are separate benchmarks of one run, grouped per shape. The ONNX
model is a single RNN node built with onnx.helper from nn.RNN's weights; its output is
checked against nn.RNN before timing, so a wrong graph cannot produce a flattering number.

    pip install onnx onnxruntime
    python -m pytest benchmarks/bench_onnxruntime.py --benchmark-enable
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from common import shape_id, twins

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

# The shapes of the issue-3 table, plus batch 1 (ONNX Runtime's strongest case).
SHAPES = [
    (128, 8, 64, 64),
    (64, 32, 128, 128),
    (2048, 4, 32, 32),
    (256, 32, 256, 256),
    (128, 64, 1024, 1024),
    (32, 1, 256, 256),
    (128, 1, 256, 256),
    (32, 1, 1024, 1024),
]
RUNNERS = ["nn.RNN", "fastrnn", "onnxruntime"]


def onnx_rnn_session(rnn: torch.nn.RNN) -> "ort.InferenceSession":
    """A session running one ONNX RNN node (Y = all hidden states) with rnn's weights."""
    from onnx import TensorProto, helper, numpy_helper

    H, I = rnn.hidden_size, rnn.input_size
    w = rnn.weight_ih_l0.detach().numpy()[None]  # [1, H, I]
    r = rnn.weight_hh_l0.detach().numpy()[None]  # [1, H, H]
    b = np.concatenate([rnn.bias_ih_l0.detach().numpy(), rnn.bias_hh_l0.detach().numpy()])[None]  # [1, 2H]
    node = helper.make_node("RNN", ["X", "W", "R", "B"], ["Y"], hidden_size=H, activations=["Tanh"])
    graph = helper.make_graph(
        [node], "rnn",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "B", I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 1, "B", H])],
        initializer=[numpy_helper.from_array(a, name) for a, name in ((w, "W"), (r, "R"), (b, "B"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("shape", SHAPES, ids=[shape_id(s) for s in SHAPES])
def test_inference(benchmark, shape, runner):
    ref, ours, x = twins(shape)
    if runner == "onnxruntime":
        session = onnx_rnn_session(ref)
        feed = {"X": x.numpy()}
        y = torch.from_numpy(session.run(None, feed)[0][:, 0])  # [T, B, H]
        with torch.no_grad():
            torch.testing.assert_close(y, ref(x)[0], rtol=1e-4, atol=1e-5)  # the graph is right

        def step():
            session.run(None, feed)
    else:
        model = ref if runner == "nn.RNN" else ours

        def step():
            with torch.no_grad():
                model(x)

    T, B, I, H = shape
    benchmark.group = f"{shape_id(shape)} inference"
    benchmark.extra_info.update(shape=shape_id(shape), runner=runner, flops=2 * T * B * (I * H + H * H))
    rounds = 5 if H >= 1024 and B > 1 else 20 if T * H * B >= 2**15 else 50
    benchmark.pedantic(step, rounds=rounds, warmup_rounds=2, iterations=1)
