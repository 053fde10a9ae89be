"""fastrnn::_rnn_stack_inference: a whole stack in one native call, taken by eager CPU
calls that autograd does not record (functional.rnn). It runs the very per-layer op the
Python loop runs, so its results must be the same bits, and whatever needs the layers one
at a time (a gradient, dropout, graphs, torch.func) must still get the Python loop."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import functional
from helpers import assert_close, twin_rnn

stack_op = torch.ops.fastrnn._rnn_stack_inference.default

CONFIGS = {  # (num_layers, bidirectional, bias, nonlinearity, batch_first, dtype)
    "1layer": (1, False, True, "tanh", False, torch.float32),
    "3layers-bi": (3, True, True, "tanh", False, torch.float32),
    "2layers-nobias-relu": (2, False, False, "relu", True, torch.float32),
    "2layers-bi-f64": (2, True, True, "tanh", False, torch.float64),
    "1layer-bf16": (1, False, True, "tanh", False, torch.bfloat16),
}


def _count_calls(monkeypatch):
    """Counts the calls of the one-call stack made through functional.rnn."""
    calls = []
    real = fastrnn._ops.rnn_stack_inference

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(fastrnn._ops, "rnn_stack_inference", counting)
    return calls


@pytest.mark.parametrize("given_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_one_call_matches_the_layer_loop_bitwise(monkeypatch, config, given_hx):
    """Under no_grad the module takes the one call; with a gradient, the Python loop over
    the per-layer op. Same bits, and both track nn.RNN."""
    L, bi, bias, act, batch_first, dtype = config
    ref, ours = twin_rnn(6, 11, num_layers=L, bidirectional=bi, bias=bias, nonlinearity=act,
                         batch_first=batch_first, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 9, 6, generator=gen).to(dtype)  # [T, B, I] (or [B, T, I])
    hx = torch.randn(L * (2 if bi else 1), 5 if batch_first else 9, 11, generator=gen).to(dtype)
    args = (x, hx) if given_hx else (x,)
    calls = _count_calls(monkeypatch)
    with torch.no_grad():
        out, h_n = ours(*args)
    assert len(calls) == 1
    out_loop, h_loop = ours(*args)  # the weights require grad: the per-layer loop
    assert len(calls) == 1 and out_loop.requires_grad
    assert torch.equal(out, out_loop.detach()) and torch.equal(h_n, h_loop.detach())
    with torch.no_grad():
        out_ref, h_ref = ref(*args)
    assert_close(out, out_ref)
    assert_close(h_n, h_ref)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_packed_inference_in_one_call(monkeypatch, bidirectional):
    ref, ours = twin_rnn(4, 13, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(7, 6, 4, generator=torch.Generator().manual_seed(1))  # [T, B, I]
    lengths = torch.tensor([7, 2, 5, 1, 7, 3])
    calls = _count_calls(monkeypatch)
    results = []
    for model in (ref, ours):
        with torch.no_grad():
            out, h_n = model(pack_padded_sequence(x, lengths, enforce_sorted=False))
        results.append((pad_packed_sequence(out)[0], h_n))
    assert len(calls) == 1 and calls[0][5] is not None  # lengths passed
    assert_close(results[1][0], results[0][0])
    assert_close(results[1][1], results[0][1])


def test_eval_mode_with_grad_enabled_still_records(monkeypatch):
    """model.eval() without no_grad: the weights require grad, so autograd must record."""
    _, ours = twin_rnn(3, 5, num_layers=2)
    calls = _count_calls(monkeypatch)
    out, _ = ours.eval()(torch.randn(4, 2, 3))
    assert not calls and out.requires_grad
    out.sum().backward()
    assert ours.weight_hh_l0.grad is not None


def test_dropout_in_training_mode_keeps_the_layer_loop(monkeypatch):
    """Training mode with dropout between layers, under no_grad: the masks are drawn in
    Python's order (F.dropout per layer), as nn.RNN draws them; same output as with grad."""
    _, ours = twin_rnn(3, 8, num_layers=3, dropout=0.5)
    x = torch.randn(4, 5, 3)
    calls = _count_calls(monkeypatch)
    torch.manual_seed(7)
    with torch.no_grad():
        out, h_n = ours(x)
    torch.manual_seed(7)
    out_grad, h_grad = ours(x)
    assert not calls
    assert torch.equal(out, out_grad.detach()) and torch.equal(h_n, h_grad.detach())
    ours.eval()
    with torch.no_grad():
        ours(x)
    assert len(calls) == 1  # eval mode: no dropout, one call


def test_functional_rnn_takes_hx_none():
    """functional.rnn with hx None means zeros, on both routes."""
    _, ours = twin_rnn(3, 5, num_layers=2, bidirectional=True)
    weights = ours._layer_weights()
    x = torch.randn(4, 2, 3)  # [T, B, I]
    zeros = torch.zeros(4, 2, 5)  # [L * D, B, H]
    kw = {"num_layers": 2, "bidirectional": True}
    with torch.no_grad():
        one_call = functional.rnn(x, None, weights, **kw)
        expected = functional.rnn(x, zeros, weights, **kw)
    loop = functional.rnn(x, None, weights, **kw)
    for a, b, c in zip(one_call, expected, loop):
        assert torch.equal(a, b) and torch.equal(a, c.detach())


