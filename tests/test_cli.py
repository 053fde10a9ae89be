"""`python -m fastrnn`: tiny shapes, short timings; the report's contents must be sane."""
import json
import os
import subprocess
import sys

import pytest
import torch

from fastrnn import __main__ as cli
from fastrnn import _report

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TINY = ["--shapes", "5,3,4,8;7,2,6,16", "--min-run-time", "0.005", "--no-progress"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    paths = {"json": str(out / "report.json"), "plot": str(out / "speedup.png")}
    rc = cli.main(["--quick", *TINY, "--device", "cpu", "--json", paths["json"], "--plot", paths["plot"]])
    with open(paths["json"]) as f:
        return rc, json.load(f), paths


def test_exit_status_and_environment(report):
    rc, data, _ = report
    assert rc == 0
    env = data["environment"]
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["cpu"]
    names = {b["name"]: b for b in data["backends"]}
    assert set(names) == {"native", "triton", "reference"}
    assert names["reference"]["available"]
    for b in data["backends"]:
        assert b["available"] or b["note"], f"{b['name']} is unavailable without a reason"


def test_parity_rows_are_small(report):
    _, data, _ = report
    available = [b["name"] for b in data["backends"] if b["available"]]
    assert {r["backend"] for r in data["parity"]} == set(available)
    for r in data["parity"]:
        assert "error" not in r, r
        assert r["ok"] and r["output_rel"] <= 1e-4 and r["grad_rel"] <= 1e-4, r
        assert 0 <= r["output_abs"] < 1e-3 and 0 <= r["grad_abs"] < 1e-3, r
    assert {r["packed"] for r in data["parity"]} == {False, True}


def test_speed_rows(report):
    _, data, _ = report
    timed = [b["name"] for b in data["backends"] if b["available"] and b["mode"] != "interpreter"]
    rows = data["speed"]
    assert len(rows) == 2 * 2 * (1 + len(timed))  # shapes x modes x (nn.RNN + backends)
    for r in rows:
        assert {"shape", "T", "B", "I", "H", "mode", "backend", "median_ms", "speedup", "gflops"} <= r.keys()
        assert "error" not in r, r
        assert r["median_ms"] > 0 and r["gflops"] > 0 and r["speedup"] > 0 and r["runs"] >= 5
        expected = _report.flops(_report.Shape(r["T"], r["B"], r["I"], r["H"]), 1, False, r["mode"])
        assert r["gflops"] == pytest.approx(expected / (r["median_ms"] * 1e-3) / 1e9)
        if r["backend"] == "nn.RNN":
            assert r["speedup"] == 1.0
    assert {r["shape"] for r in rows} == {"5,3,4,8", "7,2,6,16"}


def test_plot_is_a_png(report):
    _, _, paths = report
    with open(paths["plot"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(paths["plot"]) > 10_000


def test_printed_tables(capsys):
    assert cli.main(["--quick", *TINY, "--backends", "reference", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Backends on cpu:" in out and "Parity with torch.nn.RNN" in out
    assert "median ms" in out and "vs nn.RNN" in out and "GFLOP/s" in out
    assert "7,2,6,16" in out and "training" in out and "inference" in out


def test_flops_count():
    s = _report.Shape(T=3, B=2, I=5, H=7)
    assert _report.flops(s, 1, False, "inference") == 2 * 3 * 2 * 7 * (5 + 7)
    assert _report.flops(s, 1, False, "training") == 3 * 2 * 3 * 2 * 7 * (5 + 7)
    # Layer 2 of a bidirectional stack reads both directions' outputs (2H features).
    assert _report.flops(s, 2, True, "inference") == 2 * (2 * 3 * 2 * 7 * (5 + 7)) + 2 * (2 * 3 * 2 * 7 * (14 + 7))


def test_default_grid_overrides():
    grid = _report.default_grid("cpu", quick=True, T=9, hidden=[3, 5])
    assert [(s.T, s.I, s.H) for s in grid] == [(9, 3, 3), (9, 5, 5)]
    assert all(s.B == _report.QUICK_T_B["cpu"][1] for s in grid)


@pytest.mark.parametrize("argv", [
    ["--shapes", "1,2,3"],
    ["--shapes", "1,2,3,0"],
    ["--shapes", "a,b,c,d"],
    ["--shapes", "2,2,2,2", "--hidden-size", "8"],
    ["--dtype", "float8"],
    ["--backends", "native,cudnn"],
    ["--threads", "0"],
    ["--min-run-time", "-1"],
    ["--hidden-size", "8,x"],
    ["--device", "tpu"],
    ["--no-speed", "--plot", "x.png"],
], ids=lambda a: " ".join(a))
def test_bad_options_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--device", "cuda"])
    assert exc.value.code == 2 and "no CUDA device" in capsys.readouterr().err


def test_module_entry_point_and_lazy_matplotlib():
    code = ("import sys; from fastrnn.__main__ import main; "
            "rc = main(['--no-speed', '--backends', 'reference', '--device', 'cpu']); "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported without --plot'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Parity with torch.nn.RNN" in proc.stdout
    help_ = subprocess.run([sys.executable, "-m", "fastrnn", "--help"], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert help_.returncode == 0 and "--quick" in help_.stdout and "--plot" in help_.stdout


def test_failing_backend_is_reported_and_exit_status_is_1(monkeypatch, tmp_path, capsys):
    import fastrnn.reference

    def broken(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setattr(fastrnn.reference, "rnn_forward", broken)
    path = tmp_path / "r.json"
    rc = cli.main(["--quick", *TINY, "--backends", "reference", "--device", "cpu", "--json", str(path)])
    assert rc == 1
    data = json.loads(path.read_text())
    assert all(not r["ok"] and "kernel exploded" in r["error"] for r in data["parity"])
    ref_rows = [r for r in data["speed"] if r["backend"] == "reference"]
    assert ref_rows and all("kernel exploded" in r["error"] and r["median_ms"] is None for r in ref_rows)
    assert all(r["median_ms"] > 0 for r in data["speed"] if r["backend"] == "nn.RNN")
    captured = capsys.readouterr()
    assert "PARITY FAILED for: reference" in captured.err and "error" in captured.out


def test_parity_outside_tolerance_fails(monkeypatch):
    monkeypatch.setitem(_report.PARITY_TOL, torch.float32, -1.0)  # nothing can pass
    assert cli.main(["--no-speed", "--backends", "reference", "--device", "cpu"]) == 1


def test_interpreted_triton_gets_tiny_parity_and_no_timing(monkeypatch, tmp_path, capsys):
    """Under TRITON_INTERPRET=1 on CPU, triton is parity-checked on a tiny shape and left out of the timings.

    The kernels are stood in for by the reference (this test checks the report's handling,
    not Triton's numbers; tests of fastrnn.triton do that).
    """
    import types

    import fastrnn.reference

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    fake = types.ModuleType("fastrnn.triton.ops")
    fake.rnn_forward = fastrnn.reference.rnn_forward
    monkeypatch.setitem(sys.modules, "fastrnn.triton.ops", fake)
    path = tmp_path / "r.json"
    assert cli.main(["--quick", *TINY, "--backends", "triton,reference", "--device", "cpu", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    triton = next(b for b in data["backends"] if b["name"] == "triton")
    assert triton["available"] and triton["mode"] == "interpreter"
    tiny = str(_report.PARITY_SHAPE_INTERPRETER)
    assert [r["shape"] for r in data["parity"] if r["backend"] == "triton"] == [tiny, tiny]
    assert {r["backend"] for r in data["speed"]} == {"nn.RNN", "reference"}
    assert "skipping triton" in capsys.readouterr().out


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["--backends", "triton", "--device", "cpu"])
    assert exc.value.code == 2 and "TRITON_INTERPRET=1" in capsys.readouterr().err


def test_nan_from_a_backend_fails_parity(monkeypatch):
    import fastrnn.reference

    real = fastrnn.reference.rnn_forward

    def poisoned(*args, **kwargs):
        y = real(*args, **kwargs).clone()
        y[-1, 0, 0] = float("nan")
        return y

    monkeypatch.setattr(fastrnn.reference, "rnn_forward", poisoned)
    row = _report.parity("reference", _report.Shape(3, 2, 4, 5), device=torch.device("cpu"), dtype=torch.float32)
    assert not row["ok"] and row["output_abs"] == float("inf")
