"""Bad input gets a clear error: the module raises what torch.nn raises, and the ops check.

Module cases run the same call on torch.nn and on fastrnn: fastrnn must raise the same
exception type, and its message must name the argument at fault (nn's often does not).
Op cases call torch.ops.fastrnn.* directly with every malformed tensor a caller can pass:
the op must raise a clear error naming the argument, never crash or read out of bounds.
Odd layouts that are valid (non-contiguous, expanded, offset) must give the right answer:
see test_op_layouts_compute_the_right_answer.
"""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from fastrnn import reference
from helpers import Terms, assert_close, assert_tracks_truth

I, H = 3, 4  # module sizes used by the call cases


def _packed(feature=I, dtype=torch.float32):
    x = torch.randn(5, 3, feature).to(dtype)
    return pack_padded_sequence(x, torch.tensor([5, 3, 2]), enforce_sorted=False)


# id -> (call(mod) that must fail, word(s) our message must contain)
# `mod` is torch.nn or fastrnn; every call builds its module from it.
MODULE_CASES = {
    # --- constructor arguments
    "rnn-nonlinearity-sigmoid": (lambda m: m.RNN(I, H, nonlinearity="sigmoid"), "nonlinearity"),
    "rnn-nonlinearity-None": (lambda m: m.RNN(I, H, nonlinearity=None), "nonlinearity"),
    "rnn-hidden_size-0": (lambda m: m.RNN(I, 0), "hidden_size"),
    "rnn-hidden_size--1": (lambda m: m.RNN(I, -1), "hidden_size"),
    "rnn-input_size-0": (lambda m: m.RNN(0, H), "input_size"),
    "rnn-input_size--3": (lambda m: m.RNN(-3, H), "input_size"),
    "rnn-num_layers-0": (lambda m: m.RNN(I, H, 0), "num_layers"),
    "rnn-num_layers--1": (lambda m: m.RNN(I, H, -1), "num_layers"),
    "rnn-hidden_size-float": (lambda m: m.RNN(I, 2.0), "hidden_size"),
    "rnn-input_size-float": (lambda m: m.RNN(3.0, H), "input_size"),
    "rnn-num_layers-float": (lambda m: m.RNN(I, H, 2.0), "num_layers"),
    "rnn-dropout--0.1": (lambda m: m.RNN(I, H, 2, dropout=-0.1), "dropout"),
    "rnn-dropout-1.5": (lambda m: m.RNN(I, H, 2, dropout=1.5), "dropout"),
    "rnn-dropout-nan": (lambda m: m.RNN(I, H, 2, dropout=float("nan")), "dropout"),
    "rnn-dropout-bool": (lambda m: m.RNN(I, H, 2, dropout=True), "dropout"),
    "rnn-dropout-str": (lambda m: m.RNN(I, H, 2, dropout="0.1"), "dropout"),
    "rnn-bias-int": (lambda m: m.RNN(I, H, bias=1), "bias"),
    "rnn-batch_first-int": (lambda m: m.RNN(I, H, batch_first=1), "batch_first"),
    "cell-hidden_size-float": (lambda m: m.RNNCell(I, 4.0), "hidden_size"),
    # --- RNN forward
    "rnn-input-0D": (lambda m: m.RNN(I, H)(torch.tensor(1.0)), "input"),
    "rnn-input-1D": (lambda m: m.RNN(I, H)(torch.randn(I)), "input"),
    "rnn-input-4D": (lambda m: m.RNN(I, H)(torch.randn(2, 2, 2, I)), "input"),
    "rnn-feature-size": (lambda m: m.RNN(I, H)(torch.randn(5, 2, 7)), "input_size"),
    "rnn-feature-size-0": (lambda m: m.RNN(I, H)(torch.randn(5, 2, 0)), "input_size"),
    "rnn-feature-size-unbatched": (lambda m: m.RNN(I, H)(torch.randn(5, 7)), "input_size"),
    "rnn-feature-size-batch_first": (
        lambda m: m.RNN(I, H, batch_first=True)(torch.randn(2, 5, 7)), "input_size"),
    "rnn-seq-len-0": (lambda m: m.RNN(I, H)(torch.randn(0, 2, I)), "sequence length"),
    "rnn-seq-len-0-batch-0": (lambda m: m.RNN(I, H)(torch.randn(0, 0, I)), "sequence length"),
    "rnn-seq-len-0-unbatched": (lambda m: m.RNN(I, H)(torch.randn(0, I)), "sequence length"),
    "rnn-seq-len-0-batch_first": (
        lambda m: m.RNN(I, H, batch_first=True)(torch.randn(2, 0, I)), "sequence length"),
    "rnn-input-int64": (lambda m: m.RNN(I, H)(torch.zeros(5, 2, I, dtype=torch.long)), "dtype"),
    "rnn-input-int32": (lambda m: m.RNN(I, H)(torch.zeros(5, 2, I, dtype=torch.int32)), "dtype"),
    "rnn-input-bool": (lambda m: m.RNN(I, H)(torch.zeros(5, 2, I, dtype=torch.bool)), "dtype"),
    "rnn-input-float64-weights-float32": (
        lambda m: m.RNN(I, H)(torch.zeros(5, 2, I, dtype=torch.float64)), "dtype"),
    "rnn-input-float16-weights-float32": (
        lambda m: m.RNN(I, H)(torch.zeros(5, 2, I, dtype=torch.float16)), "dtype"),
    "rnn-hx-shape": (lambda m: m.RNN(I, H, 2)(torch.randn(5, 2, I), torch.randn(2, 3, H)), "hidden size"),
    "rnn-hx-hidden": (lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.randn(1, 2, H + 1)), "hidden size"),
    "rnn-hx-layers-bidirectional": (
        lambda m: m.RNN(I, H, bidirectional=True)(torch.randn(5, 2, I), torch.randn(1, 2, H)), "hidden size"),
    "rnn-hx-2D-for-3D-input": (lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.randn(2, H)), "hx"),
    "rnn-hx-3D-for-2D-input": (lambda m: m.RNN(I, H)(torch.randn(5, I), torch.randn(1, 1, H)), "hx"),
    "rnn-hx-float64": (
        lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.randn(1, 2, H, dtype=torch.float64)), "hx"),
    "rnn-hx-int64": (
        lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.zeros(1, 2, H, dtype=torch.long)), "hx"),
    "rnn-hx-float16": (
        lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.zeros(1, 2, H, dtype=torch.float16)), "hx"),
    "rnn-hx-meta-device": (
        lambda m: m.RNN(I, H)(torch.randn(5, 2, I), torch.randn(1, 2, H, device="meta")), "hx"),
    "rnn-input-meta-weights-cpu": (lambda m: m.RNN(I, H)(torch.randn(5, 2, I, device="meta")), "input"),
    "rnn-input-cpu-weights-meta": (lambda m: m.RNN(I, H, device="meta")(torch.randn(5, 2, I)), "input"),
    "rnn-packed-int64": (lambda m: m.RNN(I, H)(_packed(dtype=torch.long)), "dtype"),
    "rnn-packed-feature-size": (lambda m: m.RNN(I, H)(_packed(feature=7)), "input_size"),
    "rnn-packed-hx-batch": (lambda m: m.RNN(I, H)(_packed(), torch.randn(1, 2, H)), "hidden size"),
    "rnn-packed-hx-2D": (lambda m: m.RNN(I, H)(_packed(), torch.randn(3, H)), "hidden size"),
    "rnn-packed-hx-float64": (
        lambda m: m.RNN(I, H)(_packed(), torch.randn(1, 3, H, dtype=torch.float64)), "hx"),
    # --- RNNCell forward
    "cell-input-0D": (lambda m: m.RNNCell(I, H)(torch.tensor(1.0)), "input"),
    "cell-input-3D": (lambda m: m.RNNCell(I, H)(torch.randn(2, 2, I)), "input"),
    "cell-hx-3D": (lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(1, 2, H)), "hidden"),
    "cell-feature-size": (lambda m: m.RNNCell(I, H)(torch.randn(2, 7)), "input_size"),
    "cell-feature-size-unbatched": (lambda m: m.RNNCell(I, H)(torch.randn(7)), "input_size"),
    "cell-hx-batch": (lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(3, H)), "hidden"),
    "cell-hx-1D-for-2D-input": (lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(H)), "hidden"),
    "cell-hx-2D-for-1D-input": (lambda m: m.RNNCell(I, H)(torch.randn(I), torch.randn(1, H)), "hidden"),
    "cell-hx-hidden": (lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(2, H + 1)), "hidden"),
    "cell-input-int64": (lambda m: m.RNNCell(I, H)(torch.zeros(2, I, dtype=torch.long)), "dtype"),
    "cell-input-bool": (lambda m: m.RNNCell(I, H)(torch.zeros(2, I, dtype=torch.bool)), "dtype"),
    "cell-input-float64-weights-float32": (
        lambda m: m.RNNCell(I, H)(torch.zeros(2, I, dtype=torch.float64)), "dtype"),
    "cell-hx-float64": (
        lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(2, H, dtype=torch.float64)), "hx"),
    "cell-input-meta-weights-cpu": (lambda m: m.RNNCell(I, H)(torch.randn(2, I, device="meta")), "input"),
    "cell-input-cpu-weights-meta": (lambda m: m.RNNCell(I, H, device="meta")(torch.randn(2, I)), "input"),
    "cell-hx-meta-device": (
        lambda m: m.RNNCell(I, H)(torch.randn(2, I), torch.randn(2, H, device="meta")), "hx"),
}


