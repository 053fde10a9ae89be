"""Determinism, concurrency, memory, and sizes beyond any fast path's limits.

- the same call twice gives bitwise-identical outputs and gradients;
- several Python threads calling at once (different models and shapes) get the results a
  serial run gets;
- 10,000 forward + backward calls do not grow the resident memory;
- a hidden size above a kernel's fast-path limit falls back to a working path, never an error.
"""
from __future__ import annotations

import gc
import os
import threading

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fastrnn
from helpers import Terms, assert_close, assert_modules_track_truth, grads_of, random_loss, twin_rnn

# (T, B, I, H): small, and large enough for a CPU kernel to split the batch over threads.
SHAPES = [(5, 3, 4, 17), (16, 64, 32, 64)]
SHAPE_IDS = ["T5-B3-I4-H17", "T16-B64-I32-H64"]


def _run(model, x, hx, packed_lengths=None):
    inp = x if packed_lengths is None else pack_padded_sequence(x, packed_lengths, enforce_sorted=False)
    out, h_n = model(inp, hx)
    out = out if packed_lengths is None else out.data
    leaves = [x, hx, *model.parameters()]
    return [out, h_n, *grads_of(random_loss([out, h_n]), leaves)]


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize(("T", "B", "I", "H"), SHAPES, ids=SHAPE_IDS)
def test_bitwise_deterministic(T, B, I, H, dtype, packed):
    torch.manual_seed(0)
    model = fastrnn.RNN(I, H, 2, bidirectional=True).to(dtype)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    hx = torch.randn(4, B, H, dtype=dtype, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,)) if packed else None
    first = _run(model, x, hx, lengths)
    for _ in range(2):
        again = _run(model, x, hx, lengths)
        for i, (a, b) in enumerate(zip(again, first)):
            assert torch.equal(a, b), f"tensor {i} differs between identical calls"


@pytest.mark.parametrize("threads", [2, 5])
def test_concurrent_python_threads(threads):
    """Each thread has its own model and shape (a cache keyed on the wrong thing would show)."""
    jobs = []
    for k in range(threads):
        T, B, I, H = 3 + k, 1 + 2 * k, 2 + k, 5 + 6 * k
        torch.manual_seed(k)
        model = fastrnn.RNN(I, H, 2, bidirectional=k % 2 == 1, nonlinearity="relu" if k % 3 == 2 else "tanh")
        D = 2 if model.bidirectional else 1
        x = torch.randn(T, B, I, requires_grad=True)
        hx = torch.randn(2 * D, B, H, requires_grad=True)
        jobs.append((model, x, hx, _run(model, x, hx)))  # the serial answer
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(model, x, hx, expected):
        try:
            barrier.wait()
            for _ in range(20):
                for i, (a, b) in enumerate(zip(_run(model, x, hx), expected)):
                    assert_close(a, b, name=f"thread tensor {i}")
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    pool = [threading.Thread(target=work, args=job) for job in jobs]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[0]


def test_concurrent_threads_share_one_model():
    torch.manual_seed(0)
    model = fastrnn.RNN(4, 9, 2)
    inputs = [torch.randn(6, 3, 4, requires_grad=True) for _ in range(4)]
    expected = [[t.detach().clone() for t in _run(model, x, torch.zeros(2, 3, 9, requires_grad=True))]
                for x in inputs]
    results: dict[int, list] = {}

    def work(k):
        results[k] = _run(model, inputs[k], torch.zeros(2, 3, 9, requires_grad=True))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    for k in range(4):
        for i, (a, b) in enumerate(zip(results[k], expected[k])):
            assert_close(a, b, name=f"thread {k} tensor {i}")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# kind -> calls. Packing costs Python time per call, so the packed path gets fewer calls;
