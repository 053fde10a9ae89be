"""fastrnn::_rnn_stack: a whole stack in one native call, taken by plain eager CPU calls
(functional.rnn), with or without a gradient (one C++ autograd node for the stack). It runs
the very per-layer ops the Python loop runs, so its outputs and gradients must be the same
bits, and whatever needs the layers one at a time (dropout, graphs, torch.func, forward-mode
AD) must still get the Python loop."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.utils._python_dispatch import TorchDispatchMode

import fastrnn
from fastrnn import functional
from helpers import assert_close, grads_of, random_loss, twin_rnn

stack_op = torch.ops.fastrnn._rnn_stack.default

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
    real = fastrnn._ops.rnn_stack

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(fastrnn._ops, "rnn_stack", counting)
    return calls


def _layer_loop(model, x, hx):
    """The module's stack through functional.run_layers: the per-layer op, one Python
    autograd Function per layer (the route of everything the one call does not serve)."""
    x = x.transpose(0, 1) if model.batch_first else x  # [T, B, I]
    D = 2 if model.bidirectional else 1
    if hx is None:
        hx = x.new_zeros(model.num_layers * D, x.shape[1], model.hidden_size)
    out, h_n = functional.run_layers(
        fastrnn._ops.differentiable_rnn_forward, x, hx, model._layer_weights(),
        num_layers=model.num_layers, bidirectional=model.bidirectional,
        nonlinearity=model.nonlinearity, dropout=0.0, training=False, lengths=None)
    return (out.transpose(0, 1) if model.batch_first else out), h_n


@pytest.mark.parametrize("given_hx", [False, True], ids=["no-hx", "hx"])
@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_one_call_matches_the_layer_loop_bitwise(monkeypatch, config, given_hx):
    """The module takes the one call with and without a gradient; outputs and every
    gradient (input, hx, each weight) are the same bits as the per-layer loop's, and
    track nn.RNN."""
    L, bi, bias, act, batch_first, dtype = config
    ref, ours = twin_rnn(6, 11, num_layers=L, bidirectional=bi, bias=bias, nonlinearity=act,
                         batch_first=batch_first, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 9, 6, generator=gen).to(dtype).requires_grad_()  # [T, B, I] (or [B, T, I])
    hx = torch.randn(L * (2 if bi else 1), 5 if batch_first else 9, 11, generator=gen).to(dtype)
    hx = hx.requires_grad_() if given_hx else None
    calls = _count_calls(monkeypatch)
    with torch.no_grad():
        out_inf, h_inf = ours(x, hx)
    assert len(calls) == 1
    out, h_n = ours(x, hx)
    assert len(calls) == 2 and "RNNForwardStack" in h_n.grad_fn.name()
    out_loop, h_loop = _layer_loop(ours, x, hx)
    assert torch.equal(out, out_loop) and torch.equal(h_n, h_loop)
    assert torch.equal(out_inf, out) and torch.equal(h_inf, h_n)
    leaves = [x] + ([hx] if given_hx else []) + list(ours.parameters())
    grads = grads_of(random_loss([out, h_n]), leaves)
    grads_loop = grads_of(random_loss([out_loop, h_loop]), leaves)
    for leaf, g, g_loop in zip(leaves, grads, grads_loop):
        assert torch.equal(g, g_loop), tuple(leaf.shape)
    with torch.no_grad():
        out_ref, h_ref = ref(x, hx)
    assert_close(out.detach(), out_ref)
    assert_close(h_n.detach(), h_ref)


def test_the_gradient_of_what_was_asked_only(monkeypatch):
    """Frozen layers, a frozen input, an unused output: each gradient that exists matches
    the loop's, and nothing is computed for a leaf that does not want one."""
    _, ours = twin_rnn(4, 6, num_layers=3, bidirectional=True)
    x = torch.randn(5, 3, 4)  # [T, B, I]
    for p in (ours.weight_ih_l1, ours.weight_hh_l1_reverse, ours.bias_ih_l0):
        p.requires_grad_(False)
    out, h_n = ours(x)
    out_loop, h_loop = _layer_loop(ours, x, None)
    trained = [p for p in ours.parameters() if p.requires_grad]
    for outputs, loops in (([out], [out_loop]), ([h_n], [h_loop]), ([h_n[2:]], [h_loop[2:]])):
        grads = grads_of(random_loss(outputs), trained)
        for g, g_loop in zip(grads, grads_of(random_loss(loops), trained)):
            assert (g is None) == (g_loop is None) and (g is None or torch.equal(g, g_loop))
    # Only the top layer trained: its gradients alone, and the lower layers are not visited.
    for p in ours.parameters():
        p.requires_grad_(p is ours.weight_hh_l2 or p is ours.bias_hh_l2)
    out, _ = ours(x)
    with _BackwardLayers() as seen:
        out.sum().backward()
    assert ours.weight_hh_l2.grad is not None and ours.weight_ih_l0.grad is None
    assert seen.masks == [[False, True]]  # the top layer's forward direction alone


