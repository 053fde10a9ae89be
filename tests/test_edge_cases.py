"""Edge cases where fastrnn must behave exactly as torch.nn.RNN / nn.RNNCell.

Tiny and empty sizes, a very long sequence, odd memory layouts, NaN/Inf, every
requires_grad combination, no_grad / inference_mode, double backward, and the module's
life outside forward: state_dict both ways, .to(dtype), deepcopy, pickle, torch.save.
"""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from helpers import Terms, assert_close, assert_modules_track_truth, grads_of, random_loss, twin_rnn


def _twin_cell(*args, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    ref = nn.RNNCell(*args, **kwargs).to(dtype)
    ours = fastrnn.RNNCell(*args, **kwargs).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _compare(ref, ours, inputs, dtype=torch.float64, name=""):
    """Runs both modules on clones of ``inputs`` (leaves keep requires_grad) and compares
    outputs, and the gradients of a random loss w.r.t. every leaf and parameter that needs one."""
    results = []
    for model in (ref, ours):
        leaves = [t.detach().clone().requires_grad_(t.requires_grad) if t is not None else None for t in inputs]
        out = model(*leaves)
        outs = list(out) if isinstance(out, tuple) else [out]
        wrt = [t for t in leaves if t is not None and t.requires_grad]
        wrt += [p for p in model.parameters() if p.requires_grad]
        grads = grads_of(random_loss(outs), wrt) if wrt and outs[0].requires_grad else []
        results.append((outs, grads))
    (ref_outs, ref_grads), (our_outs, our_grads) = results
    for i, (a, b) in enumerate(zip(our_outs, ref_outs)):
        assert_close(a, b, dtype, name=f"{name} output {i}")
    assert len(our_grads) == len(ref_grads)
    for i, (a, b) in enumerate(zip(our_grads, ref_grads)):
        assert (a is None) == (b is None), f"{name} grad {i}: None vs tensor"
        if a is not None:
            assert_close(a, b, dtype, name=f"{name} grad {i}")


# ---------------------------------------------------------------- tiny, empty, long
TINY = [(1, 1, 1, 1), (1, 3, 1, 1), (3, 1, 1, 17), (1, 1, 17, 1), (17, 1, 3, 1)]


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 3], ids=["L1", "L3"])
@pytest.mark.parametrize(("T", "B", "I", "H"), TINY, ids=[f"T{t}-B{b}-I{i}-H{h}" for t, b, i, h in TINY])
def test_tiny_sizes(T, B, I, H, num_layers, bidirectional):
    ref, ours = twin_rnn(I, H, num_layers, bidirectional=bidirectional, dtype=torch.float64)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    hx = torch.randn(num_layers * D, B, H, dtype=torch.float64, requires_grad=True)
    _compare(ref, ours, [x, hx], name="batched")
    _compare(ref, ours, [x[:, 0].detach().requires_grad_(), hx[:, 0].detach().requires_grad_()], name="unbatched")


@pytest.mark.parametrize(("B", "I", "H"), [(1, 1, 1), (3, 17, 1), (1, 1, 17)], ids=["B1-I1-H1", "B3-I17-H1", "B1-I1-H17"])
def test_tiny_cell(B, I, H):
    ref, ours = _twin_cell(I, H, dtype=torch.float64)
    x = torch.randn(B, I, dtype=torch.float64, requires_grad=True)
    h = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    _compare(ref, ours, [x, h], name="cell")
    _compare(ref, ours, [x[0].detach().requires_grad_(), None], name="cell unbatched, no hx")


