"""torch.func over modules that use fastrnn's ops: grad, vjp, jacrev, vmap (and their mixes:
per-sample gradients, ensembles, a Hessian), against torch.nn.RNN with the same weights.

float64 throughout, so the comparisons use the float64 tolerance of helpers.assert_close:
both sides compute the same sums in a different order."""
from __future__ import annotations

import pytest
import torch
from torch.func import functional_call, grad, jacrev, vjp, vmap

import fastrnn
from helpers import assert_close, twin_rnn

F64 = torch.float64


def loss_of(model):
    def loss(params, x):
        out, h = functional_call(model, params, (x,))
        return out.pow(2).sum() + h.sin().sum()

    return loss


@pytest.fixture(params=[dict(num_layers=2, bidirectional=True), dict(nonlinearity="relu", bias=False)],
                ids=["2layer-bi", "relu-nobias"])
def twins(request):
    return twin_rnn(3, 4, dtype=F64, **request.param)


def params_of(model):
    return {k: v.detach() for k, v in model.named_parameters()}


def test_grad_over_functional_call(twins):
    ref, ours = twins
    x = torch.randn(5, 2, 3, dtype=F64)
    expected = grad(loss_of(ref))(params_of(ref), x)
    got = grad(loss_of(ours))(params_of(ours), x)
    for name in expected:
        assert_close(got[name], expected[name], name=name)


def test_vjp_and_jacrev_of_the_input(twins):
    ref, ours = twins
    x = torch.randn(4, 2, 3, dtype=F64)
    out, pullback = vjp(lambda x: ours(x)[0], x)
    out_ref, pullback_ref = vjp(lambda x: ref(x)[0], x)
    cotangent = torch.randn_like(out)
    assert_close(out, out_ref, name="output")
    assert_close(pullback(cotangent)[0], pullback_ref(cotangent)[0], name="vjp")
    assert_close(jacrev(lambda x: ours(x)[1])(x), jacrev(lambda x: ref(x)[1])(x), name="jacrev")


def test_hessian_vector_through_jacrev_of_grad():
    ref, ours = twin_rnn(3, 4, dtype=F64)
    x = torch.randn(3, 1, 3, dtype=F64)
    hess = [jacrev(grad(lambda x: m(x)[0].pow(2).sum()))(x) for m in (ours, ref)]
    assert_close(hess[0], hess[1], name="hessian")


def test_vmap_over_inputs_lengths_and_per_sample_grads(twins):
    ref, ours = twins
    xs = torch.randn(6, 5, 2, 3, dtype=F64)  # 6 independent batches [T, B, I]
    got = vmap(lambda x: ours(x)[0])(xs)
    assert_close(got, torch.stack([ref(x)[0] for x in xs]), name="vmap output")
    # Per-sample gradients: vmap(grad); nn.RNN cannot (no batching rule for rnn_tanh), so loop it.
    per_sample = vmap(grad(loss_of(ours)), in_dims=(None, 0))(params_of(ours), xs)
    for name, g in per_sample.items():
        expected = torch.stack([grad(loss_of(ref))(params_of(ref), x)[name] for x in xs])
        assert_close(g, expected, name=name)


def test_vmap_rule_of_the_op_folds_rows_and_handles_batched_weights():
    """The op's vmap rule: vmapped input/hx/lengths with shared weights, and batched weights."""
    torch.manual_seed(0)
    N, T, B, I, H = 3, 5, 2, 3, 4
    x, h = torch.randn(N, T, B, I, dtype=F64), torch.randn(N, B, H, dtype=F64)
    w_ih, w_hh = torch.randn(N, H, I, dtype=F64), torch.randn(N, H, H, dtype=F64) * 0.5
    lengths = torch.tensor([[5, 2], [0, 3], [4, 5]])
    op = fastrnn.functional.rnn_layer
    for reverse in (False, True):
        got = vmap(lambda x, h, l: op(x, h, w_ih[0], w_hh[0], lengths=l, reverse=reverse)[0])(x, h, lengths)
        got_w = vmap(lambda wi, wh: op(x[0], h[0], wi, wh, reverse=reverse)[0])(w_ih, w_hh)
        for n in range(N):
            ref = fastrnn.reference.rnn_forward(x[n], h[n], w_ih[0], w_hh[0], None, None, lengths[n],
                                                reverse, "tanh")
            assert_close(got[n], ref, name=f"folded rows, slice {n}")
            ref_w = fastrnn.reference.rnn_forward(x[0], h[0], w_ih[n], w_hh[n], None, None, None,
                                                  reverse, "tanh")
            assert_close(got_w[n], ref_w, name=f"batched weights, slice {n}")


