"""The Triton backend (fastrnn/triton) against torch.nn.RNN and fastrnn.reference.

Without a GPU the kernels run on CPU tensors in Triton's interpreter (tests/conftest.py
sets TRITON_INTERPRET=1); with a GPU they run compiled on CUDA tensors, and the CPU-tensor
variants, which need the interpreter, run in a subprocess with no visible GPU
(test_interpreter_suite_in_subprocess). Shapes stay small: the interpreter executes every
Triton op in numpy.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fastrnn
from fastrnn import reference
from tests.helpers import TRITON_DEVICES, TRITON_MODE, assert_close, grads_of, random_loss, twin_rnn

triton = pytest.importorskip("triton")
from fastrnn.triton import ops  # noqa: E402  (after the importorskip)

REDUCED = [torch.float16, torch.bfloat16]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=["persistent", "tiled"])
def path(request, monkeypatch):
    """Runs a test on the persistent kernels, or forces the tiled per-step fallback with
    16-wide tiles, so that H = 17 spans two hidden blocks and two reduction chunks."""
    if request.param == "tiled":
        monkeypatch.setattr(ops, "MAX_ON_CHIP_H", {dt: 8 for dt in ops.MAX_ON_CHIP_H})
        monkeypatch.setattr(ops, "STEP_BLOCK_N", 16)
        monkeypatch.setattr(ops, "STEP_BLOCK_K", 16)
    return request.param


def layer_args(T, B, I, H, *, bias=True, h0=True, lengths=None, device="cpu", dtype=torch.float32, seed=0):
    """Random arguments for one layer: (tensors that need gradients, the full argument list head)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device=device, dtype=dtype).requires_grad_()

    x = rand(T, B, I)  # [T, B, I]
    hx = rand(B, H) if h0 else torch.zeros(B, H, device=device, dtype=dtype)  # [B, H]
    w_ih, w_hh = rand(H, I, scale=H**-0.5), rand(H, H, scale=H**-0.5)  # [H, I], [H, H]
    b_ih, b_hh = (rand(H, scale=0.3), rand(H, scale=0.3)) if bias else (None, None)  # [H]
    lens = None if lengths is None else torch.tensor(lengths, dtype=torch.int64, device=device)  # [B]
    leaves = [t for t in (x, hx, w_ih, w_hh, b_ih, b_hh) if t is not None and t.requires_grad]
    return leaves, [x, hx, w_ih, w_hh, b_ih, b_hh, lens]


