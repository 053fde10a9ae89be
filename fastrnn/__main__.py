"""``python -m fastrnn`` (or ``fastrnn``): what this machine gets from fastrnn.

Prints the environment and the backends that can run, checks each backend against
torch.nn.RNN (outputs and gradients), and times them against nn.RNN on a grid of shapes.
The work is done in ``fastrnn/_report.py``; this file only parses the command line.
Subcommands: ``python -m fastrnn gpu-check`` (fastrnn/_gpu_check.py) and
``python -m fastrnn cost-model`` (fastrnn/_cost_table.py: the CUDA cost model's predictions).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    values = [_positive_int(v.strip()) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected a comma list of positive integers, got {text!r}")
    return values


def _shapes(text: str):
    from ._report import Shape

    shapes = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        fields = part.split(",")
        if len(fields) != 4:
            raise argparse.ArgumentTypeError(f"each shape is T,B,I,H (four integers), got {part!r}")
        shapes.append(Shape(*(_positive_int(f.strip()) for f in fields)))
    if not shapes:
        raise argparse.ArgumentTypeError("expected at least one shape T,B,I,H")
    return shapes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastrnn",
        description="Show what fastrnn gives on this machine: backends, parity with torch.nn.RNN, "
                    "and speed against nn.RNN (cuDNN on GPU).",
        epilog="Exit status: 0 on success, 1 when a backend fails the parity check, 2 on bad options. "
               "On an NVIDIA GPU machine, from a source checkout: `python -m fastrnn gpu-check` builds "
               "the CUDA kernels and runs the GPU tests, compute-sanitizer and the cuDNN benchmark "
               "(see `python -m fastrnn gpu-check --help`).",
    )
    p.add_argument("--quick", action="store_true",
                   help="a small grid and short timings (under a minute on 2 CPU cores)")
    p.add_argument("--device", default="auto", help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    p.add_argument("--backends", default=None,
                   help="comma list of fastrnn backends to compare: native,triton,reference (default: all that run)")
    shape = p.add_argument_group("shapes (speed grid)",
                                 "by default a sweep over the hidden size H with input size = H")
    shape.add_argument("--shapes", type=_shapes, metavar='"T,B,I,H;..."', help="explicit shapes, ';'-separated")
    shape.add_argument("--seq-len", type=_positive_int, metavar="T",
                       help="default: 128 on CPU, 256 on CUDA (64 and 128 with --quick)")
    shape.add_argument("--batch", type=_positive_int, metavar="B",
                       help="default: 32 on CPU, 64 on CUDA (16 and 32 with --quick)")
    shape.add_argument("--input-size", type=_positive_int, metavar="I", help="default: equal to the hidden size")
    shape.add_argument("--hidden-size", type=_int_list, metavar="H[,H...]",
                       help="hidden sizes to sweep (default: 32..1024 on CPU, 64..2048 on CUDA)")
    shape.add_argument("--num-layers", type=_positive_int, default=1)
    shape.add_argument("--bidirectional", action="store_true")
    p.add_argument("--min-run-time", type=_positive_float, default=None, metavar="SECONDS",
                   help="timing budget per measurement (default 0.5, 0.1 with --quick)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check")
    p.add_argument("--no-speed", action="store_true", help="skip the speed comparison")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="write every result to this JSON file")
    p.add_argument("--plot", metavar="PATH", help="write a PNG: speedup vs hidden size per backend (needs matplotlib)")
    return p


def _resolve(args, parser):
    from . import _report

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(args.device)
        except RuntimeError:
            parser.error(f"--device: expected auto, cpu, cuda or cuda:N, got {args.device!r}")
        if device.type not in ("cpu", "cuda"):
            parser.error(f"--device: expected auto, cpu, cuda or cuda:N, got {args.device!r}")
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            parser.error(f"--device {args.device}: only {torch.cuda.device_count()} CUDA device(s)")
    backends = None
    if args.backends is not None:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        bad = [b for b in backends if b not in _report.BACKEND_NAMES]
        if bad or not backends:
            parser.error(f"--backends: choose from {','.join(_report.BACKEND_NAMES)}, got {args.backends!r}")
    if args.plot and args.no_speed:
        parser.error("--plot needs the speed comparison (drop --no-speed)")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install matplotlib (or fastrnn[cli])")
    overrides = (args.seq_len, args.batch, args.input_size, args.hidden_size)
    if args.shapes and any(v is not None for v in overrides):
        parser.error("--shapes cannot be combined with --seq-len/--batch/--input-size/--hidden-size")
    shapes = args.shapes or _report.default_grid(device.type, args.quick, *overrides)
    return device, backends, shapes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["gpu-check"]:  # the subcommands; everything else is the report below
        from ._gpu_check import main as gpu_check

        return gpu_check(argv[1:])
    if argv[:1] == ["cost-model"]:
        from ._cost_table import main as cost_model

        return cost_model(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from . import _report

    device, wanted, shapes = _resolve(args, parser)
    dtype = DTYPES[args.dtype]
    min_run_time = args.min_run_time or (0.1 if args.quick else 0.5)

    env = _report.environment(device)
    status = _report.backend_status(device)
    by_device = {"cpu": _report.backend_status(torch.device("cpu"))}
    if torch.cuda.is_available():
        by_device["cuda"] = _report.backend_status(torch.device("cuda"))
    by_device[device.type] = status
    print(_report.environment_text(env, by_device))
    by_name = {s["name"]: s for s in status}
    if wanted is None:
        wanted = [s["name"] for s in status if s["available"]]
    else:
        for name in wanted:
            if not by_name[name]["available"]:
                parser.error(f"--backends: '{name}' cannot run on {device}: {by_name[name]['note']}")
    interpreted = [b for b in wanted if by_name[b]["mode"] == "interpreter"]
    result = {"environment": env, "backends": status, "backends_by_device": by_device, "dtype": args.dtype, "parity": [], "speed": [],
              "shapes": _report.shape_dicts(shapes), "num_layers": args.num_layers,
              "bidirectional": args.bidirectional, "min_run_time": min_run_time}
    baseline_label = "nn.RNN (cuDNN)" if device.type == "cuda" else "nn.RNN"

    if not args.no_parity:
        print(f"\nParity with torch.nn.RNN, same weights, {args.dtype}: max abs error and max abs error / max |nn.RNN|"
              " of outputs (output, h_n) and gradients (input, h0, weights)")
        for name in wanted:
            shape = _report.PARITY_SHAPE_INTERPRETER if name in interpreted else _report.PARITY_SHAPE
            for packed in (False, True):
                result["parity"].append(_report.parity(name, shape, device=device, dtype=dtype,
                                                       packed=packed, seed=args.seed))
        print(_report.parity_text(result["parity"]))

    if not args.no_speed:
        timed = [b for b in wanted if b not in interpreted]
        print(f"\nSpeed against {baseline_label}, {args.dtype}, CPU threads: {torch.get_num_threads()}, "
              f"{args.num_layers} layer(s){', bidirectional' if args.bidirectional else ''}; "
              "median per call; inference = forward under no_grad, training = forward + backward "
              "(input and weight gradients)")
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if device.type == "cpu" and load > 0.5 * (os.cpu_count() or 1):
            print(f"  (the machine is busy, load average {load:.1f} on {os.cpu_count()} cores: timings will be noisy;"
                  " --threads 1 and a larger --min-run-time steady them)")
        for name in interpreted:
            print(f"  (skipping {name}: Triton interpreter timings mean nothing; parity only)")
        result["speed"] = _report.speed(
            shapes, timed, device=device, dtype=dtype, num_layers=args.num_layers,
            bidirectional=args.bidirectional, min_run_time=min_run_time, seed=args.seed,
            progress=not args.no_progress,
        )
        print(_report.speed_text(result["speed"], baseline_label))
        if device.type == "cuda":
            from .backends import cuda_choice

            result["cuda_choice"] = cuda_choice()
            print("\nCUDA path chosen per layer shape (fastrnn/_cuda_choice.py):")
            for key, choice in result["cuda_choice"].items():
                timed = ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in choice["seconds"].items())
                print(f"  {key}: {choice['candidate']} ({choice['source']}{'; ' + timed if timed else ''})")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
        print(f"\nwrote {args.json}")
    if args.plot:
        T, B = shapes[0].T, shapes[0].B
        title = (f"fastrnn vs {baseline_label}: {args.dtype}, {device}"
                 f" ({env['cuda']['devices'][device.index or 0]['name'] if device.type == 'cuda' else env['cpu']}), "
                 f"T={T}, B={B}, threads: {torch.get_num_threads()}")
        _report.plot(result["speed"], args.plot, title, baseline_label)
        print(f"wrote {args.plot}")
    failed = [r for r in result["parity"] if not r["ok"]]
    if failed:
        print(f"\nPARITY FAILED for: {', '.join(sorted({r['backend'] for r in failed}))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
