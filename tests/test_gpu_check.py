"""`python -m fastrnn gpu-check` on a machine without a GPU: the parts that run anywhere.

The GPU steps themselves (build with CUDA, the GPU suite, compute-sanitizer, the cuDNN
benchmark) need a GPU; here: the options, the no-GPU skip (exit 77 and its JSON), the
commands planned for a GPU (through --dry-run with a pretend GPU), and the step runner
(statuses, time limits, the budget, test counts, the JSON and the log) on real child
processes that stand in for the GPU steps.
"""
import json
import os
import subprocess
import sys

import pytest
import torch

from fastrnn import __main__ as cli
from fastrnn import _gpu_check as gc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRETEND_GPU = {"index": 0, "name": "Pretend L4", "capability": "8.9", "sm_count": 58, "memory_gib": 22.0}


@pytest.fixture
def pretend_gpu(monkeypatch):
    """gpu-check sees one GPU (only its own environment probe is replaced)."""
    env = {"python": "3", "torch": torch.__version__, "torch_cuda": "13.0", "cudnn": 91000,
           "driver": "580.00", "gpus": [PRETEND_GPU]}
    monkeypatch.setattr(gc, "gpu_environment", lambda: env)
    return env


def test_no_gpu_skips_with_exit_77_a_message_and_the_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cli.main(["gpu-check", "--out", str(tmp_path)]) == gc.EXIT_NO_GPU == 77
    err = capsys.readouterr().err
    assert "SKIPPED" in err and "no CUDA device" in err and "77" in err
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["status"] == "skipped" and "no CUDA device" in data["reason"]
    assert data["steps"] == [] and data["environment"]["gpus"] == []
    assert "skipped" in (tmp_path / "gpu_check.log").read_text()