def test_ensemble_of_parameter_sets():
    ref, ours = twin_rnn(3, 4, dtype=F64)
    x = torch.randn(4, 2, 3, dtype=F64)
    stacked = {k: torch.stack([v, 0.5 * v, -v]) for k, v in params_of(ours).items()}
    got = vmap(lambda p: functional_call(ours, p, (x,))[0])(stacked)
    for n in range(3):
        expected = functional_call(ref, {k: v[n] for k, v in stacked.items()}, (x,))[0]
        assert_close(got[n], expected, name=f"member {n}")


@pytest.mark.parametrize("weights_require_grad", [True, False], ids=["params-grad", "params-frozen"])
def test_forward_mode_ad_tangents_match_nn_rnn(twins, weights_require_grad):
    # nn.RNN supports forward-mode AD; no fastrnn kernel has a jvp, so dual inputs run the
    # reference ops. Before this was routed, the kernels ran and the tangent came back None
    # (silently dropped) whenever the weights did not require grad.
    import torch.autograd.forward_ad as fwAD

    ref, ours = twins
    for m in (ref, ours):
        m.requires_grad_(weights_require_grad)
    x, t = torch.randn(5, 2, 3, dtype=F64), torch.randn(5, 2, 3, dtype=F64)
    tangents = []
    for m in (ref, ours):
        with fwAD.dual_level():
            out, h = m(fwAD.make_dual(x, t))
            tangents.append((fwAD.unpack_dual(out).tangent, fwAD.unpack_dual(h).tangent))
    for expected, got in zip(*tangents):
        assert got is not None
        assert_close(got, expected)


def test_func_jvp_matches_nn_rnn(twins):
    ref, ours = twins
    x, t = torch.randn(5, 2, 3, dtype=F64), torch.randn(5, 2, 3, dtype=F64)
    (_, expected) = torch.func.jvp(lambda v: ref(v)[0], (x,), (t,))
    (_, got) = torch.func.jvp(lambda v: ours(v)[0], (x,), (t,))
    assert_close(got, expected)


def test_jacfwd_of_the_input_matches_nn_rnn():
    ref, ours = twin_rnn(3, 4, dtype=F64)
    x = torch.randn(4, 1, 3, dtype=F64)
    assert_close(torch.func.jacfwd(lambda v: ours(v)[1])(x), torch.func.jacfwd(lambda v: ref(v)[1])(x))


def test_forward_mode_ad_is_routed_before_the_cuda_choice():
    # On CUDA, backend="auto" layers go through the measured choice (_cuda_choice), whose
    # fastrnn candidates have no jvp: dual tensors must take the reference there as well.
    # The routing happens before any device work, so CPU tensors exercise it here.
    import torch.autograd.forward_ad as fwAD

    from fastrnn import _cuda_choice, reference

    T, B, I, H = 4, 2, 3, 5
    args = [torch.randn(T, B, I, dtype=F64), torch.randn(B, H, dtype=F64),
            torch.randn(H, I, dtype=F64, requires_grad=True), torch.randn(H, H, dtype=F64, requires_grad=True),
            torch.randn(H, dtype=F64), torch.randn(H, dtype=F64)]
    tangent = torch.randn(T, B, I, dtype=F64)
    _, expected = torch.func.jvp(
        lambda x: reference.rnn_forward(x, *args[1:], None, False, "tanh"), (args[0],), (tangent,))
    with fwAD.dual_level():
        out = _cuda_choice.rnn_forward(fwAD.make_dual(args[0], tangent), *args[1:], None, False, "tanh")
        got = fwAD.unpack_dual(out).tangent
    assert_close(got, expected)
