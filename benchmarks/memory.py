"""Activation memory saved for backward: fastrnn vs torch.nn.RNN (CPU, fp32, tanh).

Counts, through torch.autograd.graph.saved_tensors_hooks, the distinct storages autograd
keeps alive between forward and backward, split into the model's inputs/parameters
(x, weights; they exist anyway) and activations (everything else), and of those the
bytes beyond the returned output y (which the caller holds anyway). fastrnn saves its
output y [T, B, H] itself and h0 [B, H]: activations = output + O(B*H) per layer, and
nothing beyond the output but h0. nn.RNN saves each step's h_t as a separate tensor
(its output is a stacked copy), so it keeps a second output-sized buffer alive.

    python benchmarks/memory.py [--json PATH]
"""
from __future__ import annotations

import argparse
import json

import torch

from common import SHAPES, shape_id, twins


def saved_bytes(model, x) -> dict:
    """Bytes of distinct storages saved for backward: inputs/parameters vs activations."""
    x = x.detach().clone().requires_grad_()
    known = {t.untyped_storage().data_ptr() for t in [x, *model.parameters()]}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y, _ = model(x)
    out = y.untyped_storage().data_ptr()
    activations = sum(n for ptr, n in storages.items() if ptr not in known)
    inputs = sum(n for ptr, n in storages.items() if ptr in known)
    beyond = sum(n for ptr, n in storages.items() if ptr not in known and ptr != out)
    del y
    return {"activations": activations, "inputs_and_parameters": inputs,
            "beyond_output": beyond}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    args = parser.parse_args()
    rows = []
    print("| T, B, I, H | output y bytes | activations saved: fastrnn | nn.RNN | "
          "kept beyond the output: fastrnn | nn.RNN |")
    print("|---|---|---|---|---|---|")
    for shape in SHAPES:
        T, B, I, H = shape
        ref, ours, x = twins(shape)
        ours_b, ref_b = saved_bytes(ours, x), saved_bytes(ref, x)
        out_bytes = T * B * H * 4
        extra = ours_b["activations"] - out_bytes
        rows.append({"shape": shape_id(shape), "output_bytes": out_bytes,
                     "fastrnn": ours_b, "nn.RNN": ref_b, "fastrnn_minus_output": extra})
        print(f"| {T}, {B}, {I}, {H} | {out_bytes:,} | {ours_b['activations']:,} "
              f"(output + {extra / (B * H * 4):.0f} x B*H fp32) | {ref_b['activations']:,} "
              f"| {ours_b['beyond_output']:,} | {ref_b['beyond_output']:,} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