def _raised(call, mod):
    try:
        call(mod)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return e
    return None


class _Backend:
    """fastrnn's module namespace with a fixed backend: the checks must not depend on it."""

    def __init__(self, backend):
        self.RNN = lambda *a, **k: fastrnn.RNN(*a, backend=backend, **k)
        self.RNNCell = lambda *a, **k: fastrnn.RNNCell(*a, backend=backend, **k)


# These tables use CPU tensors: Triton joins them only where it runs on CPU tensors (its
# interpreter); with a GPU, test_triton.py checks its arguments on CUDA tensors.
_HAVE_TRITON = fastrnn.backends.triton_usable("cpu")
MODULE_BACKENDS = ["auto", "reference"] + (["triton"] if _HAVE_TRITON else [])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("backend", MODULE_BACKENDS)
@pytest.mark.parametrize("case", list(MODULE_CASES), ids=str)
def test_module_rejects_like_torch(case, backend):
    call, word = MODULE_CASES[case]
    theirs = _raised(call, nn)
    assert theirs is not None, f"torch.nn accepts {case}: the case is wrong"
    ours = _raised(call, _Backend(backend))
    assert ours is not None, f"fastrnn accepts {case}, torch.nn raises {type(theirs).__name__}: {theirs}"
    assert type(ours) is type(theirs), (
        f"{case}: fastrnn raised {type(ours).__name__} ({ours}), torch.nn {type(theirs).__name__} ({theirs})"
    )
    assert word.lower() in str(ours).lower(), f"{case}: message does not name {word!r}: {ours}"


