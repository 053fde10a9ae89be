"""fastrnn.convert / from_torch: a model holding nn.RNN layers gives the same outputs and
gradients after conversion, keeps its Parameter objects, device, dtype and training mode."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import fastrnn
from helpers import assert_close


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.encoder = nn.RNN(6, 12, num_layers=2, bidirectional=True, batch_first=True)
        self.decoder = nn.Sequential(nn.RNN(24, 8, nonlinearity="relu"))
        self.cell = nn.RNNCell(8, 5, bias=False)
        self.head = nn.Linear(5, 3)

    def forward(self, tokens):
        out, _ = self.encoder(self.embed(tokens))
        out, _ = self.decoder[0](out.transpose(0, 1))
        h = None
        for x_t in out:
            h = self.cell(x_t, h)
        return self.head(h)


def loss_and_grads(model, tokens):
    loss = model(tokens).pow(2).sum()
    return loss, torch.autograd.grad(loss, list(model.parameters()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_convert_keeps_numbers_and_parameters(dtype):
    torch.manual_seed(0)
    model = Tagger().to(dtype).eval()
    tokens = torch.randint(0, 20, (4, 9))
    loss_before, grads_before = loss_and_grads(model, tokens)
    params_before = list(model.parameters())

    converted = fastrnn.convert(model)
    assert converted is model
    assert isinstance(model.encoder, fastrnn.RNN) and isinstance(model.decoder[0], fastrnn.RNN)
    assert isinstance(model.cell, fastrnn.RNNCell)
    assert not model.training and not model.encoder.training
    assert all(a is b for a, b in zip(model.parameters(), params_before)), "Parameter objects kept"
    assert model.encoder.weight_ih_l0.dtype == dtype
    assert model.decoder[0].nonlinearity == "relu" and model.cell.bias is False

    loss_after, grads_after = loss_and_grads(model, tokens)
    assert_close(loss_after, loss_before, name="loss")
    for a, b in zip(grads_after, grads_before):
        assert_close(a, b, name="grad")


def test_convert_keeps_training_mode_and_optimizer_state():
    torch.manual_seed(0)
    model = Tagger().train()
    reference = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-2)
    tokens = torch.randint(0, 20, (3, 5))
    for step in range(3):
        if step == 1:  # convert mid-training: the optimizer still holds the same Parameters
            fastrnn.convert(model)
            assert model.encoder.training
        for m, o in ((model, opt), (reference, opt_ref)):
            o.zero_grad()
            m(tokens).pow(2).sum().backward()
            o.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert_close(a, b, name="parameter after training")


def test_convert_top_level_and_from_torch_errors():
    rnn = nn.RNN(3, 4)
    new = fastrnn.convert(rnn, backend="reference")
    assert isinstance(new, fastrnn.RNN) and new.backend == "reference"
    assert new.weight_hh_l0 is rnn.weight_hh_l0
    with pytest.raises(TypeError, match="torch.nn.RNN"):
        fastrnn.RNN.from_torch(nn.GRU(3, 4))
    with pytest.raises(TypeError, match="torch.nn.RNNCell"):
        fastrnn.RNNCell.from_torch(nn.Linear(3, 4))
    untouched = nn.Sequential(nn.LSTM(3, 4), nn.GRU(4, 4))
    fastrnn.convert(untouched)
    assert isinstance(untouched[0], nn.LSTM) and isinstance(untouched[1], nn.GRU)


# ----------------------------------------------------------------------------- what users put on an nn.RNN


class Orthogonalish(nn.Module):
    """A custom parametrization (torch.nn.utils.parametrize): W -> (W - W^T) / 2 + I."""

    def forward(self, w):
        return (w - w.t()) / 2 + torch.eye(w.shape[0], dtype=w.dtype)


def _weight_norm(m, name):
    return nn.utils.parametrizations.weight_norm(m, name)


def _spectral_norm(m, name):
    return nn.utils.parametrizations.spectral_norm(m, name)


def _custom(m, name):
    return nn.utils.parametrize.register_parametrization(m, name, Orthogonalish())


def _pruned(m, name):
    return prune.l1_unstructured(m, name, amount=0.4)


DECORATIONS = {"weight_norm": _weight_norm, "spectral_norm": _spectral_norm, "parametrize": _custom,
               "prune": _pruned}


def _outputs_and_grads(module, x, h0, params):
    out = module(x, h0)
    out = out if isinstance(out, torch.Tensor) else torch.cat([out[0].flatten(), out[1].flatten()])
    loss = (out * torch.linspace(-1, 1, out.numel()).view(out.shape)).sum()
    return out.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("decorate", list(DECORATIONS), ids=list(DECORATIONS))
@pytest.mark.parametrize("kind", ["rnn", "cell"])
def test_convert_keeps_parametrizations_and_pruning(decorate, kind):
    """weight_norm, spectral_norm, a custom parametrization and a pruning mask on weight_hh:
    the converted module computes the same outputs and gradients, with the same Parameters."""
    torch.manual_seed(0)
    if kind == "rnn":
        model = nn.RNN(3, 5, num_layers=2, batch_first=True).eval()
        names = ["weight_hh_l0", "weight_ih_l1"]
        x, h0 = torch.randn(2, 4, 3), torch.randn(2, 2, 5)
    else:
        model = nn.RNNCell(3, 5).eval()
        names = ["weight_hh"]
        x, h0 = torch.randn(2, 3), torch.randn(2, 5)
    for name in names:
        DECORATIONS[decorate](model, name)
    params = list(model.parameters())
    buffers = dict(model.named_buffers())
    state_keys = list(model.state_dict())
    expected, expected_grads = _outputs_and_grads(model, x, h0, params)

    new = fastrnn.convert(model)
    assert isinstance(new, fastrnn.RNN if kind == "rnn" else fastrnn.RNNCell)
    assert all(a is b for a, b in zip(new.parameters(), params)), "same Parameter objects"
    assert len(list(new.parameters())) == len(params)
    assert all(new.get_buffer(k) is v for k, v in buffers.items()), "same buffers (masks, u/v)"
    assert list(new.state_dict()) == state_keys
    got, got_grads = _outputs_and_grads(new, x, h0, params)
    assert_close(got, expected, name="output")
    for a, b in zip(got_grads, expected_grads):
        assert_close(a, b, name="grad")


def test_convert_keeps_hooks_flags_and_training_mode():
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, bidirectional=True)
    calls = []
    rnn.register_forward_pre_hook(lambda m, args: calls.append(("pre", type(m).__name__)))
    handle = rnn.register_forward_hook(lambda m, args, out: (out[0] * 2, out[1]))
    rnn.weight_ih_l0.requires_grad_(False)
    rnn.train()
    x = torch.randn(5, 2, 3)
    expected = rnn(x)[0]
    new = fastrnn.convert(rnn)
    got = new(x)[0]
    assert_close(got, expected, name="hooked output")
    assert calls == [("pre", "RNN"), ("pre", "RNN")]
    assert not new.weight_ih_l0.requires_grad and new.weight_hh_l0.requires_grad
    assert new.training
    handle.remove()  # the user's handle still removes the hook from the converted module
    assert_close(new(x)[0], expected / 2, name="after removing the hook")


def test_convert_leaves_a_subclass_with_its_own_forward():
    """A subclass of nn.RNN / nn.RNNCell that overrides forward keeps it (with a warning: the
    twin would silently drop it); one that does not is replaced like nn.RNN itself."""
    class Doubling(nn.RNN):
        def forward(self, input, hx=None):
            return super().forward(2 * input, hx)

    class DoublingCell(nn.RNNCell):
        def forward(self, input, hx=None):
            return super().forward(2 * input, hx)

    class Plain(nn.RNN):
        pass

    model = nn.Sequential(Doubling(4, 3), DoublingCell(4, 3), Plain(4, 3))
    x = torch.randn(5, 2, 4)
    expected = model[0](x)[0]
    with pytest.warns(UserWarning) as record:
        fastrnn.convert(model)
    assert sorted(str(w.message) for w in record) == [
        f"fastrnn.convert: {name} subclasses torch.nn.{base} with its own forward; left as it is"
        for name, base in (("Doubling", "RNN"), ("DoublingCell", "RNNCell"))]
    assert type(model[0]) is Doubling and type(model[1]) is DoublingCell
    assert type(model[2]) is fastrnn.RNN
    assert torch.equal(model[0](x)[0], expected)