def test_weight_groups_checked_on_both_routes():
    """One group of weights per layer and direction, whichever route the call takes."""
    _, ours = twin_rnn(3, 5, num_layers=2)
    weights = ours._layer_weights()
    x = torch.randn(4, 2, 3)  # [T, B, I]
    for bad in (weights + weights[:1], weights[:1]):
        for grad in (False, True):
            with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="one group per layer"):
                functional.rnn(x, None, bad, num_layers=2, bidirectional=False)


def test_calls_that_must_see_the_layers_skip_the_one_call(monkeypatch):
    """Forward-mode AD and __torch_function__ modes take the per-layer route even under
    no_grad; inference_mode takes the one call. Results as nn.RNN's."""
    import torch.autograd.forward_ad as fwAD
    from torch.overrides import TorchFunctionMode

    ref, ours = twin_rnn(3, 5, num_layers=2)
    x = torch.randn(4, 2, 3)  # [T, B, I]
    calls = _count_calls(monkeypatch)
    with torch.inference_mode():
        out, _ = ours(x)
        out_ref, _ = ref(x)
    assert len(calls) == 1
    assert_close(out, out_ref)

    tangent = torch.randn_like(x)
    results = []
    for model in (ref, ours):
        with torch.no_grad(), fwAD.dual_level():
            out, _ = model(fwAD.make_dual(x, tangent))
            results.append(fwAD.unpack_dual(out))
    assert len(calls) == 1 and results[1].tangent is not None  # the tangent survived
    assert_close(results[1].primal, results[0].primal)
    assert_close(results[1].tangent, results[0].tangent)

    class Seen(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), Seen():
        out, _ = ours(x)
    assert len(calls) == 1
    assert_close(out, out_ref)


def _stack_args(L=2, bi=True, bias=True, requires_grad=False):
    gen = torch.Generator().manual_seed(2)
    D = 2 if bi else 1
    x = torch.randn(4, 3, 5, generator=gen)  # [T, B, I]
    hx = torch.randn(L * D, 3, 7, generator=gen)  # [L * D, B, H]
    weights = []
    for layer in range(L):
        i = 5 if layer == 0 else 7 * D
        for _ in range(D):
            ws = [torch.randn(7, i, generator=gen) * 0.3, torch.randn(7, 7, generator=gen) * 0.3]
            ws += [torch.randn(7, generator=gen) * 0.1 for _ in range(2)] if bias else [None, None]
            weights += [w.requires_grad_(requires_grad) if w is not None else None for w in ws]
    return x, hx, weights


@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["padded", "lengths"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_opcheck(bias, lengths):
    x, hx, weights = _stack_args(bias=bias)
    lens = torch.tensor(lengths) if lengths is not None else None
    for h in (hx, None):
        torch.library.opcheck(stack_op, (x, h, weights, 2, True, lens, "tanh"),
                              test_utils=("test_schema", "test_faketensor"))


def test_a_gradient_through_the_op_is_refused():
    """Not differentiable: a call where autograd would record raises (autograd's generic
    fallback does not see the weights inside the list, which would get no gradient)."""
    x, hx, weights = _stack_args(requires_grad=True)
    with pytest.raises(RuntimeError, match="not differentiable .* requires grad"):
        stack_op(x, hx, weights, 2, True, None, "tanh")
    with pytest.raises(RuntimeError, match="not differentiable"):
        stack_op(x.requires_grad_(), None, [w.detach() for w in weights], 2, True, None, "tanh")
    import torch.autograd.forward_ad as fwAD

    with torch.no_grad(), fwAD.dual_level(), pytest.raises(RuntimeError, match="forward-mode tangent"):
        stack_op(fwAD.make_dual(x.detach(), torch.ones_like(x)), hx, weights, 2, True, None, "tanh")
    with torch.no_grad():
        out, h_n = stack_op(x, hx, weights, 2, True, None, "tanh")
    assert not out.requires_grad and h_n.shape == (4, 3, 7)


def test_bad_arguments_name_what_was_expected():
    x, hx, weights = _stack_args()
    with pytest.raises(ValueError, match="4 entries .* per layer and direction, 16 in all, got 15"):
        stack_op(x, hx, weights[:-1], 2, True, None, "tanh")
    with pytest.raises(RuntimeError, match=r"hx must be \[num_layers \* num_directions = 4, B, H\]"):
        stack_op(x, hx[:3], weights, 2, True, None, "tanh")
    with pytest.raises(ValueError, match=r"weights\[4\] \(weight_ih\) must be a tensor"):
        stack_op(x, hx, weights[:4] + [None] + weights[5:], 2, True, None, "tanh")
    with pytest.raises(RuntimeError, match="weight_ih must have shape"):  # the layer's own check
        stack_op(x, hx, [weights[8]] + weights[1:], 2, True, None, "tanh")  # [7, 14]
    with pytest.raises(ValueError, match="num_layers must be >= 1"):
        stack_op(x, hx, [], 0, True, None, "tanh")
    with pytest.raises(ValueError, match="nonlinearity"):
        stack_op(x, hx, weights, 2, True, None, "sigmoid")
