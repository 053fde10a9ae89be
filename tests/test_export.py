"""Deploying: torch.onnx.export (both exporters) to ONNX's RNN operator, run in ONNX Runtime
against fastrnn; torch.jit.trace and torch.export. The README's "Deploying" commands are these.

Tolerance: helpers.assert_close (the CPU float32 parity with nn.RNN). ONNX Runtime computes the
same recurrence with its own GEMMs and tanh, so it differs from fastrnn as nn.RNN does."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

import fastrnn
from helpers import assert_close

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

EXPORTERS = {"dynamo": dict(dynamo=True), "torchscript": dict(dynamo=False)}
needs_onnxscript = pytest.mark.skipif(
    __import__("importlib").util.find_spec("onnxscript") is None, reason="needs onnxscript")


def export_and_run(model, args, exporter, tmp_path, dynamic=None):
    """Exports ``model`` as a user would, checks the file holds ONNX RNN nodes, runs it in
    ONNX Runtime on ``args`` and returns the outputs as tensors."""
    path = str(tmp_path / f"{exporter}.onnx")
    kwargs = dict(EXPORTERS[exporter])
    if dynamic and exporter == "torchscript":
        kwargs.update(input_names=list(dynamic["axes"]), dynamic_axes=dynamic["axes"])
    if dynamic and exporter == "dynamo":
        kwargs["dynamic_shapes"] = dynamic["shapes"]
    torch.onnx.export(model, args, path, **kwargs)
    graph = onnx.load(path).graph
    assert "RNN" in {n.op_type for n in graph.node}, "fastrnn's op became ONNX's RNN operator"
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
    return [torch.from_numpy(o) for o in session.run(None, feeds)]


def check(model, args, exporter, tmp_path, run_args=None, dynamic=None):
    model.eval()
    got = export_and_run(model, args, exporter, tmp_path, dynamic)
    if run_args is not None:  # a dynamic export, run on other shapes
        session = ort.InferenceSession(str(tmp_path / f"{exporter}.onnx"))
        feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), run_args)}
        got = [torch.from_numpy(o) for o in session.run(None, feeds)]
        args = run_args
    with torch.no_grad():
        expected = model(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert_close(g, e, name="ONNX Runtime vs fastrnn")


CONFIGS = {
    "uni-1layer": dict(num_layers=1),
    "bi-2layer": dict(num_layers=2, bidirectional=True),
    "3layer-relu": dict(num_layers=3, nonlinearity="relu"),
    "nobias-bi": dict(bias=False, bidirectional=True),
    "batch_first-bi": dict(num_layers=2, batch_first=True, bidirectional=True),
}
exporters = pytest.mark.parametrize(
    "exporter", [pytest.param("dynamo", marks=needs_onnxscript), "torchscript"])


@exporters
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_rnn_exports_to_onnx_rnn(config, exporter, tmp_path):
    torch.manual_seed(0)
    kwargs = CONFIGS[config]
    model = fastrnn.RNN(3, 5, **kwargs)
    x = torch.randn(2, 4, 3) if kwargs.get("batch_first") else torch.randn(4, 2, 3)
    check(model, (x,), exporter, tmp_path)


@exporters
def test_hx_given_and_unbatched(exporter, tmp_path):
    torch.manual_seed(0)
    model = fastrnn.RNN(3, 5, num_layers=2, bidirectional=True)
    check(model, (torch.randn(4, 2, 3), torch.randn(4, 2, 5)), exporter, tmp_path)
    unbatched = tmp_path / "unbatched"  # this test's own directory, not one shared with others
    unbatched.mkdir()
    check(model, (torch.randn(4, 3),), exporter, unbatched)  # unbatched [T, I]


@exporters
def test_dynamic_sequence_length_and_batch(exporter, tmp_path):
    torch.manual_seed(0)
    model = fastrnn.RNN(3, 5, bidirectional=True, batch_first=True)
    T, B = torch.export.Dim("T", min=2), torch.export.Dim("B", min=2)
    dynamic = dict(axes={"x": {0: "B", 1: "T"}}, shapes=({0: B, 1: T},))
    x = torch.randn(2, 4, 3)
    # traced on (B=2, T=4), run on (B=3, T=9)
    check(model, (x,), exporter, tmp_path, run_args=(torch.randn(3, 9, 3),), dynamic=dynamic)


class LayerWithLengths(nn.Module):
    """A padded batch and its lengths through fastrnn.functional (the op's lengths input)."""

    def __init__(self, reverse):
        super().__init__()
        self.rnn = fastrnn.RNN(3, 5)
        self.reverse = reverse

    def forward(self, x, h0, lengths):
        y, h_n = fastrnn.functional.rnn_layer(x, h0, self.rnn.weight_ih_l0, self.rnn.weight_hh_l0,
                                              self.rnn.bias_ih_l0, self.rnn.bias_hh_l0,
                                              lengths=lengths, reverse=self.reverse)
        return y, h_n


@exporters
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lengths_become_sequence_lens_and_inactive_steps_carry_the_state(reverse, exporter, tmp_path):
    """ONNX's Y is zero after a row's end; fastrnn's y carries the state there (rnn.h):
    the exported graph reproduces fastrnn's y and h_n, including L = 0 and L > T."""
    torch.manual_seed(0)
    model = LayerWithLengths(reverse)
    args = (torch.randn(6, 4, 3), torch.randn(4, 5), torch.tensor([6, 2, 0, 9]))
    check(model, args, exporter, tmp_path)


@exporters
def test_converted_model_with_embedding_and_cell(exporter, tmp_path):
    """The issue's model: Embedding -> RNN(batch_first) -> Linear, converted; and a cell."""
    torch.manual_seed(0)
    model = fastrnn.convert(nn.Sequential(nn.Embedding(20, 8), nn.RNN(8, 16, 2, batch_first=True)))
    tokens = torch.randint(0, 20, (2, 7))
    model.eval()
    path = str(tmp_path / "seq.onnx")
    torch.onnx.export(model, (tokens,), path, **EXPORTERS[exporter])
    session = ort.InferenceSession(path)
    got = session.run(None, {session.get_inputs()[0].name: tokens.numpy()})
    with torch.no_grad():
        expected = model(tokens)
    assert_close(torch.from_numpy(got[0]), expected[0], name="output")
    # a cell is ATen's own step: exports like nn.RNNCell (no RNN node needed)
    cell = fastrnn.RNNCell(4, 6).eval()
    x, h = torch.randn(3, 4), torch.randn(3, 6)
    torch.onnx.export(cell, (x, h), str(tmp_path / "cell.onnx"), **EXPORTERS[exporter])
    session = ort.InferenceSession(str(tmp_path / "cell.onnx"))
    got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), (x, h))})
    assert_close(torch.from_numpy(got[0]), cell(x, h).detach(), name="cell")


def test_import_does_not_import_onnxscript():
    """Registration for the dynamo exporter waits for the exporter to import onnxscript
    (seconds of import time that a user who never exports should not pay)."""
    code = "import sys, fastrnn; print('onnxscript' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_trace_and_torch_export_match_eager(bidirectional):
    """torch.jit.trace with its default check (a second trace under no_grad must give the
    same graph: the unidirectional output's copy for autograd must not appear in a trace)."""
    torch.manual_seed(0)
    model = fastrnn.RNN(3, 5, num_layers=2, bidirectional=bidirectional, batch_first=True).eval()
    x = torch.randn(2, 4, 3)
    expected = model(x)
    traced = torch.jit.trace(model, (x,))
    exported = torch.export.export(model, (x,))
    for got in (traced(x), exported.module()(x)):
        for g, e in zip(got, expected):
            assert_close(g, e, name="deployed vs eager")