# Deliberate differences, each stricter or clearer than torch.nn (documented here so a
# reader sees them): nn raises something accidental, or accepts a value only by luck.
DELIBERATE = {
    # nn: AttributeError "'list' object has no attribute 'dim'"
    "rnn-input-list": (lambda m: m.RNN(I, H)([1.0, 2.0]), TypeError, "input"),
    # nn.RNNCell accepts any string and fails at the first forward with RuntimeError
    "cell-nonlinearity-gelu": (lambda m: m.RNNCell(I, H, nonlinearity="gelu"), ValueError, "nonlinearity"),
    # nn.RNNCell accepts hidden_size 0 (nn.RNN refuses it); negative sizes fail in torch.empty
    "cell-hidden_size-0": (lambda m: m.RNNCell(I, 0), ValueError, "hidden_size"),
    "cell-input_size--2": (lambda m: m.RNNCell(-2, H), ValueError, "input_size"),
    # nn fails in its C++ op with an argument-parser error listing overloads
    "rnn-bidirectional-int": (lambda m: m.RNN(I, H, bidirectional=1), TypeError, "bidirectional"),
    "rnn-num_layers-bool": (lambda m: m.RNN(I, H, num_layers=True), TypeError, "num_layers"),
    # fastrnn computes real floating point dtypes only (nn.RNN happens to run complex on CPU)
    "rnn-complex64": (
        lambda m: m.RNN(I, H).to(torch.complex64)(torch.randn(5, 2, I, dtype=torch.complex64)),
        ValueError, "floating point"),
}


