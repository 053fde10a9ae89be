"""Compiles the kernels for a GPU target, with no GPU needed, and reports their resources.

    python -m fastrnn.triton.resources [sm]      # default sm 90

prints, per kernel and tile size, the warps, registers per thread, spill stack and shared
memory, i.e. the numbers behind ops.MAX_ON_CHIP_H. Needs compiled Triton (run it without
TRITON_INTERPRET=1); ptxas and cuobjdump come with the triton wheel.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from . import ops
from .rnn_bwd import rnn_bwd_persistent, rnn_bwd_step
from .rnn_fwd import rnn_fwd_persistent, rnn_fwd_step


def _signature(kernel, pointers: dict[str, str], constexprs: dict) -> dict[str, str]:
    return {
        name: "constexpr" if name in constexprs else pointers.get(name, "i32")
        for name in kernel.arg_names
    }


def compile_kernel(kernel, pointers: dict[str, str], constexprs: dict, num_warps: int, sm: int = 90):
    """Compiles a kernel; returns (registers, spill stack bytes, dynamic shared memory bytes)."""
    src = ASTSource(fn=kernel, signature=_signature(kernel, pointers, constexprs), constexprs=constexprs)
    compiled = triton.compile(src, target=GPUTarget("cuda", sm, 32), options={"num_warps": num_warps})
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        out = subprocess.run([cuobjdump, "--dump-resource-usage", f.name], capture_output=True, text=True,
                             check=True).stdout
    regs, stack = map(int, re.search(r"REG:(\d+) STACK:(\d+)", out).groups())
    return regs, stack, compiled.metadata.shared


def persistent(direction: str, dtype: str, block_h: int, sm: int = 90):
    """Resources of the persistent forward ('fwd') or backward ('bwd') kernel."""
    common = dict(HAS_LENGTHS=True, REVERSE=False, RELU=False, BLOCK_B=ops.BLOCK_B, BLOCK_H=block_h)
    warps = ops._num_warps(block_h)
    if direction == "fwd":
        ptrs = dict(xw_ptr="*fp32", h0_ptr=f"*{dtype}", w_ptr=f"*{dtype}", bias_ptr="*fp32",
                    len_ptr="*i64", y_ptr=f"*{dtype}")
        return compile_kernel(rnn_fwd_persistent, ptrs, dict(HAS_BIAS=True, **common), warps, sm)
    ptrs = dict(dy_ptr=f"*{dtype}", y_ptr=f"*{dtype}", w_ptr=f"*{dtype}", len_ptr="*i64",
                dz_ptr="*fp32", dh0_ptr="*fp32")
    return compile_kernel(rnn_bwd_persistent, ptrs, common, warps, sm)


def step(direction: str, dtype: str, sm: int = 90):
    """Resources of the tiled per-step forward ('fwd') or backward ('bwd') kernel."""
    tiles = dict(HAS_LENGTHS=True, RELU=False, BLOCK_B=ops.BLOCK_B, BLOCK_N=ops.STEP_BLOCK_N,
                 BLOCK_K=ops.STEP_BLOCK_K)
    if direction == "fwd":
        ptrs = dict(xw_ptr="*fp32", h0_ptr="*fp32", w_ptr=f"*{dtype}", bias_ptr="*fp32",
                    len_ptr="*i64", y_ptr="*fp32")
        return compile_kernel(rnn_fwd_step, ptrs, dict(HAS_BIAS=True, **tiles), ops.STEP_WARPS, sm)
    ptrs = dict(dy_ptr=f"*{dtype}", y_ptr=f"*{dtype}", w_ptr=f"*{dtype}", len_ptr="*i64",
                dz_ptr="*fp32", g_ptr="*fp32", dh0_ptr="*fp32")
    return compile_kernel(rnn_bwd_step, ptrs, dict(FINAL=False, **tiles), ops.STEP_WARPS, sm)


def main(sm: int = 90) -> None:
    print(f"sm_{sm}, BLOCK_B={ops.BLOCK_B}: kernel dtype tile warps registers spill_bytes smem_bytes")
    for dtype in ("fp32", "bf16"):
        for block_h in (16, 32, 64, 128):
            for direction in ("fwd", "bwd"):
                regs, stack, smem = persistent(direction, dtype, block_h, sm)
                print(f"persistent_{direction} {dtype} {block_h} {ops._num_warps(block_h)} {regs} {stack} {smem}")
        for direction in ("fwd", "bwd"):
            regs, stack, smem = step(direction, dtype, sm)
            print(f"step_{direction} {dtype} {ops.STEP_BLOCK_N}x{ops.STEP_BLOCK_K} {ops.STEP_WARPS} "
                  f"{regs} {stack} {smem}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