@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch_first"])
@pytest.mark.parametrize("with_hx", [False, True], ids=["no-hx", "hx"])
def test_batch_zero(batch_first, with_hx):
    ref, ours = twin_rnn(3, 5, 2, bidirectional=True, batch_first=batch_first, dtype=torch.float64)
    x = torch.randn(0, 4, 3) if batch_first else torch.randn(4, 0, 3)
    x = x.double().requires_grad_()
    hx = torch.randn(4, 0, 5, dtype=torch.float64, requires_grad=True) if with_hx else None
    (ref_out, ref_h), (out, h) = ref(x, hx), ours(x, hx)
    assert out.shape == ref_out.shape and h.shape == ref_h.shape
    _compare(ref, ours, [x, hx], name="batch 0")  # gradients: zero-filled, like nn.RNN's


def test_batch_zero_cell():
    ref, ours = _twin_cell(3, 5, dtype=torch.float64)
    _compare(ref, ours, [torch.randn(0, 3, dtype=torch.float64, requires_grad=True),
                         torch.randn(0, 5, dtype=torch.float64, requires_grad=True)], name="cell batch 0")


def _long_loss(model, x):
    out, h_n = model(x)
    return random_loss([out[-7:], h_n]) + out.sum()


def test_very_long_sequence():
    """T = 100000: nothing recursive, nothing on the stack per step. Forward against nn.RNN;
    the gradient against a central finite difference along a random direction (nn.RNN's own
    backward costs ~60 us per step here: that comparison is test_very_long_sequence_vs_torch)."""
    T, H = 100_000, 2
    ref, ours = twin_rnn(1, H, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(T, 1, 1, dtype=torch.float64, generator=g, requires_grad=True)
    with torch.no_grad():
        ref_out, ref_h = ref(x)
    out, h_n = ours(x)
    assert_close(out, ref_out, name="output")
    assert_close(h_n, ref_h, name="h_n")
    params = [x, *ours.parameters()]
    grads = torch.autograd.grad(random_loss([out[-7:], h_n]) + out.sum(), params)
    dirs = [torch.randn(p.shape, dtype=torch.float64, generator=g) for p in params]
    eps = 1e-6
    with torch.no_grad():
        losses = []
        for sign in (1, -1):
            for p, d in zip(params, dirs):
                p.add_(d, alpha=sign * eps)
            losses.append(_long_loss(ours, x))
            for p, d in zip(params, dirs):
                p.sub_(d, alpha=sign * eps)
    numeric = (losses[0] - losses[1]) / (2 * eps)
    analytic = sum((gr * d).sum() for gr, d in zip(grads, dirs))
    torch.testing.assert_close(analytic, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_very_long_sequence_vs_torch():
    """As above, gradients against nn.RNN's, chained over 1000-step chunks (~15 s; in one call
    nn.RNN's backward takes ~80 s here: it grows faster than linearly in T)."""
    T, H = 100_000, 2
    ref, ours = twin_rnn(1, H, dtype=torch.float64)
    x = torch.randn(T, 1, 1, dtype=torch.float64, requires_grad=True)
    out, h_n = ours(x)
    grads = torch.autograd.grad(random_loss([out[-7:], h_n]) + out.sum(), [x, *ours.parameters()])
    h, chunks = None, []
    for chunk in x.split(1000):
        y, h = ref(chunk, h)
        chunks.append(y)
    ref_out = torch.cat(chunks)
    assert_close(out, ref_out, name="output")
    ref_grads = torch.autograd.grad(random_loss([ref_out[-7:], h]) + ref_out.sum(), [x, *ref.parameters()])
    for i, (a, b) in enumerate(zip(grads, ref_grads)):
        assert_close(a, b, name=f"grad {i}")


def test_very_long_packed_sequence():
    T = 100_000
    ref, ours = twin_rnn(1, 1, bidirectional=True, dtype=torch.float64)
    x = torch.randn(T, 2, 1, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([3, T]), enforce_sorted=False)
    out, h_n = ours(packed)
    (gw,) = torch.autograd.grad(out.data.sum() + h_n.sum(), [ours.weight_hh_l0_reverse])
    assert torch.isfinite(gw).all()
    # The 3-step row equals nn.RNN on those 3 steps; the full row equals fastrnn unpacked.
    ref_out, ref_h = ref(x[:3, :1])
    assert_close(h_n[:, :1], ref_h, name="short row h_n")
    with torch.no_grad():
        full_out, full_h = ours(x[:, 1:])
    assert_close(h_n[:, 1:], full_h, name="long row h_n")
    assert_close(out.data[-1], full_out[-1, 0], name="long row last step")


# ---------------------------------------------------------------- layouts
# name -> view of a [6, 5, 7] source tensor with the values of a [6, 3, 4] input
LAYOUTS = {
    "sliced-noncontiguous": lambda src: src[:, 1:4, ::2],
    "transposed-batch-major": lambda src: src.transpose(0, 1)[:3, :6, :4].transpose(0, 1),
    "permuted-feature-major": lambda src: src.permute(2, 0, 1)[:4, :, :3].permute(1, 2, 0),
    "expanded-time": lambda src: src[:1, :3, :4].expand(6, 3, 4),
    "expanded-everything": lambda src: src[0, 0, 0].expand(6, 3, 4),
    "offset-view": lambda src: src.flatten()[5 : 5 + 6 * 3 * 4].view(6, 3, 4),
}


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=str)
@pytest.mark.parametrize("batch_first", [False, True], ids=["time-major", "batch_first"])
def test_odd_input_layouts(layout, batch_first):
    """Non-contiguous, transposed, expanded and offset inputs: same outputs and the same
    gradients (flowing back into the view's source) as nn.RNN."""
    ref, ours = twin_rnn(4, 5, 2, bidirectional=True, batch_first=batch_first, dtype=torch.float64)
    base = torch.randn(6, 5, 7, dtype=torch.float64)
    results = []
    for model in (ref, ours):
        src = base.clone().requires_grad_()
        out, h = model(LAYOUTS[layout](src))
        results.append([out, h, *grads_of(random_loss([out, h]), [src, *model.parameters()])])
    for i, (a, b) in enumerate(zip(results[1], results[0])):
        assert_close(a, b, name=f"tensor {i}")
    x = LAYOUTS[layout](base)
    hx = torch.randn(1, 1, 5, dtype=torch.float64).expand(4, x.shape[0 if batch_first else 1], 5)
    _compare(ref, ours, [x, hx], name="expanded hx")


def test_expanded_cell_input():
    ref, ours = _twin_cell(4, 5, dtype=torch.float64)
    x = torch.randn(1, 4, dtype=torch.float64).expand(3, 4)
    h = torch.randn(5, 1, dtype=torch.float64).t().expand(3, 5)
    _compare(ref, ours, [x, h], name="expanded cell")


# ---------------------------------------------------------------- NaN / Inf
def _poison(where: str, value: float):
    """(ref, ours, x, hx) with one ``value`` planted at ``where``."""
    ref, ours = twin_rnn(3, 4, 2, bidirectional=True, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 3, dtype=torch.float64, generator=g)
    hx = torch.randn(4, 3, 4, dtype=torch.float64, generator=g)
    if where == "input":
        x[2, 1, 0] = value
    elif where == "hx":
        hx[1, 2, 3] = value
    else:
        with torch.no_grad():
            for model in (ref, ours):
                getattr(model, where)[(1,) * getattr(model, where).dim()] = value
    return ref, ours, x, hx


POISON = [(w, v) for w in ("input", "hx", "weight_ih_l0", "weight_hh_l1_reverse", "bias_hh_l0")
          for v in (float("nan"), float("inf"), float("-inf"))]


@pytest.mark.parametrize(("where", "value"), POISON, ids=[f"{w}-{v}" for w, v in POISON])
def test_nan_inf_propagate_like_torch(where, value):
    ref, ours, x, hx = _poison(where, value)
    results = []
    for model in (ref, ours):
        xl, hl = x.clone().requires_grad_(), hx.clone().requires_grad_()
        out, h_n = model(xl, hl)
        grads = grads_of(random_loss([out, h_n]), [xl, hl, *model.parameters()])
        results.append([out, h_n, *grads])
    for i, (a, b) in enumerate(zip(results[1], results[0])):
        assert torch.equal(a.isnan(), b.isnan()), f"tensor {i}: NaN masks differ"
        assert torch.equal(a.isinf(), b.isinf()), f"tensor {i}: Inf masks differ"
        finite = a.isfinite()
        assert_close(a[finite], b[finite], name=f"tensor {i} finite part")


# ---------------------------------------------------------------- autograd modes
GRAD_CASES = [(xi, hi, w) for xi in (False, True) for hi in (False, True) for w in (False, True)]


@pytest.mark.parametrize(("input_grad", "hx_grad", "weights_grad"), GRAD_CASES,
                         ids=[f"x{int(a)}-hx{int(b)}-w{int(c)}" for a, b, c in GRAD_CASES])
def test_requires_grad_combinations(input_grad, hx_grad, weights_grad):
    """Input with/without grad, hx-only gradients, frozen weights: the same leaves get the same
    gradients as with nn.RNN, and nothing else does."""
    ref, ours = twin_rnn(3, 4, 2, bidirectional=True, dtype=torch.float64)
    for model in (ref, ours):
        model.requires_grad_(weights_grad)
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=input_grad)
    hx = torch.randn(4, 2, 4, dtype=torch.float64, requires_grad=hx_grad)
    if not (input_grad or hx_grad or weights_grad):
        for model in (ref, ours):
            out, h = model(x, hx)
            assert not out.requires_grad and not h.requires_grad
        return
    _compare(ref, ours, [x, hx], name="requires_grad")
    # .backward() populates the same .grad fields
    for model in (ref, ours):
        model.zero_grad(set_to_none=True)
    leaves = []
    for model in (ref, ours):
        xl, hl = x.clone().detach().requires_grad_(input_grad), hx.clone().detach().requires_grad_(hx_grad)
        random_loss(list(model(xl, hl))).backward()
        leaves.append((xl.grad, hl.grad, [p.grad for p in model.parameters()]))
    (rx, rh, rp), (ox, oh, op) = leaves
    for a, b in [(ox, rx), (oh, rh), *zip(op, rp)]:
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a, b, name=".grad")


