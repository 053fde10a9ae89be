"""The CPU ops' buffer cache (csrc/cpu/block_cache.h): large outputs and temporaries are
reused when freed, never while alive, never leak stale contents into results, and stay
within the limit; the tensors behave like any CPU tensor (resize, numpy, save), across
threads, fork() and interpreter exit. Results are compared with fastrnn.reference or with
the same op's output computed from fresh memory."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import threading

import pytest
import torch

from fastrnn import backends
from test_cpu_kernels import check_parity, make_args

ops = torch.ops.fastrnn
# y [T, B, H] of 64 x 8 x 128 floats = 256 KiB: the smallest cached size (kMinCachedBytes)
T, B, I, H = 64, 8, 16, 128


@pytest.fixture
def cache_limit():
    """Sets a limit for one test and restores the previous one (emptying the cache)."""
    old = backends.cpu_buffer_cache()["limit_bytes"]
    backends.empty_cpu_buffer_cache()  # what earlier tests left is not this test's
    yield backends.set_cpu_buffer_cache_limit
    backends.set_cpu_buffer_cache_limit(old)


def forward(args):
    return ops.rnn_forward(*args, None, False, "tanh")  # [T, B, H]


def test_freed_output_is_reused_and_fully_overwritten(cache_limit):
    """A freed output's block serves the next call of its size (a hit, same address), and
    the op overwrites every element: a freed block poisoned with NaN gives the result
    computed in fresh memory, bit for bit, forward and backward."""
    cache_limit(64 << 20)
    args = make_args(T, B, I, H)
    with torch.no_grad():
        fresh = forward(args).clone()
        y = forward(args)
        address = y.data_ptr()
        y.fill_(float("nan"))
        del y
        before = backends.cpu_buffer_cache()
        y = forward(args)
    after = backends.cpu_buffer_cache()
    assert after["hits"] > before["hits"] and y.data_ptr() == address, (before, after)
    torch.testing.assert_close(y, fresh, rtol=0, atol=0)
    # The backward's buffers (dz, the gradients, ...) and the forward's again, from blocks
    # poisoned with NaN: every output of a backward and a forward, poisoned and freed.
    outs = [*ops.rnn_backward(torch.ones_like(fresh), *args[:4], fresh, None, False, "tanh",
                              [True, True]), forward(args), y]
    del y
    for t in outs:
        t.detach().fill_(float("nan"))
    del outs
    check_parity(make_args(T, B, I, H))


def test_live_tensors_never_share_a_block(cache_limit):
    cache_limit(64 << 20)
    args = make_args(T, B, I, H)
    with torch.no_grad():
        ys = [forward(args) for _ in range(4)]
    assert len({y.data_ptr() for y in ys}) == 4
    for y in ys[1:]:
        torch.testing.assert_close(y, ys[0], rtol=0, atol=0)


def test_limit_bounds_what_is_kept(cache_limit):
    """At most the limit is kept; 0 turns the cache off (torch's allocator serves)."""
    args = make_args(T, B, I, H)
    block = T * B * H * 4
    cache_limit(block)  # room for one output
    with torch.no_grad():
        ys = [forward(args) for _ in range(3)]
    del ys
    assert backends.cpu_buffer_cache()["cached_bytes"] <= block
    assert cache_limit(0) == block
    assert backends.cpu_buffer_cache()["cached_bytes"] == 0  # lowering the limit releases
    before = backends.cpu_buffer_cache()
    with torch.no_grad():
        for _ in range(3):
            forward(args)
    after = backends.cpu_buffer_cache()
    assert (after["hits"], after["misses"], after["cached_bytes"]) == (before["hits"], before["misses"], 0)
    with pytest.raises(RuntimeError, match="limit must be >= 0"):
        cache_limit(-1)


def test_a_full_cache_makes_room_for_the_current_shapes(cache_limit):
    """Filled by one shape's blocks, the cache releases them for another shape's (largest
    first) instead of refusing every new size."""
    cache_limit(2 * T * B * H * 4)  # two outputs of the first shape
    with torch.no_grad():
        ys = [forward(make_args(T, B, I, H)) for _ in range(2)]
        del ys
        assert backends.cpu_buffer_cache()["cached_bytes"] == 2 * T * B * H * 4
        y2 = forward(make_args(2 * T, B, I, H))  # twice the size: misses, allocates
        address = y2.data_ptr()
        del y2  # kept, after releasing both smaller blocks
        before = backends.cpu_buffer_cache()
        assert before["cached_bytes"] == 2 * T * B * H * 4
        y2 = forward(make_args(2 * T, B, I, H))
    after = backends.cpu_buffer_cache()
    assert after["hits"] > before["hits"] and y2.data_ptr() == address


def test_empty_cache_releases_every_block(cache_limit):
    cache_limit(64 << 20)
    with torch.no_grad():
        forward(make_args(T, B, I, H))
    assert backends.cpu_buffer_cache()["cached_bytes"] > 0
    backends.empty_cpu_buffer_cache()
    assert backends.cpu_buffer_cache()["cached_bytes"] == 0


def test_cached_tensors_behave_like_cpu_tensors(cache_limit):
    """resize_ (storage reallocated through the cache), numpy views, torch.save/load."""
    cache_limit(64 << 20)
    with torch.no_grad():
        y = forward(make_args(T, B, I, H))
    expected = y.clone()
    y.resize_(2 * T, B, H)  # grows the storage: the first T steps are kept
    torch.testing.assert_close(y[:T], expected, rtol=0, atol=0)
    y[T:] = 1.0  # the grown part is uninitialised, as after any resize_
    view = y.numpy()
    view[0, 0, 0] = 7.0
    assert y[0, 0, 0].item() == 7.0
    buffer = io.BytesIO()
    torch.save(y, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer), y, rtol=0, atol=0)


