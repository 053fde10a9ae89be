"""Lets the benchmarks import common.py (benchmarks/ is not a package)."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Every pytest-benchmark JSON records the machine as common.machine_metadata does (the
    FMA peak where a benchmark module measured one and left it in common.FMA_PEAK_GFLOPS)."""
    import common

    machine_info["fastrnn"] = common.machine_metadata(getattr(common, "FMA_PEAK_GFLOPS", None))


@pytest.fixture(autouse=True)
def two_threads():
    """Every benchmark runs on 2 threads (the tables' setting), whatever the machine has."""
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
