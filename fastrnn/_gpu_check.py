"""``python -m fastrnn gpu-check``: everything one NVIDIA GPU can tell about fastrnn, in one command.

Run it from a source checkout (it builds the extension and runs the test files):

  build      setup.py build_ext --inplace with the CUDA kernels required (FASTRNN_BUILD_CUDA=1),
             for sm_80, sm_90 and the visible GPUs' own compute capability
  parity     pytest: the CUDA parity suite (every path asserted through last_cuda_plan()),
             the CUDA build checks, Triton compiled on CUDA tensors, the CUDA half of the
             parity and op suites
  memcheck, racecheck, synccheck
             compute-sanitizer over the tiny shapes of test_cuda_parity.py -k sanitizer
  bench      benchmarks/bench_cuda.py --quick: fastrnn vs cuDNN (nn.RNN), median ms

Each step is a subprocess with a time limit, all within one budget (--budget, 600 s).
Results go to OUT/gpu_check.json (environment, each step's command, status, seconds and
test counts, the benchmark rows) and every step's output to OUT/gpu_check.log.

Exit status: 0 every step passed; 1 a step failed, timed out or was left without time;
2 bad options or not a source checkout; 77 skipped, no GPU (the automake/meson "skipped"
code: non-zero, so a CI job meant for a GPU machine fails when it has none, and a script
can tell "no GPU" from "failed"). The JSON is written in every case but 2.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import torch

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_GPU = 0, 1, 2, 77
SANITIZER_TOOLS = ("memcheck", "racecheck", "synccheck")
STEP_NAMES = ("build", "parity", *SANITIZER_TOOLS, "bench")
DEFAULT_BUDGET_S = 600.0

# The GPU suite: CUDA tensors only ("not cpu": the CPU halves run in the CPU CI, and the
# Triton interpreter child of test_triton.py is CPU work too).
PARITY_TESTS = ["tests/test_cuda_parity.py", "tests/test_cuda_build.py", "tests/test_triton.py",
                "tests/test_parity.py", "tests/test_ops.py"]
PARITY_FILTER = "not cpu and not interpreter_suite"
SANITIZER_TESTS = ["tests/test_cuda_parity.py", "-k", "sanitizer"]


@dataclass
class Step:
    name: str
    argv: list[str]
    limit_s: float  # the step's own cap; the overall budget may cut it shorter
    env: dict[str, str] = field(default_factory=dict)  # added to the environment
    junit: str | None = None  # pytest's XML report, for the test counts
    must_run: str | None = None  # pytest: a test module of which some test must not be skipped
    error: str | None = None  # set when the step cannot start (a missing tool)
    remove: list[str] = field(default_factory=list)  # files unlinked before the step starts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastrnn gpu-check",
        description="Build fastrnn with its CUDA kernels, run the GPU test suite, run the CUDA tests "
                    "under compute-sanitizer (memcheck, racecheck, synccheck) and benchmark against "
                    "cuDNN; one JSON and one log. Needs an NVIDIA GPU and a source checkout.",
        epilog="Exit status: 0 all steps passed, 1 a step failed, 2 bad options, 77 skipped (no GPU).",
    )
    p.add_argument("--out", default="gpu-check", metavar="DIR",
                   help="where gpu_check.json and gpu_check.log go (default: ./gpu-check)")
    p.add_argument("--repo", default=None, metavar="DIR",
                   help="the fastrnn source checkout (default: the one this fastrnn is imported from, "
                        "else the current directory)")
    p.add_argument("--skip", default="", metavar="STEP[,STEP]",
                   help=f"steps to leave out, from {','.join(STEP_NAMES)} (e.g. build, for a tree "
                        "already built with CUDA)")
    p.add_argument("--budget", type=_positive_seconds, default=DEFAULT_BUDGET_S, metavar="SECONDS",
                   help=f"wall-clock budget for all steps (default {DEFAULT_BUDGET_S:.0f})")
    p.add_argument("--dry-run", action="store_true",
                   help="print the steps and their commands, run nothing (works without a GPU)")
    return p


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def find_repo(explicit: str | None) -> str | None:
    """The source checkout: setup.py and tests/ beside the fastrnn package."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in ([explicit] if explicit else [here, os.getcwd()]):
        if os.path.isfile(os.path.join(candidate, "setup.py")) and os.path.isdir(os.path.join(candidate, "tests")):
            return os.path.abspath(candidate)
    return None


def gpu_environment() -> dict:
    """What torch sees: the GPUs (empty without one), the CUDA and cuDNN versions, the driver."""
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cudnn": None, "driver": None, "gpus": []}
    if not torch.cuda.is_available():
        return env
    env["cudnn"] = torch.backends.cudnn.version()
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        env["gpus"].append({"index": i, "name": props.name, "capability": f"{props.major}.{props.minor}",
                            "sm_count": props.multi_processor_count,
                            "memory_gib": round(props.total_memory / 2**30, 1)})
    smi = shutil.which("nvidia-smi")
    if smi:
        run = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True)
        env["driver"] = run.stdout.strip().splitlines()[0] if run.returncode == 0 and run.stdout.strip() else None
    return env