def test_first_layer_frozen_only():
    ref, ours = twin_rnn(3, 4, 3, dtype=torch.float64)
    for model in (ref, ours):
        for name, p in model.named_parameters():
            p.requires_grad_("_l0" not in name)
    _compare(ref, ours, [torch.randn(5, 2, 3, dtype=torch.float64)], name="partly frozen")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_no_grad_and_inference_mode(mode):
    ref, ours = twin_rnn(3, 4, 2, bidirectional=True)
    cref, cours = _twin_cell(3, 4)
    x = torch.randn(5, 2, 3, requires_grad=True)
    ctx = torch.no_grad if mode == "no_grad" else torch.inference_mode
    with ctx():
        ref_out, ref_h = ref(x)
        out, h = ours(x)
        c_ref, c_ours = cref(x[0]), cours(x[0])
    for a, b in [(out, ref_out), (h, ref_h), (c_ours, c_ref)]:
        assert not a.requires_grad and a.grad_fn is None
        assert a.is_inference() == b.is_inference()
        assert_close(a, b, name=mode)


# ---------------------------------------------------------------- double backward
def test_double_backward_matches_torch():
    """A gradient penalty: d/dW of |d loss / d x|^2, as nn.RNN computes it."""
    ref, ours = twin_rnn(3, 4, 2, bidirectional=True, dtype=torch.float64)
    penalties = []
    for model in (ref, ours):
        x = torch.randn(5, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
        out, h = model(x)
        (gx,) = torch.autograd.grad(random_loss([out, h]), x, create_graph=True)
        penalties.append(torch.autograd.grad(gx.pow(2).sum(), list(model.parameters())))
    for i, (a, b) in enumerate(zip(penalties[1], penalties[0])):
        assert_close(a, b, name=f"second derivative {i}")


@pytest.mark.parametrize("lengths", [None, [3, 1]], ids=["padded", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_op_gradgradcheck(reverse, lengths):
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(*s, dtype=torch.float64, generator=g).requires_grad_()
            for s in ((3, 2, 2), (2, 3), (3, 2), (3, 3), (3,), (3,))]
    L = torch.tensor(lengths) if lengths else None

    def f(x, h, wi, wh, bi, bh):
        return torch.ops.fastrnn.rnn_forward(x, h, wi, wh, bi, bh, L, reverse, "tanh")

    assert torch.autograd.gradgradcheck(f, args)


def test_rnn_backward_op_itself_is_not_differentiable():
    x = torch.randn(3, 2, 2, requires_grad=True)
    h, wi, wh = torch.zeros(2, 3), torch.randn(3, 2), torch.randn(3, 3)
    y = torch.ops.fastrnn.rnn_forward(x.detach(), h, wi, wh, None, None, None, False, "tanh")
    grads = torch.ops.fastrnn.rnn_backward(torch.ones_like(y), x, h, wi, wh, y, None, False, "tanh", [True, True])
    with pytest.raises(RuntimeError, match="rnn_backward has no derivative"):
        grads[0].sum().backward()


# ---------------------------------------------------------------- module life cycle
CONFIGS = {
    "L1": dict(),
    "L3-bi": dict(num_layers=3, bidirectional=True),
    "no-bias-relu": dict(bias=False, nonlinearity="relu"),
    "L2-batch_first": dict(num_layers=2, batch_first=True),
}


@pytest.mark.parametrize("config", list(CONFIGS), ids=str)
def test_state_dict_round_trips(config):
    kwargs = CONFIGS[config]
    torch.manual_seed(1)
    theirs = nn.RNN(3, 4, **kwargs)
    ours = fastrnn.RNN(3, 4, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())  # nn -> fastrnn, strict
    x = torch.randn(2, 5, 3) if kwargs.get("batch_first") else torch.randn(5, 2, 3)
    _compare(theirs, ours, [x], dtype=torch.float32, name="nn -> fastrnn")
    torch.manual_seed(2)
    ours2 = fastrnn.RNN(3, 4, **kwargs)
    theirs.load_state_dict(ours2.state_dict())  # fastrnn -> nn, strict
    _compare(theirs, ours2, [x], dtype=torch.float32, name="fastrnn -> nn")
    for (n1, a), (n2, b) in zip(ours2.state_dict().items(), theirs.state_dict().items()):
        assert n1 == n2 and torch.equal(a, b)


def test_cell_state_dict_round_trips():
    theirs, ours = _twin_cell(3, 4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(fastrnn.RNNCell(3, 4).state_dict())
    ours.load_state_dict(theirs.state_dict())
    _compare(theirs, ours, [torch.randn(2, 3)], dtype=torch.float32, name="cell")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_module_to_dtype(dtype):
    ref, ours = twin_rnn(3, 4, 2, bidirectional=True)
    ref, ours = ref.to(dtype), ours.to(dtype)
    assert all(p.dtype == dtype for p in ours.parameters())
    x = torch.randn(5, 2, 3).to(dtype)
    (out, h), _ = assert_modules_track_truth(ref, ours, [x], Terms.of(5, 2, 3, 4, 2, True))
    assert out.dtype == dtype and h.dtype == dtype
    with pytest.raises(ValueError, match="dtype"):
        ours(x.float() if dtype != torch.float32 else x.double())


def _round_trips(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    state = io.BytesIO()
    torch.save(model.state_dict(), state)
    state.seek(0)
    fresh = copy.deepcopy(model)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    fresh.load_state_dict(torch.load(state, weights_only=True))
    return {
        "deepcopy": copy.deepcopy(model),
        "pickle": pickle.loads(pickle.dumps(model)),
        "torch.save": torch.load(buf, weights_only=False),
        "state_dict-weights_only": fresh,
    }


@pytest.mark.parametrize("kind", ["RNN", "RNNCell"])
def test_copy_pickle_save_load(kind):
    torch.manual_seed(0)
    if kind == "RNN":
        model = fastrnn.RNN(3, 4, 2, bidirectional=True, nonlinearity="relu", backend="native")
        x = torch.randn(5, 2, 3)
    else:
        model = fastrnn.RNNCell(3, 4, nonlinearity="relu", backend="native")
        x = torch.randn(2, 3)
    expected = model(x)
    for how, clone in _round_trips(model).items():
        assert type(clone) is type(model) and clone.backend == "native", how
        assert repr(clone) == repr(model), how
        for a, b in zip(clone.parameters(), model.parameters()):
            assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), how
        got = clone(x)
        for a, b in zip(got if isinstance(got, tuple) else [got], expected if isinstance(expected, tuple) else [expected]):
            assert torch.equal(a, b), how


# ---------------------------------------------------------------- autocast, degenerate op sizes
@pytest.mark.parametrize("input_dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("kind", ["RNN", "RNN-packed", "RNNCell"])
def test_cpu_autocast_like_torch(kind, input_dtype):
    """Under autocast nn.RNN runs in the autocast dtype (bfloat16 on CPU), whatever the input's
    float dtype; fastrnn does the same, and float32 parameters get float32 gradients. Both
    against the float64 truth on the bfloat16-rounded weights and input (what autocast computes
    with): fastrnn rounds once per op, nn.RNN after every op."""
    if kind == "RNNCell":
        ref, ours = _twin_cell(3, 5)
        x = torch.randn(4, 3)
        terms = Terms.of(1, 4, 3, 5)
    else:
        ref, ours = twin_rnn(3, 5, 2, bidirectional=True)
        x = torch.randn(6, 4, 3)
        terms = Terms.of(6, 4, 3, 5, 2, True)
    x = x.to(input_dtype).requires_grad_()

    def forward(model, inp):
        # the truth runs outside autocast, in float64
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=inp.dtype != torch.float64):
            if kind == "RNN-packed":
                out, h = model(pack_padded_sequence(inp, torch.tensor([6, 2, 5, 1]), enforce_sorted=False))
                outs = [out.data, h]
            else:
                out = model(inp)
                outs = list(out) if isinstance(out, tuple) else [out]
        assert all(o.dtype == (torch.float64 if inp.dtype == torch.float64 else torch.bfloat16) for o in outs)
        return outs

    _, grads = assert_modules_track_truth(ref, ours, [x], terms, forward, dtype=torch.bfloat16,
                                          truth_inputs_round_to=torch.bfloat16)
    assert grads[0].dtype == input_dtype and all(g.dtype == torch.float32 for g in grads[1:])


DEGENERATE = [(0, 4, 5), (2, 0, 5), (2, 4, 0), (0, 0, 0)]


@pytest.mark.parametrize("with_lengths", [False, True], ids=["padded", "lengths"])
@pytest.mark.parametrize(("B", "I", "H"), DEGENERATE, ids=[f"B{b}-I{i}-H{h}" for b, i, h in DEGENERATE])
def test_op_degenerate_sizes(B, I, H, with_lengths):
    """Empty batch, input or hidden dimension reach the op only by direct calls (nn.RNN refuses
    I = 0 and H = 0): it must still give the reference's answer, not garbage."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    args = [r(3, B, I), r(B, H), r(H, I), r(H, H), r(H), r(H)]
    lengths = torch.full((B,), 2) if with_lengths else None
    results = []
    for fn in (fastrnn.reference.rnn_forward, torch.ops.fastrnn.rnn_forward):
        y = fn(*args, lengths, True, "tanh")
        results.append([y, *grads_of(random_loss([y]), args)])
    for i, (a, b) in enumerate(zip(results[1], results[0])):
        assert_close(a, b, name=f"tensor {i}")