# (T, B, I, H, bias, h0, lengths): odd sizes, several batch blocks (BLOCK_B = 16), a lengths
# vector with 0, T and values past T (contract: any value is safe).
LAYER_CASES = {
    "T5-B3-I7-H17": (5, 3, 7, 17, True, True, None),
    "T1-B1-I1-H1": (1, 1, 1, 1, True, True, None),
    "B35-three-batch-blocks": (4, 35, 5, 17, True, True, None),
    "no-bias-no-h0": (5, 3, 7, 17, False, False, None),
    "lengths": (6, 5, 3, 17, True, True, [6, 0, 3, 9, 1]),
    "lengths-B35-no-bias": (4, 35, 3, 9, False, True, [(b * 7) % 6 for b in range(35)]),
}


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", LAYER_CASES.values(), ids=LAYER_CASES.keys())
def test_layer_matches_reference(case, reverse, nonlinearity, device, path):
    T, B, I, H, bias, h0, lengths = case
    leaves, args = layer_args(T, B, I, H, bias=bias, h0=h0, lengths=lengths, device=device)
    y = fastrnn.triton.rnn_forward(*args, reverse, nonlinearity)
    y_ref = reference.rnn_forward(*args, reverse, nonlinearity)
    assert_close(y, y_ref, name="y")
    # h_n is a view of y: its gradient reaches the kernel added into the last visited step.
    h_n, h_n_ref = (y[0], y_ref[0]) if reverse else (y[-1], y_ref[-1])
    grads = grads_of(random_loss([y, h_n]), leaves)
    grads_ref = grads_of(random_loss([y_ref, h_n_ref]), leaves)
    for name, g, g_ref in zip(["x", "hx", "w_ih", "w_hh", "b_ih", "b_hh"], grads, grads_ref):
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize(
    "config",
    [
        dict(num_layers=2, bidirectional=True, nonlinearity="tanh", bias=True),
        dict(num_layers=3, bidirectional=False, nonlinearity="relu", bias=False),
        dict(num_layers=1, bidirectional=True, nonlinearity="relu", bias=True, batch_first=True),
    ],
    ids=["L2-bidir-tanh", "L3-relu-no-bias", "L1-bidir-relu-batch-first"],
)
def test_module_matches_nn_rnn(config, device, path):
    T, B, I, H = 5, 3, 7, 17
    ref, ours = twin_rnn(I, H, backend="triton", device=device, **config)
    D = 2 if config["bidirectional"] else 1
    shape = (B, T, I) if config.get("batch_first") else (T, B, I)
    x = torch.randn(shape, device=device, requires_grad=True)
    hx = torch.randn(config["num_layers"] * D, B, H, device=device, requires_grad=True)
    out, h_n = ours(x, hx)
    out_ref, h_n_ref = ref(x, hx)
    assert_close(out, out_ref, name="output")
    assert_close(h_n, h_n_ref, name="h_n")
    names = ["input", "hx"] + ours._flat_weights_names
    grads = grads_of(random_loss([out, h_n]), [x, hx, *ours.parameters()])
    grads_ref = grads_of(random_loss([out_ref, h_n_ref]), [x, hx, *ref.parameters()])
    for name, g, g_ref in zip(names, grads, grads_ref):
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_packed_sequence_matches_nn_rnn(device, path):
    """Unsorted lengths through pack_padded_sequence: reverse + lengths is the backward
    direction of a packed sequence (rnn.h)."""
    T, B, I, H = 6, 4, 5, 17
    ref, ours = twin_rnn(I, H, num_layers=2, bidirectional=True, backend="triton", device=device)
    lengths = torch.tensor([3, 6, 1, 4])
    x = torch.randn(T, B, I, device=device, requires_grad=True)
    hx = torch.randn(4, B, H, device=device, requires_grad=True)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, h_n = ours(packed, hx)
    out_ref, h_n_ref = ref(packed, hx)
    assert_close(out.data, out_ref.data, name="packed output")
    assert_close(h_n, h_n_ref, name="h_n")
    padded, _ = pad_packed_sequence(out)
    padded_ref, _ = pad_packed_sequence(out_ref)
    grads = grads_of(random_loss([padded, h_n]), [x, hx, *ours.parameters()])
    grads_ref = grads_of(random_loss([padded_ref, h_n_ref]), [x, hx, *ref.parameters()])
    for name, g, g_ref in zip(["input", "hx"] + ours._flat_weights_names, grads, grads_ref):
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("dtype", REDUCED, ids=["float16", "bfloat16"])
def test_reduced_precision_matches_reference(dtype, device, path):
    """float16 / bfloat16 are computed in float32 and rounded once (rnn.h), like the reference."""
    T, B, I, H = 5, 3, 7, 17
    leaves, args = layer_args(T, B, I, H, lengths=[5, 2, 0], device=device, dtype=dtype)
    y = fastrnn.triton.rnn_forward(*args, True, "tanh")
    y_ref = reference.rnn_forward(*args, True, "tanh")
    assert y.dtype == dtype
    assert_close(y, y_ref, name="y")
    grads = grads_of(random_loss([y]), leaves)
    grads_ref = grads_of(random_loss([y_ref]), leaves)
    for name, g, g_ref in zip(["x", "hx", "w_ih", "w_hh", "b_ih", "b_hh"], grads, grads_ref):
        assert g.dtype == dtype
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize("dtype", REDUCED, ids=["float16", "bfloat16"])
def test_reduced_precision_module_matches_nn_rnn(dtype, device):
    ref, ours = twin_rnn(7, 17, backend="triton", device=device, dtype=dtype)
    x = torch.randn(5, 3, 7, device=device, dtype=dtype)
    out, h_n = ours(x)
    out_ref, h_n_ref = ref(x)
    assert_close(out, out_ref, name="output")
    assert_close(h_n, h_n_ref, name="h_n")


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_hidden_past_on_chip_limit_uses_tiled_kernels(device):
    """H = 129 > MAX_ON_CHIP_H: the tiled kernels run (3 hidden blocks of 64) and still match."""
    H = ops.MAX_ON_CHIP_H[torch.float32] + 1
    assert ops.uses_persistent(H - 1, torch.float32) and not ops.uses_persistent(H, torch.float32)
    leaves, args = layer_args(2, 2, 3, H, lengths=[2, 1], device=device)
    y = fastrnn.triton.rnn_forward(*args, False, "tanh")
    y_ref = reference.rnn_forward(*args, False, "tanh")
    assert_close(y, y_ref, name="y")
    grads = grads_of(random_loss([y]), leaves)
    grads_ref = grads_of(random_loss([y_ref]), leaves)
    for name, g, g_ref in zip(["x", "hx", "w_ih", "w_hh", "b_ih", "b_hh"], grads, grads_ref):
        assert_close(g, g_ref, name=f"grad {name}")


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_backward_is_deterministic(device, path):
    leaves, args = layer_args(4, 35, 5, 17, lengths=list(range(35)), device=device)
    first = grads_of(random_loss([fastrnn.triton.rnn_forward(*args, False, "tanh")]), leaves)
    second = grads_of(random_loss([fastrnn.triton.rnn_forward(*args, False, "tanh")]), leaves)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_float64_runs_the_reference(device):
    leaves, args = layer_args(3, 2, 4, 5, device=device, dtype=torch.float64)
    assert_close(fastrnn.triton.rnn_forward(*args, False, "relu"), reference.rnn_forward(*args, False, "relu"))