@pytest.mark.filterwarnings("ignore:Complex modules")
@pytest.mark.parametrize("case", list(DELIBERATE), ids=str)
def test_module_rejects_clearer_than_torch(case):
    call, kind, word = DELIBERATE[case]
    with pytest.raises(kind, match=f"(?i){word}"):
        call(fastrnn)


@pytest.mark.parametrize("value", [np.int64(2), np.int32(3)], ids=["np.int64", "np.int32"])
def test_integral_sizes_accepted(value):
    rnn = fastrnn.RNN(I, H, num_layers=value)
    assert rnn.num_layers == int(value) and type(rnn.num_layers) is int
    out, h_n = rnn(torch.randn(5, 2, I))
    assert h_n.shape == (int(value), 2, H)
    cell = fastrnn.RNNCell(np.int64(I), np.int64(H))
    assert cell(torch.randn(2, I)).shape == (2, H)


def test_nonlinearity_checked_by_op_and_reference():
    x, h = torch.randn(2, 1, I), torch.zeros(1, H)
    w_ih, w_hh = torch.randn(H, I), torch.randn(H, H)
    for fn in (torch.ops.fastrnn.rnn_forward, reference.rnn_forward):
        with pytest.raises(ValueError, match="nonlinearity"):
            fn(x, h, w_ih, w_hh, None, None, None, False, "gelu")
    y = torch.ops.fastrnn.rnn_forward(x, h, w_ih, w_hh, None, None, None, False, "tanh")
    with pytest.raises(ValueError, match="nonlinearity"):
        torch.ops.fastrnn.rnn_backward(y, x, h, w_ih, w_hh, y, None, False, "sigmoid", [True, True])


# ----------------------------------------------------------------------------- the ops
T, B, OI, OH = 5, 3, 4, 6


