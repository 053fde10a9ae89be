"""Where the microseconds of a small fastrnn.RNN call go: the module against the layers under it.

For each shape (fp32, tanh, one layer) times, interleaved, one call of:
  nn.RNN                 torch.nn.RNN (the reference the table's ratios divide)
  module                 fastrnn.RNN(x)
  functional.rnn         the stack function the module calls (weights, hx given)
  op                     torch.ops.fastrnn.rnn_forward as a user calls it (through its
                         autograd registration, which redispatches when no grad is needed)
  op below autograd      the CPU kernel entry alone: argument checks, packing, the recurrence
and from op-below-autograd calls at T=1 and T=16/T (forced fused path) the op's fixed cost
per call and the recurrence's time per step (with its multiply-add rate). Training: the
module's forward+backward against the two ops (rnn_forward + rnn_backward) called directly.

    python benchmarks/glue_profile.py [--threads 1] [--clock thread] [--shapes 0,2]

--clock thread (default) times with the calling thread's CPU time: robust on a loaded machine,
exact for one thread (with 2 threads it omits the helper thread's time: use --clock wall).
Each entry is the best of --rounds interleaved rounds (fixed costs, not typical load).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from common import SHAPES, shape_id, twins

import fastrnn
from fastrnn import functional


def interleaved(fns: dict, clock, calls: int, rounds: int) -> dict:
    """name -> microseconds per call: the best of `rounds` rounds of `calls` calls each (the
    best, not the median: a profile of fixed costs wants the machine's undisturbed time)."""
    for fn in fns.values():
        for _ in range(3):
            fn()
    per = {name: [] for name in fns}
    items = list(fns.items())
    for r in range(rounds):
        # The order rotates: a call right after nn.RNN's (which churns the caches and the
        # allocator) is slower, and every entry should see every predecessor alike.
        for name, fn in items[r % len(items):] + items[:r % len(items)]:
            start = clock()
            for _ in range(calls):
                fn()
            per[name].append((clock() - start) / calls * 1e6)
    return {name: min(v) for name, v in per.items()}


def profile(shape, clock, rounds: int) -> None:
    T, B, I, H = shape
    ref, ours, x = twins(shape)
    hx = torch.zeros(B, H)  # [B, H]
    weights = (ours.weight_ih_l0, ours.weight_hh_l0, ours.bias_ih_l0, ours.bias_hh_l0)
    op = torch.ops.fastrnn.rnn_forward.default
    op_bwd = torch.ops.fastrnn.rnn_backward.default

    def below(x, hx):
        with torch._C._AutoDispatchBelowAutograd():
            return op(x, hx, *weights, None, False, "tanh")

    calls = max(3, int(3e7 / (T * B * (I + H) * H)))  # >= 3 calls per sample: steady state
    with torch.no_grad():
        inf = interleaved({
            "nn.RNN": lambda: ref(x),
            "module": lambda: ours(x),
            "functional.rnn": lambda: functional.rnn(x, hx[None], [weights], num_layers=1, bidirectional=False),
            "op": lambda: op(x, hx, *weights, None, False, "tanh"),
            "op below autograd": lambda: below(x, hx),
        }, clock, calls, rounds)
        old = os.environ.get("FASTRNN_CPU_PATH")
        os.environ["FASTRNN_CPU_PATH"] = "fused"  # T=1 would take the stepwise path
        x1, x16 = x[:1].contiguous(), x[:16].contiguous()
        short = interleaved({"T=1": lambda: below(x1, hx), "T=16": lambda: below(x16, hx)},
                            clock, max(calls, 20), rounds)
        if old is None:
            del os.environ["FASTRNN_CPU_PATH"]
        else:
            os.environ["FASTRNN_CPU_PATH"] = old
        y = below(x, hx)
    step_us = (inf["op below autograd"] - short["T=16"]) / (T - 16)
    dy = torch.randn_like(y)
    xg = x.clone().requires_grad_()

    def train(model):
        def step():
            model.zero_grad(set_to_none=True)
            xg.grad = None
            model(xg)[0].backward(dy)
        return step

    tr = interleaved({
        "nn.RNN": train(ref),
        "module": train(ours),
        "ops fwd+bwd": lambda: (below(x, hx),
                                op_bwd(dy, x, hx, weights[0], weights[1], y, None, False, "tanh", [True, True])),
    }, clock, 3, rounds)

    print(f"## {shape_id(shape)}  (us per call, best round)")
    print("inference: " + ", ".join(f"{k} {v:.1f}" for k, v in inf.items()))
    print(f"  module glue (module - op below autograd) {inf['module'] - inf['op below autograd']:.1f}; "
          f"op fixed cost (T=1) {short['T=1']:.1f}; per step {step_us * 1e3:.0f} ns = "
          f"{B * (I + H) * H / (step_us * 1e3):.1f} multiply-adds/ns")
    print("training: " + ", ".join(f"{k} {v:.1f}" for k, v in tr.items()))
    print(f"  module glue (module - ops) {tr['module'] - tr['ops fwd+bwd']:.1f}; "
          f"ratios: inference {inf['nn.RNN'] / inf['module']:.2f}x, training {tr['nn.RNN'] / tr['module']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["thread", "wall"], default="thread")
    parser.add_argument("--shapes", default="0,1,2", help="comma list of benchmarks/common.py SHAPES indices")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.clock == "thread" else time.perf_counter
    print(f"# fastrnn {fastrnn.__file__}, {args.threads} thread(s), {args.clock} clock, torch {torch.__version__}")
    for i in args.shapes.split(","):
        profile(SHAPES[int(i)], clock, args.rounds)


if __name__ == "__main__":
    main()
