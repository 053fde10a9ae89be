"""The CPU conversions between a PackedSequence's data and the padded layout
(fastrnn::_packed_to_padded / _padded_to_packed, csrc/cpu/packed_layout.cpp) against
functional.py's index_copy / index_select twins, bit for bit; their gradients (each the
other's adjoint) by gradcheck and gradgradcheck; their argument errors; and the module
choosing them exactly in plain eager CPU calls."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from fastrnn import functional
from helpers import twin_rnn

ops = torch.ops.fastrnn

# batch_sizes of a PackedSequence (non-increasing, >= 1), F features
CASES = {
    "one-step": ([3], 5),
    "T6-B4-F7": ([4, 4, 3, 1, 1, 1], 7),
    "T9-B1-F1": ([1] * 9, 1),
    "T5-B13-F130": ([13, 9, 9, 2, 1], 130),
}


def index_twins(data, batch_sizes):
    """functional.py's traced path: (padded, index)."""
    T, B = batch_sizes.numel(), int(batch_sizes[0])
    active = torch.arange(B).unsqueeze(0) < batch_sizes.unsqueeze(1)  # [T, B]
    index = active.flatten().nonzero().squeeze(1)  # [N]
    padded = data.new_zeros(T * B, data.shape[1]).index_copy_(0, index, data)
    return padded.view(T, B, -1), index


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64])
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_matches_index_twins(case, dtype):
    sizes, F = case
    batch_sizes = torch.tensor(sizes)
    data = (torch.randn(sum(sizes), F) * 100).to(dtype)  # [N, F]
    expected, index = index_twins(data, batch_sizes)
    padded = ops._packed_to_padded(data, batch_sizes)  # [T, B, F]
    assert padded.dtype == dtype and torch.equal(padded, expected)
    # Back from a padded tensor whose padding holds garbage: only active rows are read.
    garbage = padded.clone()
    garbage[~(torch.arange(sizes[0]) < batch_sizes.unsqueeze(1))] = 7
    assert torch.equal(ops._padded_to_packed(garbage, batch_sizes), data)
    # Non-contiguous inputs are read as their values.
    assert torch.equal(ops._padded_to_packed(garbage.transpose(0, 1).contiguous().transpose(0, 1),
                                             batch_sizes), data)
    assert torch.equal(ops._packed_to_padded(data.t().contiguous().t(), batch_sizes), expected)


SMALL = {k: v for k, v in CASES.items() if v[1] < 100}  # gradcheck's cost grows with N * F


@pytest.mark.parametrize("case", SMALL.values(), ids=SMALL.keys())
def test_gradients_are_each_others_adjoint(case):
    sizes, F = case
    batch_sizes = torch.tensor(sizes)
    data = torch.randn(sum(sizes), F, dtype=torch.float64, requires_grad=True)
    padded = torch.randn(len(sizes), sizes[0], F, dtype=torch.float64, requires_grad=True)
    to_padded = lambda d: functional._PackedToPadded.apply(d, batch_sizes)  # noqa: E731
    to_packed = lambda p: functional._PaddedToPacked.apply(p, batch_sizes)  # noqa: E731
    assert torch.autograd.gradcheck(to_padded, (data,), check_forward_ad=True)
    assert torch.autograd.gradcheck(to_packed, (padded,), check_forward_ad=True)
    assert torch.autograd.gradgradcheck(to_padded, (data,))
    assert torch.autograd.gradgradcheck(to_packed, (padded,))