# its per-call buffers are as large, so a leak of any of them still shows (see below).
MEMORY_CASES = {"RNN": 10_000, "RNNCell": 10_000, "RNN-packed": 2_000}


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
@pytest.mark.parametrize("kind", list(MEMORY_CASES))
def test_no_memory_growth(kind):
    """Forward + backward many times: resident memory does not keep growing after a warm-up.
    Every per-call buffer is >= 4 KiB ([8, 4, 32] float32), so leaking any one of them would
    add >= 4 MiB to each of the two windows below (1,000+ calls each)."""
    torch.manual_seed(0)
    T, B, I, H = 8, 4, 8, 32
    if kind == "RNNCell":
        model = fastrnn.RNNCell(I, H)
        x = torch.randn(T * B, I, requires_grad=True)

        def step():
            model(x).sum().backward()
    elif kind == "RNN":
        model = fastrnn.RNN(I, H)
        x = torch.randn(T, B, I, requires_grad=True)

        def step():
            out, h = model(x)
            (out.sum() + h.sum()).backward()
    else:
        model = fastrnn.RNN(I, H, bidirectional=True)
        x = torch.randn(T, B, I, requires_grad=True)
        lengths = torch.tensor([5, 8, 1, 3])

        def step():
            out, h = model(pack_padded_sequence(x, lengths, enforce_sorted=False))
            (out.data.sum() + h.sum()).backward()

    for _ in range(500):  # warm-up: allocator caches, lazy initialisation
        step()
    # Two windows of half the calls each: a leak grows resident memory in both (>= 4 MiB per
    # window at the sizes above), while a one-off jump (a new malloc arena, a thread's stack)
    # shows in one window at most.
    growths = []
    for _ in range(2):
        gc.collect()
        before = _rss_bytes()
        for _ in range(MEMORY_CASES[kind] // 2):
            step()
        gc.collect()
        growths.append(_rss_bytes() - before)
    assert min(growths) < 2 * 2**20, (
        f"resident memory grew by {[round(g / 2**20, 1) for g in growths]} MiB in two windows of "
        f"{MEMORY_CASES[kind] // 2} calls")


def test_graph_freed_after_backward():
    """The autograd graph (and the tensors it saved) dies with the output: no reference cycle.
    Seen through saved-tensor hooks, which every node honours (fastrnn's is a C++ node)."""
    import weakref

    class Saved:  # what the graph holds instead of each saved tensor
        def __init__(self, t):
            self.t = t

    held = []

    def pack(t):
        held.append(weakref.ref(saved := Saved(t)))
        return saved

    model = fastrnn.RNN(3, 4, num_layers=2)
    x = torch.randn(5, 2, 3, requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda saved: saved.t):
        out, h = model(x)
    assert len(held) >= 4  # input, weights, the layers' outputs
    out.sum().backward(retain_graph=True)
    assert all(ref() is not None for ref in held)  # retained
    out.sum().backward()
    del out, h
    assert all(ref() is None for ref in held)


# ---------------------------------------------------------------- beyond fast-path limits
LARGE = {"H129": (3, 2, 3, 129), "H1031": (3, 2, 3, 1031), "B1031": (2, 1031, 3, 9), "I2049": (2, 3, 2049, 9)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("size", list(LARGE), ids=str)
def test_large_sizes_on_cpu(size, dtype):
    """Sizes past any register-blocking or threading threshold still match nn.RNN: in
    float32 against the float64 truth (I2049's weight gradient sums thousands of products,
    which no absolute float32 tolerance bounds on every machine: issue 10)."""
    T, B, I, H = LARGE[size]
    ref, ours = twin_rnn(I, H, dtype=dtype, bidirectional=True)
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    hx = torch.randn(2, B, H, dtype=dtype, requires_grad=True)
    assert_modules_track_truth(ref, ours, [x, hx], Terms.of(T, B, I, H, bidirectional=True))


def _triton_ops():
    try:
        from fastrnn.triton import ops  # noqa: F401
    except ImportError:
        return None
    return ops


@pytest.mark.skipif(_triton_ops() is None, reason="fastrnn.triton kernels not present")
def test_triton_hidden_above_on_chip_limit():
    """backend='triton' (the interpreter when there is no GPU) with H above the persistent
    kernel's on-chip limit runs the tiled fallback and matches nn.RNN."""
    limit = max(_triton_ops().MAX_ON_CHIP_H.values())
    H = limit + 3
    ref, ours = twin_rnn(3, H, backend="triton", device="cuda" if torch.cuda.is_available() else "cpu")
    x = torch.randn(2, 2, 3, device=ours.weight_hh_l0.device, requires_grad=True)
    hx = torch.randn(1, 2, H, device=x.device, requires_grad=True)
    assert_modules_track_truth(ref, ours, [x, hx], Terms.of(2, 2, 3, H))


def test_relu_unbounded_values_stay_exact():
    """relu has no saturation: values grow over the steps; fastrnn follows nn.RNN (relative)."""
    ref, ours = twin_rnn(2, 3, nonlinearity="relu", dtype=torch.float64)
    with torch.no_grad():
        for m in (ref, ours):
            m.weight_hh_l0.copy_(torch.eye(3) * 1.5)
    x = torch.rand(60, 1, 2, dtype=torch.float64, requires_grad=True)
    results = [_run(m, x, torch.zeros(1, 1, 3, dtype=torch.float64, requires_grad=True)) for m in (ref, ours)]
    assert results[0][0].abs().max() > 1e9
    for i, (a, b) in enumerate(zip(results[1], results[0])):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
