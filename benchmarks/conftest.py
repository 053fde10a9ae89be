"""Lets the benchmarks import common.py (benchmarks/ is not a package)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
