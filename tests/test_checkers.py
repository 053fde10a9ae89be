"""Every checker the suite relies on fires on a planted bug (a check that cannot fail is no check).

- helpers.assert_tracks_truth: an error beyond rounding, and an error within rounding but
  worse than twice the baseline's, are both caught;
- the NaN poisoning of fresh allocations (tests/conftest.py): a kernel that leaves part of
  its output unwritten fails parity instead of passing on leftover zeros;
- the CPU plan assertions (tests/cpu_matrix.py): a parametrization that did not reach the
  path, ISA or thread count it claims fails;
- the op argument checks' test (tests/test_errors.py): a forward without the checks fails it.
"""
from __future__ import annotations

import pytest
import torch

import fastrnn.backends
from cpu_matrix import Combo, default_isa
from fastrnn import reference
from helpers import Terms, UNIT_ROUNDOFF, assert_op_tracks_truth, assert_tracks_truth, run_op


def _float32_case():
    """(fastrnn's, the float32 reference's and the float64 truth's output, K) on one shape."""
    g = torch.Generator().manual_seed(0)
    T, B, I, H = 40, 6, 16, 32
    args = [torch.randn(T, B, I, generator=g), torch.randn(B, H, generator=g),
            torch.randn(H, I, generator=g) * H ** -0.5, torch.randn(H, H, generator=g) * H ** -0.5, None, None]
    ours = torch.ops.fastrnn.rnn_forward(*args, None, False, "tanh")
    base = reference.rnn_forward(*args, None, False, "tanh")
    truth = reference.rnn_forward(*[a.double() if a is not None else None for a in args], None, False, "tanh")
    return ours, base, truth, Terms.of(T, B, I, H).forward


def test_truth_check_passes_the_real_result():
    ours, base, truth, K = _float32_case()
    assert_tracks_truth(ours, base, truth, torch.float32, K, name="real")


def test_truth_check_fires_beyond_the_rounding_bound():
    ours, base, truth, K = _float32_case()
    planted = ours.clone()
    planted[7, 2, 3] += 2 * K * UNIT_ROUNDOFF[torch.float32] * truth.abs().max().item()
    with pytest.raises(AssertionError, match="beyond the rounding bound"):
        assert_tracks_truth(planted, base, truth, torch.float32, K, name="planted")


def test_truth_check_fires_at_several_times_the_baseline_error():
    """An error still far inside the worst-case bound but twice criterion (2)'s allowance
    (e.g. a much worse summation order, or float32 rounding between steps of a float64 op),
    is caught by criterion (2)."""
    ours, base, truth, K = _float32_case()
    u, mag = UNIT_ROUNDOFF[torch.float32], truth.abs().max().item()
    err_base = (base.double() - truth).abs().max().item()
    allowance = 2 * err_base + K ** 0.5 * u * mag  # helpers: 2 err_baseline + sqrt(K) u M
    direction = torch.sign(base.double() - truth)  # [T, B, H]: errors shaped like a real one
    planted = truth + 2 * allowance * direction
    # what makes it the second criterion that fires: the error is within the first
    err = (planted.double() - truth).abs().max().item()
    assert err <= K * UNIT_ROUNDOFF[torch.float32] * truth.abs().max().item()
    with pytest.raises(AssertionError, match="more than twice the baseline"):
        assert_tracks_truth(planted.float(), base, truth, torch.float32, K, name="planted")


def test_fresh_allocations_are_poisoned():
    """conftest.py's setting is on: a fresh float tensor (here, and at::empty in the C++ ops,
    which goes through the same allocator function) holds NaN, not leftover values."""
    assert torch.utils.deterministic.fill_uninitialized_memory
    assert torch.empty(64).isnan().all()


def test_nan_poison_catches_an_unwritten_output():
    """A planted kernel that forgets the last time step of y (the bug class the poisoning is
    for: reading or returning memory nobody wrote) fails the parity check."""

    def forgetful_forward(x, hx, w_ih, w_hh, b_ih, b_hh, lengths, reverse, act):
        full = reference.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh, lengths, reverse, act)
        y = torch.empty(full.shape, dtype=full.dtype)  # [T, B, H], poisoned
        y[:-1] = full[:-1]
        return y

    g = torch.Generator().manual_seed(1)
    args = [torch.randn(4, 3, 2, generator=g), torch.randn(3, 5, generator=g), torch.randn(5, 2, generator=g),
            torch.randn(5, 5, generator=g) * 0.4, None, None]
    with pytest.raises(AssertionError):
        assert_op_tracks_truth(forgetful_forward, args)


def test_plan_check_fires_on_the_wrong_path(monkeypatch):
    """A parametrization claiming the column split that actually ran the fused rows (e.g. a
    threshold overriding FASTRNN_CPU_PATH) fails; so do a wrong ISA and a wrong thread count."""
    monkeypatch.setenv("FASTRNN_CPU_PATH", "fused")
    monkeypatch.setenv("FASTRNN_CPU_ISA", "portable")
    T, B, I, H = 3, 2, 3, 17
    args = [torch.randn(T, B, I), torch.randn(B, H), torch.randn(H, I), torch.randn(H, H), None, None]
    run_op(torch.ops.fastrnn.rnn_forward, args, None, False, "tanh", torch.float32)
    assert fastrnn.backends.last_cpu_plan()["op"] == "backward"
    Combo("fused", "portable", 1).assert_reached("backward", T, B, I, H, torch.float32)
    with pytest.raises(AssertionError, match="expected path='columns'"):
        Combo("columns", "portable", 2).assert_reached("backward", T, B, I, H, torch.float32)
    with pytest.raises(AssertionError, match="expected op='forward'"):
        Combo("fused", "portable", 1).assert_reached("forward", T, B, I, H, torch.float32)
    if default_isa() != "portable":
        with pytest.raises(AssertionError, match="expected isa="):
            Combo("fused", default_isa(), 1).assert_reached("backward", T, B, I, H, torch.float32)


def test_argument_check_test_fires_without_the_checks():
    """test_errors.test_op_forward_rejects fails for a forward that does not check its
    arguments (the reference loop accepts int32 lengths and a wrong-sized bias silently
    broadcasts or fails elsewhere): the test needs the op's own checks to pass."""
    import test_errors

    def unchecked(x, hx, w_ih, w_hh, b_ih, b_hh, lengths, reverse, act):
        return reference.rnn_forward(x, hx, w_ih, w_hh, b_ih, b_hh,
                                     lengths.long() if lengths is not None else None, reverse, act)

    test_errors.FORWARDS["planted-unchecked"] = (unchecked, torch.float64)
    try:
        with pytest.raises(pytest.fail.Exception):
            test_errors.test_op_forward_rejects("lengths-int32", "planted-unchecked")
        test_errors.test_op_forward_rejects("lengths-int32", "native")  # the real op passes it
    finally:
        del test_errors.FORWARDS["planted-unchecked"]