def test_entry_point_without_a_visible_gpu(tmp_path):
    """The real command line, with every GPU hidden: exit 77, nothing built."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    run = subprocess.run([sys.executable, "-m", "fastrnn", "gpu-check", "--out", str(tmp_path)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 77, run.stderr
    assert "SKIPPED" in run.stderr
    assert json.loads((tmp_path / "gpu_check.json").read_text())["status"] == "skipped"


@pytest.mark.parametrize("argv, word", [
    (["--skip", "build,lint"], "--skip"),
    (["--budget", "0"], "--budget"),
    (["--budget", "soon"], "--budget"),
    (["--repo", "/nonexistent/fastrnn"], "not a fastrnn source checkout"),
    (["--frobnicate"], "unrecognized arguments"),
], ids=["unknown-step", "zero-budget", "text-budget", "not-a-checkout", "unknown-option"])
def test_bad_options_exit_2_naming_the_option(argv, word, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gpu-check", *argv])
    assert exc.value.code == 2
    assert word in capsys.readouterr().err


def test_help_is_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gpu-check", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "python -m fastrnn gpu-check" in out and "77" in out and "--dry-run" in out


def test_dry_run_plans_every_step_for_the_gpu(pretend_gpu, monkeypatch, capsys):
    monkeypatch.delenv("FASTRNN_CUDA_ARCHS", raising=False)
    monkeypatch.setattr(gc, "find_compute_sanitizer", lambda: "/opt/cuda/bin/compute-sanitizer")
    assert cli.main(["gpu-check", "--dry-run", "--repo", ROOT]) == 0
    out = capsys.readouterr().out
    lines = {line.split("]")[0].strip(" ["): line for line in out.splitlines() if line.startswith("  [")}
    assert [name.split(",")[0] for name in lines] == list(gc.STEP_NAMES)
    build = next(v for k, v in lines.items() if k.startswith("build"))
    # The default targets (what test_cuda_build.py checks) plus the GPU's own sm_89.
    assert "FASTRNN_BUILD_CUDA=1" in build and "FASTRNN_CUDA_ARCHS='8.0;8.9;9.0'" in build
    for tool in gc.SANITIZER_TOOLS:
        line = next(v for k, v in lines.items() if k.startswith(tool))
        assert f"/opt/cuda/bin/compute-sanitizer --tool {tool}" in line
        assert "--error-exitcode 1" in line and "-k sanitizer" in line
        assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in line
    parity = next(v for k, v in lines.items() if k.startswith("parity"))
    assert "tests/test_cuda_parity.py" in parity and "tests/test_triton.py" in parity
    assert "benchmarks/bench_cuda.py --quick" in next(v for k, v in lines.items() if k.startswith("bench"))


def test_dry_run_skip_and_missing_sanitizer(pretend_gpu, monkeypatch, capsys):
    monkeypatch.setattr(gc, "find_compute_sanitizer", lambda: None)
    assert cli.main(["gpu-check", "--dry-run", "--repo", ROOT, "--skip", "build,bench"]) == 0
    out = capsys.readouterr().out
    assert "[build" not in out and "[bench" not in out and "[parity" in out
    assert out.count("cannot start: compute-sanitizer not found") == 3


def _pytest_step(name, tmp_path, body, must_run):
    """A pytest child on a one-test file, with the JUnit report gpu-check reads counts from."""
    test_file = tmp_path / f"test_{name}.py"
    test_file.write_text(f"import pytest\n\ndef test_it():\n{body}\n")
    junit = str(tmp_path / f"{name}.xml")
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            f"--junitxml={junit}", "--rootdir", str(tmp_path), str(test_file)]
    return gc.Step(name, argv, 60, junit=junit, must_run=must_run)


def test_runner_records_each_outcome(pretend_gpu, monkeypatch, tmp_path, capsys):
    out = tmp_path / "out"
    bench = {"meta": {"device": "pretend"}, "rows": [{"speedup": 1.5}]}
    write_bench = (f"import json, os; os.makedirs({str(out / 'work')!r}, exist_ok=True); "
                   f"json.dump({bench!r}, open({str(out / 'work' / 'bench_cuda.json')!r}, 'w'))")
    stale = tmp_path / "_C.stale.so"  # the build step unlinks the loaded library first
    stale.write_text("old")
    steps = [
        gc.Step("prints", [sys.executable, "-c", "print('hello from a step')"], 60, env={"STEP_FLAG": "1"},
                remove=[str(stale)]),
        gc.Step("fails", [sys.executable, "-c", "import sys; sys.exit(3)"], 60),
        gc.Step("hangs", [sys.executable, "-c", "import time; time.sleep(60)"], 1.0),
        gc.Step("no-tool", ["compute-sanitizer"], 60, error="compute-sanitizer not found"),
        _pytest_step("ran", tmp_path, "    assert 1 + 1 == 2", must_run="test_ran"),
        _pytest_step("all_skipped", tmp_path, "    pytest.skip('no GPU')", must_run="test_all_skipped"),
        gc.Step("bench", [sys.executable, "-c", write_bench], 60),
    ]
    monkeypatch.setattr(gc, "plan_steps", lambda repo, work, gpus, skip: steps)
    assert cli.main(["gpu-check", "--out", str(out), "--repo", ROOT]) == gc.EXIT_FAILED
    data = json.loads((out / "gpu_check.json").read_text())
    by_name = {s["name"]: s for s in data["steps"]}
    assert {n: s["status"] for n, s in by_name.items()} == {
        "prints": "passed", "fails": "failed", "hangs": "timeout", "no-tool": "failed",
        "ran": "passed", "all_skipped": "failed", "bench": "passed"}
    assert by_name["fails"]["returncode"] == 3
    assert 1.0 <= by_name["hangs"]["seconds"] < 30 and "killed after" in by_name["hangs"]["note"]
    assert by_name["no-tool"]["note"] == "compute-sanitizer not found"
    assert by_name["ran"]["tests"] == {"total": 1, "failures": 0, "errors": 0, "skipped": 0, "ran_in_module": 1}
    assert by_name["all_skipped"]["tests"]["skipped"] == 1 and "no test of" in by_name["all_skipped"]["note"]
    assert by_name["prints"]["env"] == {"STEP_FLAG": "1"} and not stale.exists()
    assert data["status"] == "failed" and "fails" in data["reason"] and "prints" not in data["reason"]
    assert data["benchmark"] == bench and data["environment"]["gpus"] == [PRETEND_GPU]
    log = (out / "gpu_check.log").read_text()
    assert "hello from a step" in log and "===== hangs:" in log and "----- fails: failed" in log
    assert "FAILED" in capsys.readouterr().out


def test_budget_spent_leaves_later_steps_not_run(pretend_gpu, monkeypatch, tmp_path):
    steps = [gc.Step("slow", [sys.executable, "-c", "import time; time.sleep(60)"], 60),
             gc.Step("later", [sys.executable, "-c", "pass"], 60)]
    monkeypatch.setattr(gc, "plan_steps", lambda repo, work, gpus, skip: steps)
    assert cli.main(["gpu-check", "--out", str(tmp_path), "--repo", ROOT, "--budget", "0.5"]) == 1
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("slow", "timeout"), ("later", "not_run")]


def test_all_passing_steps_exit_0(pretend_gpu, monkeypatch, tmp_path):
    steps = [gc.Step("a", [sys.executable, "-c", "pass"], 60), gc.Step("b", [sys.executable, "-c", "pass"], 60)]
    monkeypatch.setattr(gc, "plan_steps", lambda repo, work, gpus, skip: steps)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "bench_cuda.json").write_text('{"rows": "from an earlier run"}')
    assert cli.main(["gpu-check", "--out", str(tmp_path), "--repo", ROOT]) == 0
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["status"] == "passed" and data["reason"] == "" and data["benchmark"] is None
