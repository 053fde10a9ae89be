"""torch.jit.script of models holding fastrnn.RNN / RNNCell: the scripted model matches eager
(the float32 CPU parity tolerance of helpers.assert_close: same kernels, so in practice equal)."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_sequence

import fastrnn
from helpers import assert_close


@pytest.fixture(autouse=True)
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated upstream
        yield


class Tagger(nn.Module):
    def __init__(self, **rnn_kwargs):
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.rnn = fastrnn.RNN(8, 6, **rnn_kwargs)
        self.cell = fastrnn.RNNCell(6 * (2 if rnn_kwargs.get("bidirectional") else 1), 5)
        self.head = nn.Linear(5, 3)

    def forward(self, tokens, hx: torch.Tensor | None = None):
        out, h_n = self.rnn(self.embed(tokens), hx)
        step = out[:, -1] if self.rnn.batch_first else out[-1]
        return self.head(self.cell(step)), h_n


CASES = {
    "1layer": dict(),
    "2layer-bi-batch_first": dict(num_layers=2, bidirectional=True, batch_first=True),
    "3layer-relu-nobias": dict(num_layers=3, nonlinearity="relu", bias=False),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("given_hx", [False, True], ids=["no-hx", "hx"])
def test_script_matches_eager_forward_and_backward(case, given_hx):
    torch.manual_seed(0)
    kwargs = CASES[case]
    model = Tagger(**kwargs)
    tokens = torch.randint(0, 20, (3, 4))
    D = 2 if kwargs.get("bidirectional") else 1
    hx = torch.randn(kwargs.get("num_layers", 1) * D, 3 if kwargs.get("batch_first") else 4, 6) if given_hx else None
    expected = model(tokens, hx)
    grads_expected = torch.autograd.grad(expected[0].sum() + expected[1].sum(), list(model.parameters()))
    scripted = torch.jit.script(model)
    got = scripted(tokens, hx)
    for g, e in zip(got, expected):
        assert_close(g, e, name="scripted output")
    grads = torch.autograd.grad(got[0].sum() + got[1].sum(), list(scripted.parameters()))
    for g, e in zip(grads, grads_expected):
        assert_close(g, e, name="scripted gradient")
    # the script keeps the same Parameters, so a state_dict round trip is unchanged
    assert list(scripted.state_dict()) == list(model.state_dict())
    # torch.jit.script put the twin into the eager model too; eagerly it is still fastrnn.RNN
    for g, e in zip(model(tokens, hx), expected):
        assert_close(g, e, name="eager after scripting")
    packed = pack_sequence([torch.randn(3, 8), torch.randn(2, 8)])
    assert isinstance(model.rnn(packed)[0], torch.nn.utils.rnn.PackedSequence)


def test_script_unbatched_dropout_and_save_load(tmp_path):
    torch.manual_seed(0)
    rnn = fastrnn.RNN(3, 4, num_layers=2, dropout=0.5)
    scripted = torch.jit.script(rnn)
    x = torch.randn(5, 3)  # unbatched [T, I]
    rnn.eval(), scripted.eval()
    for g, e in zip(scripted(x), rnn(x)):
        assert_close(g, e, name="unbatched")
    scripted.train()
    torch.manual_seed(1)
    a = scripted(x)[0]
    torch.manual_seed(1)
    rnn.train()
    b = rnn(x)[0]
    assert_close(a, b, name="dropout, same seed")
    path = str(tmp_path / "rnn.pt")
    scripted.save(path)
    loaded = torch.jit.load(path).eval()
    assert_close(loaded(x)[0], rnn.eval()(x)[0], name="saved and loaded")
    cell = fastrnn.RNNCell(3, 4, nonlinearity="relu")
    scripted_cell = torch.jit.script(cell)
    assert_close(scripted_cell(x[0]), cell(x[0]), name="unbatched cell, no hx")
    assert_close(scripted_cell(x[:2], x[2:4, :1].expand(2, 4)), cell(x[:2], x[2:4, :1].expand(2, 4)), name="cell")


def test_unscriptable_parts_say_what_to_use_instead():
    with pytest.raises(RuntimeError, match="torch.jit.trace, torch.export.export or torch.compile"):
        torch.jit.script(fastrnn.RNN(3, 4, backend="reference"))
    weight_normed = fastrnn.convert(nn.utils.parametrizations.weight_norm(nn.RNN(3, 4), "weight_hh_l0"))
    with pytest.raises(RuntimeError, match=r"computes \['weight_hh_l0'\].*torch.jit.trace"):
        torch.jit.script(weight_normed)
    scripted = torch.jit.script(fastrnn.RNN(3, 4))
    with pytest.raises(RuntimeError, match="Expected a value of type 'Tensor' for argument 'input'"):
        scripted(pack_sequence([torch.randn(3, 3), torch.randn(2, 3)]))
    with pytest.raises(torch.jit.Error, match="input_size"):
        scripted(torch.randn(5, 2, 7))  # the scripted forward checks like the eager one


def test_eager_model_follows_eval_and_weights_after_script():
    """torch.jit.script swaps the twin into the eager model: eval() and new Parameters set on
    the model must still reach the eager forward (dropout off, the current weights used)."""
    torch.manual_seed(0)
    model = nn.Sequential(fastrnn.RNN(4, 8, num_layers=2, dropout=0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(model)
    model.eval()
    x = torch.randn(3, 2, 4)
    assert torch.equal(model(x)[0], model(x)[0])  # no dropout in eval mode
    twin = model[0]
    twin.weight_hh_l1 = nn.Parameter(torch.zeros(8, 8))  # a new Parameter, as .to() may make
    ref = nn.RNN(4, 8, num_layers=2)
    ref.load_state_dict(dict(twin.state_dict()))
    ref.eval()
    assert_close(model(x)[0], ref(x)[0], name="output after replacing a Parameter")


class CallsFlattenParameters(nn.Module):
    """cuDNN-era code: the forward calls flatten_parameters() (TorchScript rejects the call)."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        self.rnn.flatten_parameters()
        return self.rnn(x)[0]


@pytest.mark.parametrize("scripts", [True, False], ids=["script-succeeds", "script-fails"])
def test_eager_model_keeps_the_module_api_after_script(scripts):
    """torch.jit.script puts the twin into the eager model, whether scripting then succeeds or
    fails; the module's API must still be there (nn.RNN's model keeps working in both cases)."""
    torch.manual_seed(0)
    rnn = fastrnn.RNN(4, 6, num_layers=2)
    model = nn.Sequential(rnn) if scripts else CallsFlattenParameters(rnn)
    x = torch.randn(3, 2, 4)
    with torch.no_grad():
        before = model(x)[0] if scripts else model(x)
    if scripts:
        torch.jit.script(model)
    else:
        with pytest.raises(Exception):
            torch.jit.script(model)
    twin = model[0] if scripts else model.rnn
    assert twin is not rnn  # the swap this test is about happened
    twin.flatten_parameters()
    assert twin.backend == "auto" and twin.num_directions == 1
    assert [w for layer in twin.all_weights for w in layer] == list(twin.parameters())
    assert "ScriptRNN(4, 6, num_layers=2)" in repr(model)
    with torch.no_grad():
        assert torch.equal(model(x)[0] if scripts else model(x), before)
        twin.reset_parameters()  # new weights reach the eager forward
        assert not torch.equal(model(x)[0] if scripts else model(x), before)
    cell_model = nn.Sequential(fastrnn.RNNCell(4, 5))
    torch.jit.script(cell_model)
    assert cell_model[0].backend == "auto" and "ScriptRNNCell(4, 5)" in repr(cell_model)