@pytest.mark.parametrize("device", TRITON_DEVICES)
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(nonlinearity="gelu"), "nonlinearity must be 'tanh' or 'relu'"),
        (dict(hx=torch.zeros(3, 4)), r"hx must have shape \[2, 5\]"),
        (dict(lengths=torch.ones(2, dtype=torch.int32)), "lengths must be int64"),
        (dict(bias_hh=None), "bias_ih and bias_hh must be given together"),
        (dict(weight_ih=torch.zeros(5, 3, dtype=torch.float64)), "weight_ih must have the dtype of input"),
    ],
    ids=["nonlinearity", "hx-shape", "lengths-dtype", "one-bias", "weight-dtype"],
)
def test_bad_arguments_name_the_argument(change, message, device):
    args = dict(input=torch.zeros(2, 2, 3), hx=torch.zeros(2, 5), weight_ih=torch.zeros(5, 3),
                weight_hh=torch.zeros(5, 5), bias_ih=torch.zeros(5), bias_hh=torch.zeros(5),
                lengths=None, reverse=False, nonlinearity="tanh")
    args.update(change)
    # Every tensor on the device the kernels run on here, so the argument check, not the
    # device check, is what must fire.
    args = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    with pytest.raises((ValueError, RuntimeError), match=message):
        fastrnn.triton.rnn_forward(**args)
    # The op itself checks too: a direct call must never launch on a malformed tensor.
    with pytest.raises((ValueError, RuntimeError), match=message):
        torch.ops.fastrnn_triton.rnn_forward(*args.values())


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_frozen_weights_input_gradient_only(device):
    """need_weights=False: the skipped gradients are separate empty tensors (outputs of a
    custom op must not alias each other), and the input gradient matches nn.RNN's."""
    ref, ours = twin_rnn(3, 5, backend="triton", device=device)
    for p in (*ref.parameters(), *ours.parameters()):
        p.requires_grad_(False)
    x = torch.randn(4, 2, 3, device=device)
    grads = []
    for model in (ref, ours):
        xi = x.clone().requires_grad_()
        out, h = model(xi)
        grads.append(torch.autograd.grad(random_loss([out, h]), xi)[0])
    assert_close(grads[1], grads[0], name="grad input")
    _, args = layer_args(3, 2, 4, 5, device=device)
    args = [a.detach() if a is not None else None for a in args]
    y = torch.ops.fastrnn_triton.rnn_forward(*args, False, "tanh")
    for need_input in (False, True):
        torch.library.opcheck(torch.ops.fastrnn_triton.rnn_backward.default,
                              (torch.randn_like(y), *args[:4], y, args[6], False, "tanh", [need_input, False]))


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_double_backward_matches_nn_rnn(device):
    """A gradient penalty (create_graph=True) through the Triton op, as nn.RNN computes it."""
    ref, ours = twin_rnn(3, 4, num_layers=2, backend="triton", device=device)
    penalties = []
    for model in (ref, ours):
        x = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(0)).to(device).requires_grad_()
        out, h = model(x)
        (gx,) = torch.autograd.grad(random_loss([out, h]), x, create_graph=True)
        penalties.append(torch.autograd.grad(gx.pow(2).sum(), list(model.parameters())))
    for a, b in zip(penalties[1], penalties[0]):
        assert_close(a, b, name="second derivative")