def find_compute_sanitizer() -> str | None:
    found = shutil.which("compute-sanitizer")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and os.access(os.path.join(home, "bin", "compute-sanitizer"), os.X_OK):
            return os.path.join(home, "bin", "compute-sanitizer")
    return None


def plan_steps(repo: str, work: str, gpus: list[dict], skip: set[str]) -> list[Step]:
    """The steps in order; work: a directory for the steps' intermediate files."""
    py = sys.executable
    pytest = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    steps = []
    build_env = {"FASTRNN_BUILD_CUDA": "1", "MAX_JOBS": os.environ.get("MAX_JOBS", str(os.cpu_count() or 1))}
    if "FASTRNN_CUDA_ARCHS" not in os.environ:
        # setup.py's default (sm_80, sm_90: what tests/test_cuda_build.py checks) plus the
        # visible GPUs' own, which the default may not run on (a cubin runs on its major only).
        archs = {"8.0", "9.0"} | {g["capability"] for g in gpus}
        build_env["FASTRNN_CUDA_ARCHS"] = ";".join(sorted(archs, key=lambda a: tuple(map(int, a.split(".")))))
    # This process has fastrnn/_C*.so mapped (importing fastrnn loads it): unlink it first,
    # so that the build writes a new file instead of truncating the mapped one under us.
    built = sorted(glob.glob(os.path.join(repo, "fastrnn", "_C*.so")))
    steps.append(Step("build", [py, "setup.py", "build_ext", "--inplace"], 300, build_env, remove=built))
    junit = os.path.join(work, "parity.xml")
    steps.append(Step("parity", [*pytest, f"--junitxml={junit}", *PARITY_TESTS, "-k", PARITY_FILTER],
                      240, junit=junit, must_run="test_cuda_parity"))
    sanitizer = find_compute_sanitizer()
    for tool in SANITIZER_TOOLS:
        junit = os.path.join(work, f"{tool}.xml")
        # --report-api-errors no: torch probes the runtime with calls that may fail by design
        # (and checks the ones that matter itself); device-side errors are what is sought.
        # No caching allocator under the sanitizer, so that an access past a tensor's end
        # lands outside any allocation instead of inside a cached block.
        argv = [sanitizer or "compute-sanitizer", "--tool", tool, "--target-processes", "all",
                "--error-exitcode", "1", "--report-api-errors", "no",
                *pytest, f"--junitxml={junit}", *SANITIZER_TESTS]
        error = None if sanitizer else (
            "compute-sanitizer not found (on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin): install the "
            f"CUDA toolkit, or pass --skip {','.join(SANITIZER_TOOLS)}")
        steps.append(Step(tool, argv, 75, {"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"}, junit=junit,
                          must_run="test_cuda_parity", error=error))
    bench_json = os.path.join(work, "bench_cuda.json")
    steps.append(Step("bench", [py, "benchmarks/bench_cuda.py", "--quick", "--json", bench_json], 90))
    return [s for s in steps if s.name not in skip]


def junit_counts(path: str, must_run: str | None) -> dict | None:
    """Test counts from pytest's XML report; ran_in_module: tests of `must_run` not skipped."""
    if not os.path.isfile(path):
        return None
    root = ET.parse(path).getroot()
    counts = {"total": 0, "failures": 0, "errors": 0, "skipped": 0, "ran_in_module": 0}
    for case in root.iter("testcase"):
        counts["total"] += 1
        outcome = {child.tag for child in case}
        for tag, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if tag in outcome:
                counts[key] += 1
        if must_run and must_run in case.get("classname", "") and "skipped" not in outcome:
            counts["ran_in_module"] += 1
    return counts