def test_argument_errors():
    data = torch.randn(6, 3)
    with pytest.raises(RuntimeError, match="batch_sizes must be >= 1 and non-increasing"):
        ops._packed_to_padded(data, torch.tensor([2, 4]))
    with pytest.raises(RuntimeError, match="batch_sizes must be >= 1 and non-increasing"):
        ops._packed_to_padded(data, torch.tensor([6, 0]))
    with pytest.raises(RuntimeError, match="batch_sizes sum to 5 rows, the packed data has 6"):
        ops._packed_to_padded(data, torch.tensor([3, 2]))
    with pytest.raises(RuntimeError, match="batch_sizes must be a 1-D int64 CPU tensor"):
        ops._packed_to_padded(data, torch.tensor([3.0, 3.0]))
    with pytest.raises(RuntimeError, match="data must be 2-D"):
        ops._packed_to_padded(data.view(2, 3, 3), torch.tensor([1, 1]))
    with pytest.raises(RuntimeError, match="padded must be 3-D"):
        ops._padded_to_packed(data, torch.tensor([3, 3]))
    with pytest.raises(RuntimeError, match="batch_sizes has 3 steps, padded has 2"):
        ops._padded_to_packed(data.view(2, 3, 3), torch.tensor([3, 2, 1]))
    with pytest.raises(RuntimeError, match=r"batch_sizes\[0\] = 4 rows, padded has 3"):
        ops._padded_to_packed(data.view(2, 3, 3), torch.tensor([4, 1]))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_module_uses_them_in_eager_only(monkeypatch, bidirectional):
    """Eager CPU calls of the module convert natively, traced ones through the index ops;
    outputs and every gradient agree bit for bit (the same kernels run between)."""
    calls = []
    real = functional._PackedToPadded.apply
    monkeypatch.setattr(functional._PackedToPadded, "apply",
                        staticmethod(lambda *a: calls.append(1) or real(*a)))
    _, ours = twin_rnn(5, 7, num_layers=2, bidirectional=bidirectional, dtype=torch.float64)
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5, 1])

    def run():
        xg = x.clone().requires_grad_()
        out, h_n = ours(pack_padded_sequence(xg, lengths, enforce_sorted=False))
        loss = (out.data * torch.arange(out.data.numel(), dtype=x.dtype).view_as(out.data)).sum()
        grads = torch.autograd.grad(loss + h_n.sum() * 3, [xg, *ours.parameters()])
        return [out.data, h_n, *grads]

    native = run()
    assert calls, "an eager CPU call takes the native conversion"
    calls.clear()
    monkeypatch.setattr(functional, "_native_layout", lambda data: False)
    indexed = run()
    assert not calls
    for a, b in zip(native, indexed):
        assert torch.equal(a, b)
    # Under torch.jit.trace the index path runs (the ops have no ONNX / trace form).
    monkeypatch.undo()
    monkeypatch.setattr(functional._PackedToPadded, "apply",
                        staticmethod(lambda *a: calls.append(1) or real(*a)))
    with torch.no_grad():
        torch.jit.trace(lambda d: functional.packed_to_padded(d, torch.tensor([2, 1]))[0],
                        (torch.randn(3, 2),), check_trace=False)
    assert not calls


def test_padding_is_zeroed_in_a_reused_block():
    """The padding is written, not inherited: a freed, poisoned block of the same size
    (the buffer cache hands it out again) gives the same zeros."""
    batch_sizes = torch.tensor([64, 40, 3])  # [3, 64, 512] floats: 384 KiB, a cached size
    data = torch.randn(int(batch_sizes.sum()), 512)
    expected, _ = index_twins(data, batch_sizes)
    from fastrnn import backends

    old = backends.set_cpu_buffer_cache_limit(64 << 20)
    try:
        ops._packed_to_padded(data, batch_sizes).fill_(float("nan"))  # freed at once, poisoned
        hits = backends.cpu_buffer_cache()["hits"]
        assert torch.equal(ops._packed_to_padded(data, batch_sizes), expected)
        assert backends.cpu_buffer_cache()["hits"] > hits  # the poisoned block came back
    finally:
        backends.set_cpu_buffer_cache_limit(old)


def test_forward_mode_ad_through_the_native_conversions():
    """Dual weights (plain data) and dual data through a packed module: the conversions'
    jvp (themselves, on the tangent) gives the tangent of the index path's outputs."""
    _, ours = twin_rnn(5, 7, dtype=torch.float64)
    x = torch.randn(6, 4, 5, dtype=torch.float64)
    lengths = torch.tensor([6, 2, 5, 1])
    w_tangent = torch.randn_like(ours.weight_hh_l0)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    data_tangent = torch.randn_like(packed.data)
    import torch.autograd.forward_ad as fwAD
    from torch.func import functional_call

    def tangents():
        out = []
        for dual_x in (False, True):  # (pack_padded_sequence itself has no forward AD)
            with fwAD.dual_level():
                data = fwAD.make_dual(packed.data, data_tangent) if dual_x else packed.data
                params = {"weight_hh_l0": fwAD.make_dual(ours.weight_hh_l0.detach(), w_tangent)}
                y, h_n = functional_call(ours, params, (packed._replace(data=data),))
                out += [fwAD.unpack_dual(y.data).tangent, fwAD.unpack_dual(h_n).tangent]
        return out

    calls = []
    real = functional._PaddedToPacked.apply
    functional._PaddedToPacked.apply = staticmethod(lambda *a: calls.append(1) or real(*a))
    try:
        native = tangents()
    finally:
        del functional._PaddedToPacked.apply  # back to the inherited Function.apply
    assert calls and all(t is not None for t in native)  # the native conversions ran
    old = functional._native_layout
    functional._native_layout = lambda data: False
    try:
        indexed = tangents()
    finally:
        functional._native_layout = old
    for a, b in zip(native, indexed):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_padded_to_packed_arguments():
    with pytest.raises(ValueError, match="batch_sizes must be given"):
        functional.padded_to_packed(torch.zeros(2, 3, 4), None)
    with pytest.raises(ValueError, match="padded has 4 rows, the PackedSequence 3"):
        functional._PaddedToPacked.apply(torch.zeros(2, 4, 1), torch.tensor([3, 1]))
