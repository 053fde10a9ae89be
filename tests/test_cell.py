"""fastrnn.RNNCell's per-call path: the common case is ATen's one-step cell with nothing extra
(what makes it as fast as nn.RNNCell: benchmarks/bench_cell.py), so it is bitwise nn.RNNCell;
the unusual cases take the checked path."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import fastrnn
from helpers import assert_close


class OpLog(TorchDispatchMode):
    """Every operator dispatched while active (what the per-call overhead is made of)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def twin_cells(*args, **kwargs):
    torch.manual_seed(0)
    ref = nn.RNNCell(*args, **kwargs)
    return ref, fastrnn.RNNCell.from_torch(ref)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("given_hx", [True, False])
def test_step_dispatches_the_ops_of_nn_rnncell_and_is_bitwise_equal(nonlinearity, bias, given_hx):
    ref, ours = twin_cells(5, 7, bias=bias, nonlinearity=nonlinearity)
    x, h = torch.randn(3, 5), (torch.randn(3, 7) if given_hx else None)
    logs = []
    for cell in (ref, ours):
        with OpLog() as log:
            out = cell(x, h)
        logs.append((log.ops, out))
    assert logs[1][0] == logs[0][0], "no extra operator on the per-call path"
    assert torch.equal(logs[1][1], logs[0][1])


def test_training_step_gradients_match_nn_rnncell():
    ref, ours = twin_cells(4, 6)
    x = torch.randn(2, 4)
    grads = []
    for cell in (ref, ours):
        h = None
        for _ in range(5):
            h = cell(x, h)
        grads.append(torch.autograd.grad(h.pow(2).sum(), list(cell.parameters())))
    for a, b in zip(*grads):
        assert torch.equal(a, b)


def test_unusual_calls_take_the_checked_path():
    ref, ours = twin_cells(4, 6)
    # unbatched input, an explicit backend: same numbers (to the float32 parity tolerance)
    x = torch.randn(4)
    assert_close(ours(x), ref(x), name="unbatched")
    ours.backend = "reference"
    xb = torch.randn(3, 4)
    assert_close(ours(xb), ref(xb), name="backend='reference'")
    ours.backend = "auto"
    # a call ATen would reject gets fastrnn's message, naming the argument
    with pytest.raises(RuntimeError, match="hx must have the dtype of input"):
        ours(xb, torch.randn(3, 6, dtype=torch.float64))


@pytest.mark.parametrize("hx_shape", [(1, 5, 5), (1, 1, 5)], ids=["3d", "3d-one"])
def test_fast_path_refuses_what_nn_rnncell_refuses(hx_shape):
    """A 3-D hx is an error for nn.RNNCell; the fast path must not turn it into a result."""
    x, hx = torch.randn(1, 4), torch.randn(hx_shape)
    with pytest.raises(ValueError, match="hidden to be 1D or 2D"):
        nn.RNNCell(4, 5)(x, hx)
    with pytest.raises(ValueError, match="hidden to be 1D or 2D"):
        fastrnn.RNNCell(4, 5)(x, hx)


def test_explicit_native_without_a_kernel_is_an_error():
    cell = fastrnn.RNNCell(4, 5, backend="native", device="meta")
    with pytest.raises(RuntimeError, match="no kernel"):
        cell(torch.randn(2, 4, device="meta"))
