"""Sentence classification with a bidirectional RNN over packed, variable-length batches.

    words -> embedding -> bidirectional multi-layer Elman RNN (packed) -> final hidden states -> linear

on examples/data/sentiment.tsv (2000 short synthetic reviews, see examples/data/README.md;
every 5th line is held out for testing). Sentences in a batch have different lengths:
they are padded, then packed with pack_padded_sequence, so the RNN never reads padding
and each direction's final hidden state belongs to the sentence's real last (or first) word.

    python examples/sentiment.py                  # fastrnn.RNN
    python examples/sentiment.py --impl torch     # torch.nn.RNN
    python examples/sentiment.py --compare        # both from the same seed: loss, accuracy, time per epoch
    python examples/sentiment.py --epochs 1 --steps 5   # a short run
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout
import fastrnn  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sentiment.tsv")
PAD, UNK = 0, 1


class Classifier(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, impl: str, classes: int = 2):
        super().__init__()
        rnn_cls = fastrnn.RNN if impl == "fastrnn" else nn.RNN
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.rnn = rnn_cls(embed, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, words, lengths):  # words [B, T] int64 padded, lengths [B] int64 (CPU)
        packed = pack_padded_sequence(self.embed(words), lengths, batch_first=True, enforce_sorted=False)
        _, h_n = self.rnn(packed)  # h_n [layers * 2, B, H], in the batch's original order
        final = torch.cat([h_n[-2], h_n[-1]], dim=1)  # last layer: forward and backward [B, 2H]
        return self.head(final)  # [B, classes]


def load(path: str = DATA):
    """(train, test, vocab): lists of (word ids, label); the vocabulary comes from the training split."""
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    examples = [(text.split(), int(label)) for label, text in rows]
    train = [e for i, e in enumerate(examples) if i % 5 != 4]
    test = [e for i, e in enumerate(examples) if i % 5 == 4]
    vocab = {"<pad>": PAD, "<unk>": UNK}
    for words, _ in train:
        for w in words:
            vocab.setdefault(w, len(vocab))
    encode = lambda data: [(torch.tensor([vocab.get(w, UNK) for w in words]), y) for words, y in data]  # noqa: E731
    return encode(train), encode(test), vocab


def batches(data, batch: int, shuffle: bool, gen: torch.Generator | None = None):
    order = torch.randperm(len(data), generator=gen).tolist() if shuffle else range(len(data))
    order = list(order)
    for i in range(0, len(order), batch):
        chunk = [data[j] for j in order[i : i + batch]]
        words = pad_sequence([w for w, _ in chunk], batch_first=True, padding_value=PAD)  # [B, T]
        lengths = torch.tensor([len(w) for w, _ in chunk])  # [B]
        labels = torch.tensor([y for _, y in chunk])  # [B]
        yield words, lengths, labels


@torch.no_grad()
def accuracy(model: nn.Module, data, batch: int, device) -> float:
    model.eval()
    correct = 0
    for words, lengths, labels in batches(data, batch, shuffle=False):
        pred = model(words.to(device), lengths).argmax(1).cpu()
        correct += (pred == labels).sum().item()
    model.train()
    return correct / len(data)


def train(args, impl: str, train_set, test_set, vocab_size: int, log=print) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = Classifier(vocab_size, args.embed, args.hidden, args.layers, impl).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(args.seed)  # the same batch order for both implementations
    losses, epoch_times, accuracies = [], [], []
    for epoch in range(args.epochs):
        start = time.perf_counter()
        epoch_losses = []
        for step, (words, lengths, labels) in enumerate(batches(train_set, args.batch, True, gen)):
            if args.steps and step >= args.steps:
                break
            logits = model(words.to(device), lengths)
            loss = loss_fn(logits, labels.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            epoch_losses.append(loss.item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - start)
        losses += epoch_losses
        accuracies.append(accuracy(model, test_set, 256, device))
        log(f"  [{impl:7}] epoch {epoch + 1:2d}  train loss {sum(epoch_losses) / len(epoch_losses):.4f}"
            f"  test accuracy {accuracies[-1]:.3f}  {epoch_times[-1] * 1e3:7.1f} ms/epoch")
    return {"losses": losses, "epoch_times": epoch_times, "accuracy": accuracies}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", choices=("fastrnn", "torch"), default="fastrnn")
    p.add_argument("--compare", action="store_true", help="train both from the same seed and compare")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--steps", type=int, default=0, help="at most this many batches per epoch (0: all)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log = (lambda *a, **k: None) if args.quiet else print
    train_set, test_set, vocab = load()
    log(f"{len(train_set)} training / {len(test_set)} test sentences, vocabulary of {len(vocab)}; "
        f"bidirectional {args.layers} x RNN({args.hidden}), batch {args.batch}, device {args.device}")
    impls = ("torch", "fastrnn") if args.compare else (args.impl,)
    results = {impl: train(args, impl, train_set, test_set, len(vocab), log) for impl in impls}
    for impl, r in results.items():
        per_epoch = sorted(r["epoch_times"])[len(r["epoch_times"]) // 2]
        log(f"{impl:8} test accuracy {r['accuracy'][-1]:.3f}, median {per_epoch * 1e3:.1f} ms/epoch")
    if args.compare:
        a, b = results["torch"]["losses"], results["fastrnn"]["losses"]
        t_torch = sorted(results["torch"]["epoch_times"])[args.epochs // 2]
        t_fast = sorted(results["fastrnn"]["epoch_times"])[args.epochs // 2]
        log(f"max |loss difference| over {len(a)} steps: {max(abs(x - y) for x, y in zip(a, b)):.2e}; "
            f"fastrnn is {t_torch / t_fast:.2f}x the speed of nn.RNN per epoch")
    return results


if __name__ == "__main__":
    main()
