"""Lets the benchmarks import common.py (benchmarks/ is not a package)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Every pytest-benchmark JSON records the machine as common.machine_metadata does (the
    FMA peak where a benchmark module measured one and left it in common.FMA_PEAK_GFLOPS)."""
    import common

    machine_info["fastrnn"] = common.machine_metadata(getattr(common, "FMA_PEAK_GFLOPS", None))