def run_step(step: Step, repo: str, log, limit_s: float) -> dict:
    """Runs one step with its output appended to the log; returns its JSON record."""
    record = {"name": step.name, "command": shlex.join(step.argv), "env": step.env,
              "limit_s": round(limit_s, 1), "status": None, "returncode": None, "seconds": 0.0,
              "note": ""}
    log.write(f"\n===== {step.name}: {record['command']}\n")
    if step.env:
        log.write(f"      with {' '.join(f'{k}={v}' for k, v in step.env.items())}\n")
    log.flush()
    if step.error:
        record.update(status="failed", note=step.error)
        log.write(f"----- {step.name}: failed: {step.error}\n")
        return record
    if limit_s <= 0:
        record.update(status="not_run", note="the budget was spent before this step")
        log.write(f"----- {step.name}: not run: the budget was spent\n")
        return record
    for path in step.remove:
        if os.path.exists(path):
            os.unlink(path)
            log.write(f"      removed {path}\n")
    start = time.monotonic()
    # Its own session, so that a timeout kills the whole tree (pytest's children too).
    proc = subprocess.Popen(step.argv, cwd=repo, env={**os.environ, **step.env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        record["note"] = f"killed after {limit_s:.0f} s"
    record["seconds"] = round(time.monotonic() - start, 1)
    record["returncode"] = proc.returncode
    if record["note"]:
        record["status"] = "timeout"
    elif proc.returncode != 0:
        record["status"] = "failed"
    else:
        record["status"] = "passed"
    if step.junit:
        counts = junit_counts(step.junit, step.must_run)
        record["tests"] = counts
        # Every CUDA test skipped (a build without CUDA kernels, say) is a failure, not a pass.
        if record["status"] == "passed" and step.must_run and not (counts and counts["ran_in_module"]):
            record.update(status="failed", note=f"no test of {step.must_run} ran (all skipped or none collected)")
    log.write(f"----- {step.name}: {record['status']} in {record['seconds']} s {record['note']}\n")
    log.flush()
    return record


def _git_commit(repo: str) -> str | None:
    try:
        run = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def _write(out_dir: str, result: dict) -> str:
    path = os.path.join(out_dir, "gpu_check.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted(skip - set(STEP_NAMES))
    if unknown:
        parser.error(f"--skip: unknown step(s) {','.join(unknown)}; choose from {','.join(STEP_NAMES)}")
    repo = find_repo(args.repo)
    if repo is None:
        where = args.repo or f"{os.path.dirname(os.path.dirname(os.path.abspath(__file__)))} or {os.getcwd()}"
        parser.error(f"not a fastrnn source checkout (setup.py and tests/): {where}; "
                     "run from the checkout or pass --repo")
    env = gpu_environment()
    out_dir = os.path.abspath(args.out)
    work = os.path.join(out_dir, "work")
    steps = plan_steps(repo, work, env["gpus"], skip)
    if args.dry_run:
        print(f"gpu-check in {repo}, {len(env['gpus'])} GPU(s) visible; would run, within {args.budget:.0f} s:")
        for s in steps:
            extra = "".join(f"{k}={shlex.quote(v)} " for k, v in s.env.items())
            print(f"  [{s.name}, up to {s.limit_s:.0f} s] {extra}{shlex.join(s.argv)}")
            if s.remove:
                print(f"    first removes {', '.join(s.remove)}")
            if s.error:
                print(f"    cannot start: {s.error}")
        return EXIT_OK

    # A fresh work directory: a step that dies before writing its report must not be
    # credited with the report of an earlier run.
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    result = {"tool": "python -m fastrnn gpu-check", "format": 1, "status": None, "reason": "",
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "seconds": 0.0, "budget_s": args.budget, "repo": repo, "commit": _git_commit(repo),
              "environment": env, "skipped_steps": sorted(skip), "steps": [], "benchmark": None}
    log_path = os.path.join(out_dir, "gpu_check.log")
    if not env["gpus"]:
        result.update(status="skipped", reason=(
            f"no CUDA device visible (torch.cuda.is_available() is False; torch {torch.__version__}, "
            f"CUDA build {torch.version.cuda or 'none'}); nothing was built or run"))
        with open(log_path, "w") as log:
            log.write(f"gpu-check skipped: {result['reason']}\n")
        print(f"gpu-check: SKIPPED: {result['reason']}. Run it on a machine with an NVIDIA GPU and its "
              f"driver. Exit status {EXIT_NO_GPU}.\nwrote {_write(out_dir, result)} and {log_path}",
              file=sys.stderr)
        return EXIT_NO_GPU

    names = ", ".join(f"{g['name']} (sm_{g['capability'].replace('.', '')})" for g in env["gpus"])
    print(f"gpu-check on {names}: {len(steps)} steps within {args.budget:.0f} s; log: {log_path}")
    start = time.monotonic()
    with open(log_path, "w") as log:
        for step in steps:
            left = args.budget - (time.monotonic() - start)
            record = run_step(step, repo, log, min(step.limit_s, left))
            result["steps"].append(record)
            tests = record.get("tests")
            counts = (f" ({tests['total']} tests, {tests['failures'] + tests['errors']} failed, "
                      f"{tests['skipped']} skipped)") if tests else ""
            print(f"  {step.name:<10} {record['status']:<8} {record['seconds']:>7.1f} s{counts} {record['note']}",
                  flush=True)
    result["seconds"] = round(time.monotonic() - start, 1)
    bench_json = os.path.join(work, "bench_cuda.json")
    if os.path.isfile(bench_json):
        with open(bench_json) as f:
            result["benchmark"] = json.load(f)
    failed = [r["name"] for r in result["steps"] if r["status"] != "passed"]
    result["status"] = "failed" if failed else "passed"
    result["reason"] = f"steps not passed: {', '.join(failed)}" if failed else ""
    print(f"gpu-check {result['status'].upper()} in {result['seconds']:.0f} s"
          f"{': ' + result['reason'] if failed else ''}\nwrote {_write(out_dir, result)} and {log_path}")
    return EXIT_FAILED if failed else EXIT_OK