def test_threads_share_the_cache(cache_limit):
    """Two Python threads calling the ops at once: every result matches the one from a
    single thread; nothing is kept beyond the limit."""
    cache_limit(8 << 20)
    args = make_args(T, B, I, H)
    with torch.no_grad():
        expected = forward(args).clone()
    errors = []

    def work():
        try:
            with torch.no_grad():
                for _ in range(20):
                    torch.testing.assert_close(forward(args), expected, rtol=0, atol=0)
        except Exception as e:  # reported below, with the thread's assertion
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert backends.cpu_buffer_cache()["cached_bytes"] <= 8 << 20


_FORK_AND_EXIT = """
import os, threading, torch, fastrnn
torch.set_num_threads(2)
args = [torch.rand(64, 8, 16), torch.rand(8, 128), torch.rand(128, 16) / 12, torch.rand(128, 128) / 12]
with torch.no_grad():
    kept = torch.ops.fastrnn.rnn_forward(*args, None, None, None, False, "tanh")  # alive at exit
    freed = torch.ops.fastrnn.rnn_forward(*args, None, None, None, False, "tanh")
    del freed
# Another thread allocates and frees through the cache all the time, without the GIL (in
# backward(), which releases it), so that fork() often comes while that thread holds the
# cache's lock: the child's copy of the lock must still be free.
stop = False
def churn():
    w = [a.clone().requires_grad_() for a in args[2:]]
    while not stop:
        y = torch.ops.fastrnn.rnn_forward(args[0], args[1], *w, None, None, None, False, "tanh")
        y.sum().backward()
thread = threading.Thread(target=churn)
thread.start()
for _ in range(20):
    pid = os.fork()
    if pid == 0:  # the child frees and allocates through the inherited cache
        # One thread, as DataLoader's workers: GNU OpenMP cannot start a team in a forked
        # child of a process that ran one (torch's own ops hang there too).
        torch.set_num_threads(1)
        with torch.no_grad():
            y = torch.ops.fastrnn.rnn_forward(*args, None, None, None, False, "tanh")
        ok = torch.equal(y, kept)
        del y, kept
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
stop = True
thread.join()
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_fork_and_exit_with_cached_tensors_alive():
    """A fork()ed child uses the inherited cache while another thread of the parent keeps
    allocating and freeing through it, and the interpreter exits cleanly with a cached
    tensor alive (the cache is never destroyed). (The lock is held briefly: a map lookup,
    or the frees of released blocks, so a fork rarely lands inside it: with the
    pthread_atfork handler removed this test still passed in 3 tries; it shows the child
    works, not that the handler is needed.)"""
    run = subprocess.run([sys.executable, "-c", _FORK_AND_EXIT], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


@pytest.mark.parametrize(("value", "expect"), [("0", "limit 0"), ("3", f"limit {3 << 20}"),
                                               ("many", "FASTRNN_CPU_CACHE_MB='many' must be")])
def test_limit_from_environment(value, expect):
    code = ("import torch, fastrnn\n"
            "try:\n"
            "    print('limit', fastrnn.backends.cpu_buffer_cache()['limit_bytes'])\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "FASTRNN_CPU_CACHE_MB": value})
    assert run.returncode == 0 and expect in run.stdout, (run.stdout, run.stderr)


def test_deterministic_mode_fills_and_still_matches(cache_limit):
    """Under torch.use_deterministic_algorithms (which fills uninitialised memory, as
    cached_empty then does too) the ops give the same results, forward and backward."""
    cache_limit(64 << 20)
    args = make_args(T, B, I, H)
    with torch.no_grad():
        expected = forward(args).clone()
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.no_grad():
            torch.testing.assert_close(forward(args), expected, rtol=0, atol=0)
        check_parity(make_args(T, B, I, H))
    finally:
        torch.use_deterministic_algorithms(old)