class _BackwardLayers(TorchDispatchMode):
    """Records the output_mask of every per-layer backward call (a dispatch mode sees the
    per-layer ops the stack node runs)."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.fastrnn.rnn_backward.default:
            self.masks.append(args[-1])
        return func(*args, **(kwargs or {}))


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
    assert len(calls) == 1 and out.requires_grad
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


def _stack_args(L=2, bi=True, bias=True, requires_grad=False, T=4, B=3, I=5, H=7):
    gen = torch.Generator().manual_seed(2)
    D = 2 if bi else 1
    x = torch.randn(T, B, I, generator=gen)  # [T, B, I]
    hx = torch.randn(L * D, B, H, generator=gen)  # [L * D, B, H]
    weights = []
    for layer in range(L):
        i = I if layer == 0 else H * D
        for _ in range(D):
            ws = [torch.randn(H, i, generator=gen) * 0.3, torch.randn(H, H, generator=gen) * 0.3]
            ws += [torch.randn(H, generator=gen) * 0.1 for _ in range(2)] if bias else [None, None]
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


def test_the_op_records_reverse_mode_and_refuses_tangents():
    """Called directly: a gradient through the op reaches every weight inside the list
    (autograd's generic fallback would not see them); a forward-mode tangent, which the node
    cannot carry, is refused rather than dropped."""
    x, hx, weights = _stack_args(requires_grad=True)
    out, h_n = stack_op(x, hx, weights, 2, True, None, "tanh")
    grads = torch.autograd.grad(random_loss([out, h_n]), weights)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
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


def _stack_fn(L, bi, lengths):
    def f(x, hx, *weights):
        return stack_op(x, hx, list(weights), L, bi, lengths, "tanh")
    return f


@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["padded", "lengths"])
@pytest.mark.parametrize("bi", [False, True], ids=["uni", "bi"])
def test_gradcheck_and_gradgradcheck(bi, lengths):
    """float64 finite differences: the node's gradients (every argument, both outputs) and,
    with create_graph, its differentiable backward (the recomputed stack)."""
    x, hx, weights = _stack_args(L=2, bi=bi, T=4, B=3, I=2, H=3)
    args = [t.double().requires_grad_() for t in (x, hx, *weights)]
    lens = torch.tensor(lengths) if lengths is not None else None
    f = _stack_fn(2, bi, lens)
    assert torch.autograd.gradcheck(f, args)
    assert torch.autograd.gradgradcheck(f, args)


def test_gradient_penalty_matches_the_layer_loop():
    """create_graph=True through the module: the gradient of a gradient as the loop gives it."""
    _, ours = twin_rnn(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    results = []
    for forward in (lambda: ours(x), lambda: _layer_loop(ours, x, None)):
        out, h_n = forward()
        (gx,) = torch.autograd.grad(random_loss([out, h_n]), x, create_graph=True)
        results.append(grads_of(gx.square().sum(), [x] + list(ours.parameters())))
    for g, g_loop in zip(*results):
        assert_close(g, g_loop)


def test_in_place_changes():
    """The caller owns the output (an in-place change leaves the gradients right, as with
    nn.RNN); a weight changed in place before backward is caught by autograd's version check."""
    ref, ours = twin_rnn(3, 5)
    x = torch.randn(4, 2, 3)
    grads = []
    for model in (ref, ours):
        out, _ = model(x)
        loss = random_loss([out])
        out.mul_(0)
        grads.append(grads_of(loss, list(model.parameters())))
    for g, g_ref in zip(grads[1], grads[0]):
        assert_close(g, g_ref)
    out, _ = ours(x)
    with torch.no_grad():
        ours.weight_hh_l0.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_packed_training_in_one_call(monkeypatch, bidirectional):
    """A PackedSequence with a gradient goes through the one call; gradients as nn.RNN's."""
    ref, ours = twin_rnn(4, 6, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(7, 5, 4, generator=torch.Generator().manual_seed(3))  # [T, B, I]
    lengths = torch.tensor([7, 2, 5, 1, 6])
    calls = _count_calls(monkeypatch)
    grads = []
    for model in (ref, ours):
        out, h_n = model(pack_padded_sequence(x, lengths, enforce_sorted=False))
        loss = random_loss([pad_packed_sequence(out)[0], h_n])
        grads.append(grads_of(loss, list(model.parameters())))
    assert len(calls) == 1
    for g, g_ref in zip(grads[1], grads[0]):
        assert_close(g, g_ref)
