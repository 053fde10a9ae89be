"""Test helpers: twin models with identical weights, per-dtype tolerances, gradient comparison,
and the float64-truth comparison (assert_tracks_truth) every float32 / half comparison uses."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import fastrnn

# (rtol, atol) per dtype for comparisons with torch.nn.RNN and with the reference.
# float32: the issue asks for 1e-5 relative or better; atol covers values near zero.
TOLERANCES = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 2e-5),
    # Reduced precision, against float32 results on the same rounded inputs: fastrnn computes
    # in float32 and rounds once, so a few ulps of the 11/8-bit mantissa plus accumulation.
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (4e-2, 4e-2),
}

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
GPU_DEVICES = ["cuda"] if torch.cuda.is_available() else []
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def triton_mode() -> str | None:
    """How fastrnn's Triton kernels run in this test process: "interpreter" (CPU tensors;
    TRITON_INTERPRET=1, which tests/conftest.py sets only where there is no GPU), "compiled"
    (CUDA tensors), or None (no triton, or compiled Triton without a GPU).

    Read once at import: Triton decides interpreted vs compiled when the kernels are
    decorated, so flipping the variable later changes nothing in this process. Whether
    Triton can run at all is fastrnn.backends.triton_status's answer (the one place).
    """
    if fastrnn.backends.triton_usable("cpu"):  # only under TRITON_INTERPRET=1
        return "interpreter"
    if torch.cuda.is_available() and fastrnn.backends.triton_usable("cuda"):
        return "compiled"
    return None


_NO_TRITON_INTERPRETER = (
    "Triton runs compiled in this process (a GPU is present); CPU tensors need the "
    "interpreter: test_triton.py::test_interpreter_suite_in_subprocess runs these with "
    "TRITON_INTERPRET=1 and no visible GPU")


def triton_devices(mode: str | None) -> list:
    """Device parameters for Triton tests: CPU tensors only under the interpreter, CUDA
    tensors only compiled. Both ids always exist, so a run says which half was skipped and why."""
    return [
        pytest.param("cpu", marks=pytest.mark.skipif(
            mode != "interpreter",
            reason=_NO_TRITON_INTERPRETER if mode == "compiled" else
            "Triton cannot run here: not installed, or TRITON_INTERPRET=0 without a GPU")),
        pytest.param("cuda", marks=pytest.mark.skipif(
            mode != "compiled", reason="needs a CUDA device and compiled Triton (TRITON_INTERPRET unset)")),
    ]


TRITON_MODE = triton_mode()
TRITON_DEVICES = triton_devices(TRITON_MODE)


def assert_close(actual, expected, dtype=None, name=""):
    rtol, atol = TOLERANCES[dtype or expected.dtype]
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")


def twin_rnn(*args, backend="auto", device="cpu", dtype=torch.float32, seed=0, **kwargs):
    """(torch.nn.RNN, fastrnn.RNN) with the same weights (fastrnn's loaded from nn.RNN's state_dict)."""
    torch.manual_seed(seed)
    ref = nn.RNN(*args, **kwargs).to(device=device, dtype=dtype)
    ours = fastrnn.RNN(*args, backend=backend, **kwargs).to(device=device, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def grads_of(loss: torch.Tensor, tensors):
    """Gradients of loss w.r.t. tensors (None for a tensor that loss does not depend on)."""
    return torch.autograd.grad(loss, tensors, allow_unused=True, retain_graph=True)


def random_loss(outputs, seed=1, round_to=None):
    """A loss that weighs every output element differently (a plain sum hides transposes).
    round_to: round the weights to this dtype first, so that a float64 truth run gets the
    very gradient dLoss/dy (= the weights) that a run in round_to gets."""
    total = 0
    for out, w in zip(outputs, loss_weights(outputs, seed, round_to)):
        total = total + (out * w.to(out.device, out.dtype)).sum()
    return total


def loss_weights(outputs, seed=1, round_to=None):
    """random_loss's weights (= dLoss/d output), float64, rounded to round_to if given."""
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(out.shape, generator=gen, dtype=torch.float64) for out in outputs]
    return [w.to(round_to).double() if round_to is not None else w for w in ws]


