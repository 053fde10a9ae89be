"""The test suite's GPU gating, checked without a GPU by pretending to have one.

On a GPU host Triton runs compiled, so CPU-tensor Triton tests must be skipped in-process
(and run in an interpreter child) and CUDA-tensor ones must run; without a GPU the reverse.
A gating mistake there only shows on the day the suite meets a GPU, hence these checks.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

import fastrnn.backends
import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("interpret, gpu, expected", [
    ("1", False, "interpreter"),
    ("1", True, "interpreter"),  # set by hand on a GPU host: every kernel is interpreted
    (None, True, "compiled"),
    (None, False, None),
    ("0", False, None),
], ids=["interp-no-gpu", "interp-gpu", "gpu", "no-gpu-no-interp", "interp-0-no-gpu"])
def test_triton_mode(monkeypatch, interpret, gpu, expected):
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    if interpret is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", interpret)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert helpers.triton_mode() == expected


def test_triton_mode_without_triton(monkeypatch):
    # fastrnn.backends decides whether triton is installed (once, at import): pretend it is not.
    monkeypatch.setattr(fastrnn.backends, "_TRITON_INSTALLED", False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert helpers.triton_mode() is None


def _runnable(params):
    return [p.values[0] for p in params if not any(m.args[0] for m in p.marks)]


@pytest.mark.parametrize("mode, runs", [("interpreter", ["cpu"]), ("compiled", ["cuda"]), (None, [])])
def test_triton_devices_run_exactly_one_kind_of_tensor(mode, runs):
    params = helpers.triton_devices(mode)
    assert [p.values[0] for p in params] == ["cpu", "cuda"]  # both ids always listed
    assert _runnable(params) == runs
    for p in params:
        for mark in p.marks:
            assert mark.kwargs["reason"], "a skip without a reason"
    if mode == "compiled":
        assert "interpreter" in params[0].marks[0].kwargs["reason"]


def test_conftest_turns_the_interpreter_on_only_without_a_gpu():
    """tests/conftest.py, run in one child that pretends torch sees a GPU, then none."""
    code = ("import os, runpy, torch\n"
            "for gpu in (True, False):\n"
            "    os.environ.pop('TRITON_INTERPRET', None)\n"
            "    torch.cuda.is_available = lambda: gpu\n"
            "    runpy.run_path('tests/conftest.py')\n"
            "    print(gpu, os.environ.get('TRITON_INTERPRET'))\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-2:] == ["True None", "False 1"]