@pytest.mark.parametrize("device", TRITON_DEVICES)
def test_opcheck(device):
    """Schema, fake kernel and autograd registration agree with the real kernels."""
    _, args = layer_args(3, 2, 4, 5, lengths=[3, 1], device=device)
    torch.library.opcheck(torch.ops.fastrnn_triton.rnn_forward.default, (*args, True, "tanh"),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


COMPILE_CASES = [pytest.param("aot_eager", d.values[0], id=f"aot_eager-{d.values[0]}", marks=d.marks)
                 for d in TRITON_DEVICES] + [
    pytest.param("inductor", "cuda", id="inductor-cuda", marks=pytest.mark.skipif(
        TRITON_MODE != "compiled", reason="needs a CUDA device and compiled Triton"))]


@pytest.mark.parametrize("compiler, device", COMPILE_CASES)
def test_compile_fullgraph(compiler, device):
    """Dynamo traces the module without graph breaks (fake kernels, autograd registration).
    aot_eager then runs the traced forward and backward graphs on the real kernels, which
    works in the interpreter too; Inductor compiles the triton_op's kernels into its own
    generated code, which needs CUDA (on CPU tensors it would have to compile Triton for a
    CPU target, which the interpreter is not)."""
    ref, ours = twin_rnn(7, 17, num_layers=2, bidirectional=True, backend="triton", device=device)
    compiled = torch.compile(ours, fullgraph=True, backend=compiler)
    x = torch.randn(5, 3, 7, device=device, requires_grad=True)
    out, h_n = compiled(x)
    out_ref, h_n_ref = ref(x)
    assert_close(out, out_ref, name="output")
    assert_close(h_n, h_n_ref, name="h_n")
    grads = grads_of(random_loss([out, h_n]), [x, *ours.parameters()])
    grads_ref = grads_of(random_loss([out_ref, h_n_ref]), [x, *ref.parameters()])
    for g, g_ref in zip(grads, grads_ref):
        assert_close(g, g_ref, name="grad")


# Run in a subprocess without TRITON_INTERPRET, i.e. with compiled Triton, which this
# process (interpreted kernels) cannot use. Needs no GPU: kernels are compiled for sm_90 with
# the ptxas of the triton wheel, and ops are traced on CPU tensors without running them.
_COMPILED_TRITON_SCRIPT = """
import json, logging
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch._subclasses.functional_tensor import dispatch_functionalize
logging.disable(logging.WARNING)  # tracing without a GPU driver logs the mutation analysis fallback
import fastrnn
from fastrnn.triton import ops, resources
out = dict(kernels={}, smem_budget=ops.smem_bytes(128))
for dtype in ("fp32", "bf16"):
    for direction in ("fwd", "bwd"):
        out["kernels"][f"persistent_{direction}_{dtype}"] = resources.persistent(direction, dtype, 128)
        out["kernels"][f"step_{direction}_{dtype}"] = resources.step(direction, dtype)
x, hx, w_ih, w_hh = torch.zeros(3, 2, 4), torch.zeros(2, 5), torch.zeros(5, 4), torch.zeros(5, 5)
try:
    fastrnn.triton.rnn_forward(x, hx, w_ih, w_hh, None, None, None, False, "tanh")
except RuntimeError as e:
    out["cpu_error"] = str(e)
def traced(fn, *args):
    return make_fx(dispatch_functionalize(fn), tracing_mode="fake")(*args).code
y = torch.zeros(3, 2, 5)
out["forward_graph"] = traced(torch.ops.fastrnn_triton.rnn_forward, x, hx, w_ih, w_hh, None, None, None, False, "tanh")
out["backward_graph"] = traced(lambda *a: torch.ops.fastrnn_triton.rnn_backward(*a, [True, True]),
                               y, x, hx, w_ih, w_hh, y, None, False, "relu")
print(json.dumps(out))
"""


def _missing_nvidia_tool() -> str | None:
    """Why compiled Triton cannot build cubins here (None when it can): ptxas and cuobjdump
    must exist. Checked before compiling, so that a real ptxas error (spills past a limit,
    shared memory overflow) fails the test instead of reading as a missing tool."""
    from triton import knobs

    try:
        knobs.nvidia.ptxas.path
    except Exception as exc:  # triton raises RuntimeError when no ptxas runs
        return f"no ptxas to compile for sm_90 ({type(exc).__name__}: {exc})"
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.access(cuobjdump, os.X_OK):
        return f"no cuobjdump at {cuobjdump} (fastrnn.triton.resources reads kernel resources with it)"
    return None


@pytest.fixture(scope="module")
def compiled_triton():
    missing = _missing_nvidia_tool()
    if missing:
        pytest.skip(missing)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-c", _COMPILED_TRITON_SCRIPT], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_kernels_compile_for_sm90_within_budget(compiled_triton):
    """At the largest persistent tile (and for the tiled kernels): no spills beyond a few
    bytes, and ops.smem_bytes, which picks persistent vs tiled on a device, covers the
    shared memory the compiled kernels actually use."""
    for name, (regs, stack, smem) in compiled_triton["kernels"].items():
        assert stack <= 64, f"{name} spills {stack} bytes per thread"
        assert smem <= compiled_triton["smem_budget"], f"{name} uses {smem} B of shared memory"


def test_compiled_ops_are_triton_ops_traced_into_kernels(compiled_triton):
    """With compiled Triton the ops are triton_ops: functionalized tracing (what
    torch.compile's AOTAutograd does) sees the kernel launches, not an opaque call."""
    assert "fastrnn_triton" not in compiled_triton["forward_graph"]
    assert compiled_triton["forward_graph"].count("triton_kernel_wrapper_functional(") == 1
    assert compiled_triton["backward_graph"].count("triton_kernel_wrapper_functional(") == 1
    assert "aten.mm" in compiled_triton["backward_graph"]


def test_cpu_tensors_without_interpreter_raise_a_clear_error(compiled_triton):
    assert "runs on CUDA tensors (or on CPU tensors when TRITON_INTERPRET=1" in compiled_triton["cpu_error"]


@pytest.mark.skipif(TRITON_MODE != "compiled",
                    reason="Triton is interpreted in this process: the CPU-tensor tests above ran here")
def test_interpreter_suite_in_subprocess():
    """With a GPU this process runs Triton compiled, so the CPU-tensor variants above are
    skipped here; they run in a child with the interpreter on and no visible GPU (Triton
    fixes interpreted vs compiled when the kernels are decorated, once per process)."""
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.abspath(__file__),
         "-k", "cpu and not interpreter_suite"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    # A child that collected nothing, or skipped everything, would prove nothing.
    assert " passed" in run.stdout and " failed" not in run.stdout, tail
