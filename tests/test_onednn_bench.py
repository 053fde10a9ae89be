"""benchmarks/onednn/run.py without oneDNN: it says how to get it and exits 0 (no compile)."""
import os
import subprocess
import sys

DRIVER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "onednn", "run.py")


def test_missing_onednn_says_how_to_get_it(tmp_path):
    done = subprocess.run([sys.executable, DRIVER, "--include-dir", str(tmp_path / "nonexistent")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "apt-get install libdnnl-dev" in done.stdout
    assert "skipping" in done.stdout