def _op_args(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    return {
        "input": r(T, B, OI),  # [T, B, I]
        "hx": r(B, OH),  # [B, H]
        "weight_ih": r(OH, OI) * 0.5,  # [H, I]
        "weight_hh": r(OH, OH) * 0.3,  # [H, H]
        "bias_ih": r(OH),  # [H]
        "bias_hh": r(OH),  # [H]
        "lengths": torch.tensor([5, 2, 3]),  # [B]
    }


def _triton_forward(*args):
    from fastrnn.triton import rnn_forward

    return rnn_forward(*args)


# The forward every backend's layers call, by backend; each must check its arguments alike.
# (Triton runs in its interpreter without a GPU; its float64 is the reference, so float32.)
FORWARDS = {"native": (lambda *a: torch.ops.fastrnn.rnn_forward(*a), torch.float64)}
if _HAVE_TRITON:
    FORWARDS["triton"] = (_triton_forward, torch.float32)


def _fwd(a, reverse=False, nonlinearity="tanh", fn=None):
    fn = fn or torch.ops.fastrnn.rnn_forward
    return fn(a["input"], a["hx"], a["weight_ih"], a["weight_hh"], a["bias_ih"], a["bias_hh"],
              a["lengths"], reverse, nonlinearity)


def _bwd(a, grad_output, output, mask=(True, True), reverse=False):
    return torch.ops.fastrnn.rnn_backward(grad_output, a["input"], a["hx"], a["weight_ih"],
                                          a["weight_hh"], output, a["lengths"], reverse, "tanh",
                                          list(mask))


# id -> (argument, replacement(args) -> tensor | None, expected exception[, message regex])
OP_FORWARD_CASES = {
    "input-2D": ("input", lambda a: a["input"][0], RuntimeError),
    "input-4D": ("input", lambda a: a["input"][None], RuntimeError),
    "input-int64": ("input", lambda a: a["input"].long(), ValueError),
    "input-bool": ("input", lambda a: a["input"] > 0, ValueError),
    "input-T0": ("input", lambda a: a["input"][:0], RuntimeError),
    # Sizes that disagree between two arguments: either may be named, with both shapes.
    "input-feature-size": ("input", lambda a: torch.randn(T, B, OI + 1), RuntimeError, r"weight_ih.*\[6, 5\]"),
    "input-batch": ("input", lambda a: torch.randn(T, B + 1, OI), RuntimeError, r"hx.*\[4, 6\]"),
    "input-float64": ("input", lambda a: a["input"].double(), RuntimeError),
    "input-meta": ("input", lambda a: a["input"].to("meta"), RuntimeError),
    "hx-1D": ("hx", lambda a: a["hx"][0], RuntimeError),
    "hx-3D": ("hx", lambda a: a["hx"][None], RuntimeError),
    "hx-batch": ("hx", lambda a: a["hx"][:2], RuntimeError),
    "hx-hidden": ("hx", lambda a: torch.randn(B, OH + 1), RuntimeError),
    "hx-float64": ("hx", lambda a: a["hx"].double(), RuntimeError),
    "hx-int64": ("hx", lambda a: a["hx"].long(), RuntimeError),
    "hx-meta": ("hx", lambda a: a["hx"].to("meta"), RuntimeError),
    "weight_ih-transposed-shape": ("weight_ih", lambda a: a["weight_ih"].t(), RuntimeError),
    "weight_ih-3D": ("weight_ih", lambda a: a["weight_ih"][None], RuntimeError),
    "weight_ih-float16": ("weight_ih", lambda a: a["weight_ih"].half(), RuntimeError),
    "weight_ih-meta": ("weight_ih", lambda a: a["weight_ih"].to("meta"), RuntimeError),
    "weight_hh-not-square": ("weight_hh", lambda a: a["weight_hh"][:, :-1], RuntimeError),
    "weight_hh-1D": ("weight_hh", lambda a: a["weight_hh"][0], RuntimeError),
    "weight_hh-3D": ("weight_hh", lambda a: a["weight_hh"][None], RuntimeError),
    "weight_hh-float64": ("weight_hh", lambda a: a["weight_hh"].double(), RuntimeError),
    "weight_hh-meta": ("weight_hh", lambda a: a["weight_hh"].to("meta"), RuntimeError),
    "bias_ih-missing": ("bias_ih", lambda a: None, RuntimeError),
    "bias_hh-missing": ("bias_hh", lambda a: None, RuntimeError),
    "bias_ih-2D": ("bias_ih", lambda a: a["bias_ih"][None], RuntimeError),
    "bias_ih-size": ("bias_ih", lambda a: a["bias_ih"][:-1], RuntimeError),
    "bias_hh-0D": ("bias_hh", lambda a: a["bias_hh"][0], RuntimeError),
    "bias_hh-float64": ("bias_hh", lambda a: a["bias_hh"].double(), RuntimeError),
    "bias_hh-meta": ("bias_hh", lambda a: a["bias_hh"].to("meta"), RuntimeError),
    "lengths-int32": ("lengths", lambda a: a["lengths"].int(), RuntimeError),
    "lengths-float": ("lengths", lambda a: a["lengths"].float(), RuntimeError),
    "lengths-bool": ("lengths", lambda a: a["lengths"] > 2, RuntimeError),
    "lengths-0D": ("lengths", lambda a: a["lengths"][0], RuntimeError),
    "lengths-2D": ("lengths", lambda a: a["lengths"][None], RuntimeError),
    "lengths-short": ("lengths", lambda a: a["lengths"][:2], RuntimeError),
    "lengths-long": ("lengths", lambda a: torch.tensor([5, 2, 3, 1]), RuntimeError),
    "lengths-meta": ("lengths", lambda a: a["lengths"].to("meta"), RuntimeError),
}


@pytest.mark.parametrize("backend", list(FORWARDS))
@pytest.mark.parametrize("case", list(OP_FORWARD_CASES), ids=str)
def test_op_forward_rejects(case, backend):
    name, make, kind, *pattern = OP_FORWARD_CASES[case]
    a = _op_args()
    a[name] = make(a)
    # The C++ op's exception types are the contract; other backends must at least raise
    # one of the two with a message naming the argument.
    kind = kind if backend == "native" else (RuntimeError, ValueError)
    with pytest.raises(kind, match=pattern[0] if pattern else ("bias" if name.startswith("bias") else name)):
        _fwd(a, fn=FORWARDS[backend][0])


def test_op_forward_all_meta_checks_too():
    """An all-'meta' call runs the fake kernel: same checks, right output shape."""
    a = {k: v.to("meta") for k, v in _op_args().items()}
    assert _fwd(a).shape == (T, B, OH) and _fwd(a).device.type == "meta"
    a["hx"] = a["hx"][:2]
    with pytest.raises(RuntimeError, match="hx must have shape"):
        _fwd(a)


# id -> (argument of rnn_backward, replacement(args, y, dy)[, message regex])
OP_BACKWARD_CASES = {
    "grad_output-shape": ("grad_output", lambda a, y, dy: dy[:2]),
    "grad_output-2D": ("grad_output", lambda a, y, dy: dy[0]),
    "grad_output-float64": ("grad_output", lambda a, y, dy: dy.double()),
    "grad_output-meta": ("grad_output", lambda a, y, dy: dy.to("meta")),
    "output-shape": ("output", lambda a, y, dy: y[:, :2]),
    "output-hidden": ("output", lambda a, y, dy: torch.randn(T, B, OH + 1)),
    "output-float16": ("output", lambda a, y, dy: y.half()),
    "output-meta": ("output", lambda a, y, dy: y.to("meta")),
    "input-feature-size": ("input", lambda a, y, dy: torch.randn(T, B, OI + 1), r"weight_ih.*\[6, 5\]"),
    "input-T0": ("input", lambda a, y, dy: a["input"][:0]),
    "input-int64": ("input", lambda a, y, dy: a["input"].long()),
    "hx-batch": ("hx", lambda a, y, dy: a["hx"][:1]),
    "hx-meta": ("hx", lambda a, y, dy: a["hx"].to("meta")),
    "weight_ih-shape": ("weight_ih", lambda a, y, dy: a["weight_ih"].t()),
    "weight_hh-float64": ("weight_hh", lambda a, y, dy: a["weight_hh"].double()),
    "lengths-int32": ("lengths", lambda a, y, dy: a["lengths"].int()),
    "lengths-short": ("lengths", lambda a, y, dy: a["lengths"][:1]),
    "lengths-meta": ("lengths", lambda a, y, dy: a["lengths"].to("meta")),
}


@pytest.mark.parametrize("case", list(OP_BACKWARD_CASES), ids=str)
def test_op_backward_rejects(case):
    name, make, *pattern = OP_BACKWARD_CASES[case]
    a = _op_args()
    y = _fwd(a)
    dy = torch.randn_like(y)
    args = {"grad_output": dy, "output": y, **a}
    args[name] = make(a, y, dy)
    with pytest.raises((RuntimeError, ValueError), match=pattern[0] if pattern else name):
        torch.ops.fastrnn.rnn_backward(args["grad_output"], args["input"], args["hx"],
                                       args["weight_ih"], args["weight_hh"], args["output"],
                                       args["lengths"], False, "tanh", [True, True])


def test_op_sparse_input_rejected():
    a = _op_args()
    a["input"] = a["input"].to_sparse()
    with pytest.raises((RuntimeError, NotImplementedError)):
        _fwd(a)


def _strided_variant(t: torch.Tensor, kind: str) -> torch.Tensor:
    """Same values as ``t``, stored another way; the gaps hold poison that a misread would pick up."""
    poison = float("nan") if t.is_floating_point() else 99
    if kind == "noncontiguous":  # every other element of a wider buffer
        wide = torch.full((*t.shape[:-1], 2 * t.shape[-1]), poison, dtype=t.dtype)
        wide[..., ::2] = t
        return wide[..., ::2]
    if kind == "offset":  # a view that starts inside its storage
        flat = torch.full((t.numel() + 7,), poison, dtype=t.dtype)
        flat[7:] = t.flatten()
        return flat[7:].view(t.shape)
    if kind == "transposed":  # first and last dimension swapped in memory
        return t.transpose(0, -1).contiguous().transpose(0, -1)
    raise AssertionError(kind)


LAYOUT_CASES = [(n, k) for n in ("input", "hx", "weight_ih", "weight_hh") for k in ("noncontiguous", "offset", "transposed")]
LAYOUT_CASES += [(n, k) for n in ("bias_ih", "bias_hh", "lengths") for k in ("noncontiguous", "offset")]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(("name", "kind"), LAYOUT_CASES, ids=[f"{n}-{k}" for n, k in LAYOUT_CASES])
@pytest.mark.parametrize("backend", list(FORWARDS))
def test_op_layouts_compute_the_right_answer(name, kind, reverse, backend):
    fn, dtype = FORWARDS[backend]
    a = _op_args(dtype)
    expected = _fwd(a, reverse, fn=reference.rnn_forward)
    truth = _fwd({k: (v.double() if v.is_floating_point() else v) for k, v in a.items()}, reverse,
                 fn=reference.rnn_forward)
    a[name] = _strided_variant(a[name], kind)
    assert not a[name].is_contiguous() or kind == "offset"
    assert_tracks_truth(_fwd(a, reverse, fn=fn), expected, truth, dtype, Terms.of(T, B, OI, OH).forward,
                        name=f"{name} {kind}")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_op_expanded_stride0_arguments(reverse):
    """Broadcast views (stride 0) are valid input: a zero-stride buffer must not be written or misread."""
    a = _op_args(torch.float64)
    a["input"] = torch.randn(1, 1, OI, dtype=torch.float64).expand(T, B, OI)
    a["hx"] = torch.randn(1, OH, dtype=torch.float64).expand(B, OH)
    a["bias_ih"] = torch.tensor(0.25, dtype=torch.float64).expand(OH)
    a["lengths"] = torch.tensor(4).expand(B)
    contiguous = {k: v.contiguous() for k, v in a.items()}
    expected = _fwd(contiguous, reverse, fn=reference.rnn_forward)
    y = _fwd(a, reverse)
    assert_close(y, expected, name="expanded forward")
    # The gradient autograd hands in for y.sum() is an expanded tensor too.
    dy = torch.ones(1, 1, 1, dtype=torch.float64).expand(T, B, OH)
    got = _bwd(a, dy, y, reverse=reverse)
    want = _reference_grads(contiguous, dy.contiguous(), reverse)
    for g, w, n in zip(got, want, ["grad_input", "grad_hx", "grad_weight_ih", "grad_weight_hh", "grad_bias"]):
        assert_close(g, w, name=n)


def _reference_grads(a, dy, reverse=False):
    """(grad_input, grad_hx, grad_weight_ih, grad_weight_hh, grad_bias) of fastrnn.reference
    for the gradient dy, by autograd: what rnn_backward must return (csrc/rnn_ops.cpp)."""
    names = ["input", "hx", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    leaves = {k: (a[k].detach().clone().requires_grad_() if k in names else a[k]) for k in a}
    y = _fwd(leaves, reverse, fn=reference.rnn_forward)
    grads = torch.autograd.grad(y, [leaves[n] for n in names], dy)
    assert torch.equal(grads[4], grads[5])  # one bias gradient serves both biases
    return grads[:5]


def test_op_backward_noncontiguous_matches_reference_autograd():
    a = _op_args(torch.float64)
    leaves = {k: v.clone().requires_grad_() for k, v in a.items() if k != "lengths"}
    leaves["lengths"] = a["lengths"]
    y_ref = _fwd(leaves, fn=reference.rnn_forward)
    dy = torch.randn(T, B, OH, dtype=torch.float64)
    names = ["input", "hx", "weight_ih", "weight_hh", "bias_ih"]
    want = torch.autograd.grad(y_ref, [leaves[n] for n in names], dy)
    y = _fwd(a)
    strided = {k: (_strided_variant(v, "noncontiguous") if v.dim() >= 2 else v) for k, v in a.items()}
    got = _bwd(strided, _strided_variant(dy, "noncontiguous"), _strided_variant(y, "offset"))
    for n, g, w in zip(names, (got[0], got[1], got[2], got[3], got[4]), want):
        assert_close(g, w, name=n)


@pytest.mark.parametrize("mask", [(False, False), (True, False), (False, True), (True, True)], ids=str)
def test_op_backward_output_mask(mask):
    """Requested gradients equal the reference's; a False entry returns empty tensors in its
    places (csrc/rnn_ops.cpp: grad_input for mask[0]; the weight and bias gradients for
    mask[1]); grad_hx is always computed."""
    a = _op_args(torch.float64)
    y = _fwd(a)
    dy = torch.randn_like(y)
    part = _bwd(a, dy, y, mask=mask)
    want = _reference_grads(a, dy)
    assert_close(part[1], want[1], name="grad_hx")
    for i, requested in ((0, mask[0]), (2, mask[1]), (3, mask[1]), (4, mask[1])):
        if requested:
            assert_close(part[i], want[i], name=f"output {i}")
        else:
            assert part[i].numel() == 0, f"output {i} was not requested: must be empty, got {tuple(part[i].shape)}"


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", [[0, 0, 0], [-3, 9, 100], [5, 5, 5], [0, 5, 2]],
                         ids=["zeros", "out-of-range", "full", "mixed"])
def test_op_any_lengths_value_is_safe(lengths, reverse):
    """rnn.h: L_b <= 0 never updates row b, L_b >= T always does; no out-of-bounds access.
    Forward and every gradient equal the reference's (a row that never updates passes its
    gradient straight to grad_hx and contributes nothing to the weights)."""
    a = _op_args(torch.float64)
    a["lengths"] = torch.tensor(lengths)
    y = _fwd(a, reverse)
    assert_close(y, _fwd(a, reverse, fn=reference.rnn_forward), name="forward")
    dy = torch.randn_like(y)
    got = _bwd(a, dy, y, reverse=reverse)
    for g, w, n in zip(got, _reference_grads(a, dy, reverse),
                       ["grad_input", "grad_hx", "grad_weight_ih", "grad_weight_hh", "grad_bias"]):
        assert_close(g, w, name=n)
