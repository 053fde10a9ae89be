"""``python -m fastrnn cost-model``: the cost model's predictions (csrc/cuda/cost_model.h) for
issue 12's shapes as a Markdown table, the one in csrc/cuda/README.md. Predictions only:
nothing here is measured (benchmarks/bench_cuda.py puts measurements beside them on a GPU)."""
from __future__ import annotations

import argparse

import torch

from ._cuda_choice import CANDIDATES, mean_live_rows, predict

# (T, B, H, packed): issue 12's benchmark shapes; the packed bidirectional case is one
# direction of B=64, T=100, H=128 (fastrnn runs the two directions one after the other), its
# lengths (T <= 100) spread evenly from T down to 1 (PackedSequence order): packed_lengths.
SHAPES = [(1024, 16, 256, False), (1024, 64, 512, False), (256, 16, 256, False),
          (128, 64, 1024, False), (512, 8, 128, False), (100, 256, 64, False),
          (100, 64, 128, True)]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
PARTS = ("compute", "smem", "latency", "barrier", "launch")


def packed_lengths(T: int, B: int) -> torch.Tensor:  # [B], non-increasing, T down to 1
    return torch.linspace(T, 1, B).round().long()


def _us(ns: float) -> str:
    return f"{ns / 1e3:.2f}"


def rows(device: str, dtypes=("float32", "bfloat16")) -> list[dict]:
    out = []
    for T, B, H, packed in SHAPES:
        for dtype in dtypes:
            for backward in (False, True):
                live = mean_live_rows(packed_lengths(T, B), T) if packed else 0.0
                preds = {p["name"]: p for p in predict(device, T, B, H, DTYPES[dtype],
                                                       backward=backward, packed=packed,
                                                       live_rows=live)}
                fits = {k: p for k, p in preds.items() if p["fits"]}
                best = min(fits, key=lambda k: fits[k]["total"])
                ours = min((k for k in fits if k != "cudnn"), key=lambda k: fits[k]["total"])
                out.append({"T": T, "B": B, "H": H, "packed": packed, "dtype": dtype,
                            "direction": "bwd" if backward else "fwd", "preds": preds,
                            "best": best, "ours": ours})
    return out


def markdown(device: str, dtypes=("float32", "bfloat16")) -> str:
    head = ("| T, B, H | dtype | dir | " + " | ".join(CANDIDATES)
            + " | model's choice | best fastrnn path: " + " + ".join(PARTS) + " | fastrnn / cuDNN |")
    lines = [head, "|" + "---|" * (len(CANDIDATES) + 6)]
    for r in rows(device, dtypes):
        p = r["preds"]
        cells = []
        for name in CANDIDATES:
            q = p[name]
            label = _us(q["total"]) if q["fits"] else "-"
            if q["fits"] and name in ("single", "grid"):
                label += f" ({q['path']}, {q['grid']}x{q['tiles_per_step']})"
            elif q["fits"] and name in ("tiled", "tiled_mma"):
                sync = "grid sync" if q["grid_barrier"] else "no grid sync"
                label += f" ({q['grid']} of {q['rows_per_tile']}x{q['tile_cols']}, {sync})"
            cells.append(label)
        o = p[r["ours"]]
        shape = f"{r['T']}, {r['B']}, {r['H']}" + (" packed" if r["packed"] else "")
        ratio = p["cudnn"]["total"] / o["total"]
        lines.append(f"| {shape} | {r['dtype']} | {r['direction']} | " + " | ".join(cells)
                     + f" | {r['best']} | {r['ours']}: " + " + ".join(_us(o[k]) for k in PARTS)
                     + f" | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fastrnn cost-model",
        description="Predicted microseconds per time step of every CUDA candidate (fastrnn's "
                    "persistent single/grid/tiled plans, the per-step cuBLAS path, cuDNN) for issue 12's "
                    "shapes, from csrc/cuda/cost_model.h. Unmeasured predictions.")
    p.add_argument("--device", choices=list(torch.ops.fastrnn._cuda_cost_devices()), default="h100")
    p.add_argument("--dtype", choices=sorted(DTYPES), action="append",
                   help="repeatable (default: float32 and bfloat16)")
    args = p.parse_args(argv)
    print(f"Cost model, device {args.device}: predicted us per time step (NOT measured). "
          "single/grid cells: (path, blocks x tiles per step); tiled: (blocks of rows x columns, "
          "grid sync or not); '-': does not fit.")
    print(markdown(args.device, tuple(args.dtype or ("float32", "bfloat16"))))
    return 0
