"""The course examples, shortened: they learn (loss goes down) and fastrnn.RNN follows nn.RNN's loss curve.

Both implementations start from the same seed; fastrnn.RNN draws its weights in nn.RNN's
order, so the curves differ only by float rounding of the kernels (fp32: ~1e-7 per step,
growing slowly through Adam; we allow 1e-4).
"""
import importlib.util
import os

import pytest
import torch

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")
LOSS_TOL = 1e-4


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def char_rnn():
    return load_example("char_rnn")


@pytest.fixture(scope="module")
def sentiment():
    return load_example("sentiment")


def assert_same_curve(results):
    a, b = results["torch"]["losses"], results["fastrnn"]["losses"]
    assert len(a) == len(b) > 0
    diff = max(abs(x - y) for x, y in zip(a, b))
    assert diff <= LOSS_TOL, f"loss curves differ by {diff:.2e} (torch {a}, fastrnn {b})"


def test_char_rnn_same_initial_weights(char_rnn):
    models = {}
    for impl in ("torch", "fastrnn"):
        torch.manual_seed(3)
        models[impl] = char_rnn.CharRNN(vocab=11, embed=5, hidden=7, layers=2, impl=impl)
    a, b = models["torch"].state_dict(), models["fastrnn"].state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_char_rnn_learns_and_matches_nn_rnn(char_rnn):
    results = char_rnn.main(["--compare", "--epochs", "3", "--steps", "4", "--batch", "4", "--bptt", "17",
                             "--hidden", "33", "--layers", "2", "--sample-len", "17", "--quiet"])
    assert_same_curve(results)
    for impl, r in results.items():
        losses = r["losses"]
        assert len(losses) == 12 and len(r["epoch_times"]) == 3
        assert sum(losses[-4:]) < sum(losses[:4]), f"{impl}: loss did not decrease: {losses}"


def test_char_rnn_truncated_bptt_streams(char_rnn):
    data = torch.arange(23)
    cols = char_rnn.streams(data, 3)  # [7, 3]: each column a contiguous slice of the text
    assert cols.shape == (7, 3)
    assert cols[:, 1].tolist() == list(range(7, 14))


def test_char_rnn_sample(char_rnn):
    _, vocab, _ = char_rnn.load_text()
    torch.manual_seed(0)
    model = char_rnn.CharRNN(len(vocab), 8, 16, 1, "fastrnn")
    text = char_rnn.sample(model, vocab, "Love ", 30, temperature=0.8, seed=1, device=torch.device("cpu"))
    assert text.startswith("Love ") and len(text) == 35 and set(text) <= set(vocab)


def test_sentiment_learns_and_matches_nn_rnn(sentiment):
    results = sentiment.main(["--compare", "--epochs", "2", "--steps", "8", "--batch", "17", "--hidden", "19",
                              "--layers", "2", "--quiet"])
    assert_same_curve(results)
    for impl, r in results.items():
        losses = r["losses"]
        assert len(losses) == 16
        assert sum(losses[-4:]) < sum(losses[:4]), f"{impl}: loss did not decrease: {losses}"
        assert all(0.0 <= acc <= 1.0 for acc in r["accuracy"])
    # A prediction at the decision boundary may flip by rounding; allow a couple of the 400.
    for acc_t, acc_f in zip(results["torch"]["accuracy"], results["fastrnn"]["accuracy"]):
        assert abs(acc_t - acc_f) <= 0.005


def test_sentiment_data_is_split_and_padded(sentiment):
    train, test, vocab = sentiment.load()
    assert len(train) == 1600 and len(test) == 400
    assert {y for _, y in train} == {0, 1}
    words, lengths, labels = next(sentiment.batches(train, 5, shuffle=False))
    assert words.shape == (5, int(lengths.max())) and labels.shape == (5,)
    for row, n in zip(words, lengths):  # padding only after each sentence's last word
        assert (row[:n] != sentiment.PAD).all() and (row[n:] == sentiment.PAD).all()
