"""Builds fastrnn._C: the op schemas, the CPU kernels and (when possible) the CUDA kernels.

Environment switches:
  FASTRNN_BUILD_CUDA=0|1   skip / require the CUDA kernels (default: build them when nvcc
                           and a CUDA build of torch are both present)
  FASTRNN_CUDA_ARCHS       semicolon list of compute capabilities (default "8.0;9.0")
  FASTRNN_DEBUG=1          -O0 -g, no -DNDEBUG (the c10/ATen headers' debug assertions on)
  MAX_JOBS                 parallel compile jobs (torch's BuildExtension reads it)
"""
import glob
import os
import sys

from setuptools import setup

import torch
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _want_cuda() -> bool:
    flag = os.environ.get("FASTRNN_BUILD_CUDA", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    have = torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None
    if flag in ("1", "true", "yes", "on") and not have:
        sys.exit("fastrnn: FASTRNN_BUILD_CUDA=1 but nvcc (CUDA_HOME) or a CUDA build of torch is missing")
    return have


def _cuda_include_dirs() -> list:
    # The pip CUDA wheels hold cuBLAS headers that a bare toolkit may lack (ATen/cuda needs them).
    dirs = []
    for site in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cublas/include", "nvidia/cuda_runtime/include"):
            path = os.path.join(site, sub)
            if os.path.isdir(path) and path not in dirs:
                dirs.append(path)
    return dirs


def _gencode_flags() -> list:
    archs = os.environ.get("FASTRNN_CUDA_ARCHS", "8.0;9.0").replace(",", ";").split(";")
    flags = []
    for arch in filter(None, (a.strip() for a in archs)):
        num = arch.replace(".", "")
        flags.append(f"-gencode=arch=compute_{num},code=sm_{num}")
    return flags


def extensions():
    debug = os.environ.get("FASTRNN_DEBUG", "0") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3", "-DNDEBUG"]
    # csrc/*.cpp: schemas, shared host code, and cuda_plan_ops.cpp (the CUDA launch plan as a
    # testable op, pure host C++); csrc/sim/*.cpp: the SIMT simulation of the CUDA kernels
    # (backend "cuda_sim", plain C++ compiled from the same kernel bodies as nvcc's): every
    # build compiles them.
    sources = (sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
               + sorted(glob.glob("csrc/sim/*.cpp")))
    cxx = opt + ["-fvisibility=hidden"]  # torch sets the C++ standard (C++20)
    if torch.backends.openmp.is_available() and sys.platform.startswith("linux"):
        # at::parallel_for is an inline template: without -fopenmp it compiles to a serial
        # loop. With it, the CPU kernels share torch's OpenMP threads (GOMP symbols resolve
        # to the libgomp that torch has already loaded).
        cxx += ["-fopenmp"]
    kwargs = dict(extra_compile_args={"cxx": cxx}, include_dirs=[os.path.join(HERE, "csrc")])
    if _want_cuda():
        sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
        kwargs["extra_compile_args"]["nvcc"] = opt + [
            "--expt-relaxed-constexpr", "-Xptxas=-v", "-lineinfo",
        ] + _gencode_flags()
        kwargs["extra_compile_args"]["cxx"] = cxx + ["-DFASTRNN_WITH_CUDA"]
        kwargs["include_dirs"] += _cuda_include_dirs()
        return [cpp_extension.CUDAExtension("fastrnn._C", sources, **kwargs)]
    return [cpp_extension.CppExtension("fastrnn._C", sources, **kwargs)]


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