# ------------------------------------------------------------------ tolerances from a float64 truth
# Why not fixed tolerances: a float32 result that sums K products carries a rounding error that
# grows with K and with the magnitudes summed, and its size on a given machine depends on the
# summation order (SIMD width, blocking, threads). An absolute 2e-5 held on the machine it was
# written on and failed on another (a weight gradient summing 18,000 products, issue 10).
# Instead every float32 / float16 / bfloat16 result is compared with a float64 truth (the same
# computation on float64 copies of the same inputs and weights) and must satisfy BOTH:
#
# Both bounds' K u_c M terms are multiplied by recurrence_growth where it is measured (the op
# tests): >= 1 when the weights are larger than nn.RNN's and the recurrence amplifies errors.
#  (1) the worst-case bound of a K-term reduction (Higham, "Accuracy and Stability of Numerical
#      Algorithms", eq. 3.5: |fl(sum) - sum| <= gamma_K sum|terms|, gamma_K ~ K u), normwise:
#          max|err| <= (K u_c + r u_o) M,
#      u_c the unit roundoff of the compute type (float32 for the half types: rnn.h), u_o that of
#      the stored type when it is narrower (r = the number of times a result is rounded to it),
#      M the magnitude sum|terms| is measured by: max|truth| of the tensor, and for a gradient
#      at least max|dLoss/dy| * max|operand| (inputs, hx, weights): a gradient is a sum of
#      g * act'(y) * operand, and act'(y) = 1 - y^2, computed from a y that carries the
#      forward's error, cancels as |y| -> 1, so its error scales with |g| |operand| and not
#      with the attenuated result; K from Terms below (generous enough to cover the
#      cancellation in a sum of terms of both signs that max|truth| ignores);
#  (2) at most twice the error of an independent implementation in the same dtype against the
#      same truth (torch.nn.RNN, or fastrnn.reference in that dtype for the ops), plus a floor
#          2 err_baseline + (sqrt(K) u_c + r u_o) M,
#      the floor being the error a K-term sum has with independent roundings (Higham & Mary,
#      SIAM J. Sci. Comput. 2019: sqrt(K) u with high probability) plus the final roundings,
#      so a baseline that happens to be exact on a tiny case does not demand exactness.
# (1) catches a result that is wrong by more than rounding can explain; (2) keeps the check as
# tight as the best implementation on this machine (it is usually far tighter than (1)).
# Measured over test_parity, test_cpu_kernels, test_stress, test_edge_cases and test_errors
# (3,253 comparisons, AMD EPYC Zen 3, AVX2 and portable kernels, 1 and 2 threads): float32
# errors reached at most 0.12 of bound (1) and 0.87 of allowance (2) (relu, T = 129: fastrnn
# 173 u M, nn.RNN 67 u M); float16 / bfloat16 at most 0.73 / 0.86 of (2) (in float32 units,
# fastrnn within 1.8x nn.RNN's error everywhere); float32 gradients at most 0.73 of (2) even
# with half of Terms.backward's K. A floor below sqrt(K) u M (e.g. K^(1/4))
# would reject legitimate float32 results there: different summation orders give errors of
# the same size, not the same errors.
# float64 results are compared with their float64 baseline as before (TOLERANCES).
UNIT_ROUNDOFF = {dt: torch.finfo(dt).eps / 2 for dt in (torch.float64, torch.float32, torch.float16, torch.bfloat16)}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The type a kernel computes dtype in (rnn.h: the half types in float32)."""
    return fastrnn.reference.compute_dtype(dtype)


@dataclass(frozen=True)
class Terms:
    """K, the products behind one element of a result, for a stack of Elman layers.

    Forward, per layer: each step reduces I_l + H + 2 terms (x W_ih^T, h W_hh^T, two biases),
    and step t's error reaches every later step through the recurrence, which passes an error
    on without growing it when act' <= 1 and the weights are at nn.RNN's scale: T (I_l + H + 2).
    A layer's error is the next layer's input error, so the layers add up.
    Backward, per layer: the dz recurrence reduces H + 1 terms per step over T steps; dx adds
    H more; the weight and bias gradients sum over all T B (step, row) pairs; and every one
    uses the forward's y: K_forward + T (H + 1) + H + T B.
    I_l = I for the first layer and D H above it.
    """

    forward: int
    backward: int

    @staticmethod
    def of(T, B, I, H, num_layers=1, bidirectional=False):
        D = 2 if bidirectional else 1
        fwd = bwd = 0
        for layer in range(num_layers):
            I_l = I if layer == 0 else D * H
            step = T * (I_l + H + 2)
            fwd += step
            bwd += step + T * (H + 1) + H + T * max(B, 1)
        return Terms(max(fwd, 1), max(bwd, 1))


def assert_tracks_truth(actual, baseline, truth, dtype=None, terms=1, rounds=1, name="", magnitude=0.0,
                        growth=1.0):
    """actual (fastrnn) against truth (float64), bounded by (1) and (2) above.

    baseline: the same result from torch.nn.RNN (or fastrnn.reference) in actual's dtype;
    terms: K (Terms.forward for outputs, Terms.backward for gradients); rounds: how many
    times the result was rounded to a narrower stored type (one per layer and direction);
    magnitude: a floor for M (gradient_magnitude for gradients); growth: how much the
    recurrence amplifies an error (recurrence_growth; 1 at nn.RNN's weight scale)."""
    dtype = dtype or actual.dtype
    assert actual.shape == truth.shape == baseline.shape, (
        f"{name}: shapes {tuple(actual.shape)} (fastrnn), {tuple(baseline.shape)} (baseline), "
        f"{tuple(truth.shape)} (truth)")
    if dtype == torch.float64:
        assert_close(actual, baseline, dtype, name)
        return
    assert truth.dtype == torch.float64, f"{name}: the truth must be float64, got {truth.dtype}"
    if actual.numel() == 0:
        return
    u_c = UNIT_ROUNDOFF[compute_dtype(dtype)]
    u_o = UNIT_ROUNDOFF[dtype] if dtype != compute_dtype(dtype) else 0.0
    t = truth.detach().cpu()
    mag = max(float(t.abs().max()), magnitude)
    err = float((actual.detach().cpu().double() - t).abs().max())
    err_base = float((baseline.detach().cpu().double() - t).abs().max())
    worst = (terms * u_c * growth + rounds * u_o) * mag
    relative = 2 * err_base + (math.sqrt(terms) * u_c * growth + rounds * u_o) * mag
    detail = (f"{name} ({dtype}, K={terms}): max error {err:.3g} vs float64 truth (max|truth| "
              f"{mag:.3g}); baseline's {err_base:.3g}; rounding bound {worst:.3g}; "
              f"2x baseline + floor {relative:.3g}")
    assert math.isfinite(err), detail
    assert err <= worst, "beyond the rounding bound: " + detail
    assert err <= relative, "more than twice the baseline's error: " + detail


def recurrence_growth(grad_h0, weights):
    """How much the recurrence can grow an error made at one step by the end of the sequence,
    measured on the float64 truth: max|dLoss/dh0| / max|dLoss/dy| (>= 1). Terms assumes an
    error passes on without growing (tanh / relu with nn.RNN's weight scale): then this is
    about 1. With larger weights (|W_hh| rows summing past 1) every implementation's error
    grows alike, and so does a kernel's slightly less exact step (its SIMD tanh is within
    ~2.5 ulp, libm's 0.5): both bounds scale with it."""
    g = max((float(w.abs().max()) for w in weights if w.numel()), default=0.0)
    return max(1.0, float(grad_h0.abs().max()) / g) if g > 0 and grad_h0.numel() else 1.0


def gradient_magnitude(weights, operands):
    """max|dLoss/dy| * max(1, max|operand|): the M floor of a gradient (see (1) above)."""
    g = max((float(w.abs().max()) for w in weights if w.numel()), default=0.0)
    o = max((float(t.detach().abs().max()) for t in operands if t is not None and t.numel()), default=0.0)
    return g * max(1.0, o)


def float64_twin(model, round_to=None):
    """model's float64 copy on the reference backend (the truth), with the same weights;
    round_to: round the weights to that dtype first (what autocast computes with)."""
    twin = copy.deepcopy(model)
    twin.backend = "reference"
    if round_to is not None:
        twin.to(round_to)
    return twin.double()


def run_with_grads(model, leaves, forward, loss_seed=1, round_to=None):
    """[outputs..., gradients of random_loss w.r.t. the leaves needing one, then the parameters]."""
    outs = forward(model, *leaves)
    wrt = [t for t in leaves if t is not None and t.requires_grad]
    wrt += [p for p in model.parameters() if p.requires_grad]
    grads = list(grads_of(random_loss(outs, loss_seed, round_to), wrt)) if wrt else []
    return outs, grads, gradient_magnitude(loss_weights(outs, loss_seed, round_to),
                                           list(leaves) + list(model.parameters()))


def assert_modules_track_truth(ref, ours, inputs, terms, forward=None, dtype=None, rounds=None,
                               name="", loss_seed=1, truth_inputs_round_to=None, truth=None):
    """Runs nn.RNN (ref), fastrnn (ours) and ours' float64 reference twin on copies of inputs,
    and checks each output and each gradient (inputs needing one, then the parameters) with
    assert_tracks_truth. forward(model, *inputs) -> list of output tensors (default: the
    module's outputs; a PackedSequence contributes its .data)."""
    forward = forward or _module_outputs
    dtype = dtype or next(ours.parameters()).dtype
    narrow = dtype if dtype in (torch.float16, torch.bfloat16) else None
    truth_model = truth if truth is not None else float64_twin(ours, narrow)
    num_layers = getattr(ours, "num_layers", 1)
    rounds = rounds if rounds is not None else 2 * num_layers * (2 if getattr(ours, "bidirectional", False) else 1)
    results = {}
    for key, model in (("ref", ref), ("ours", ours), ("truth", truth_model)):
        leaves = []
        for t in inputs:
            if t is None:
                leaves.append(None)
                continue
            c = t.detach()
            if key == "truth":
                c = (c.to(truth_inputs_round_to) if truth_inputs_round_to is not None else c).double()
            leaves.append(c.clone().requires_grad_(t.requires_grad))
        results[key] = run_with_grads(model, leaves, forward, loss_seed, round_to=dtype)
    (o_r, g_r, _), (o_o, g_o, _), (o_t, g_t, g_mag) = results["ref"], results["ours"], results["truth"]
    assert len(o_o) == len(o_r) == len(o_t) and len(g_o) == len(g_r) == len(g_t)
    for i, (a, b, t) in enumerate(zip(o_o, o_r, o_t)):
        assert a.dtype == b.dtype, f"{name} output {i}: {a.dtype} vs nn's {b.dtype}"
        assert_tracks_truth(a, b, t, dtype, terms.forward, rounds, f"{name} output {i}")
    for i, (a, b, t) in enumerate(zip(g_o, g_r, g_t)):
        assert (a is None) == (b is None) == (t is None), f"{name} grad {i}: None vs tensor"
        if a is not None:
            assert a.dtype == b.dtype, f"{name} grad {i}: {a.dtype} vs nn's {b.dtype}"
            assert_tracks_truth(a, b, t, dtype, terms.backward, rounds, f"{name} grad {i}", g_mag)
    return o_o, g_o


def _module_outputs(model, *inputs):
    out = model(*inputs)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [o.data if isinstance(o, nn.utils.rnn.PackedSequence) else o for o in outs]


# ------------------------------------------------------------------ one op against the truth
OP_GRAD_NAMES = ["input", "hx", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]


def run_op(fn, args, lengths, reverse, act, round_to, after_forward=None):
    """(y, grads of random_loss w.r.t. the present args, the loss weights) of one
    rnn_forward-like fn through autograd; after_forward() runs between forward and backward."""
    leaves = [a.detach().clone().requires_grad_() if a is not None else None for a in args]
    y = fn(*leaves, lengths, reverse, act)
    if after_forward:
        after_forward()
    present = [leaf for leaf in leaves if leaf is not None]
    grads = torch.autograd.grad(random_loss([y], round_to=round_to), present)
    return y.detach(), grads, loss_weights([y], round_to=round_to)


def assert_op_tracks_truth(fn, args, lengths=None, reverse=False, act="tanh", after_forward=None,
                           baseline=None):
    """fn(input, hx, w_ih, w_hh, b_ih, b_hh, lengths, reverse, act) (a backend's rnn_forward)
    against fastrnn.reference: in float64 directly, otherwise against the float64 truth with
    the reference in args' dtype as the baseline (assert_tracks_truth). Returns fn's y."""
    baseline = baseline or fastrnn.reference.rnn_forward
    dtype = args[0].dtype
    T, B, I = args[0].shape
    H = args[3].shape[0]
    y, grads, _ = run_op(fn, args, lengths, reverse, act, dtype, after_forward)
    y_base, grads_base, _ = run_op(baseline, args, lengths, reverse, act, dtype)
    present = [n for n, a in zip(OP_GRAD_NAMES, args) if a is not None]
    assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
    if dtype == torch.float64:
        assert_close(y, y_base, name="output")
        for name, g, g_ref in zip(present, grads, grads_base):
            assert_close(g, g_ref, name=f"grad {name}")
        return y
    wide = [a.double() if a is not None else None for a in args]
    y_true, grads_true, w = run_op(fastrnn.reference.rnn_forward, wide, lengths, reverse, act, dtype)
    terms = Terms.of(T, B, I, H)
    growth = recurrence_growth(grads_true[1], w)  # grads_true[1]: dLoss/dhx [B, H]
    assert_tracks_truth(y, y_base, y_true, dtype, terms.forward, 2, "output", growth=growth)
    g_mag = gradient_magnitude(w, wide)
    for name, g, g_b, g_t in zip(present, grads, grads_base, grads_true):
        assert_tracks_truth(g, g_b, g_t, dtype, terms.backward, 2, f"grad {name}", g_mag, growth)
    return y
