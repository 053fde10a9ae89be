"""A character-level language model, in the spirit of Karpathy's min-char-rnn.

    embedding -> multi-layer Elman RNN -> linear -> next-character logits

trained on a few of Shakespeare's sonnets (examples/data/sonnets.txt) with truncated
backpropagation through time: the text is cut into `--batch` parallel streams, each
stream is read in chunks of `--bptt` characters, and the hidden state is carried from
one chunk to the next but detached, so gradients stop at the chunk boundary.

    python examples/char_rnn.py                    # fastrnn.RNN, then a sample of generated text
    python examples/char_rnn.py --impl torch       # the same model with torch.nn.RNN
    python examples/char_rnn.py --compare          # both from the same seed: loss curves and time per epoch
    python examples/char_rnn.py --epochs 2 --steps 5   # a short run

fastrnn.RNN draws its initial weights in nn.RNN's order, so with the same seed both
implementations start from identical weights and follow the same loss curve (to float
rounding); only the time per epoch differs.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from a checkout
import fastrnn  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sonnets.txt")


class CharRNN(nn.Module):
    def __init__(self, vocab: int, embed: int, hidden: int, layers: int, impl: str, dropout: float = 0.0):
        super().__init__()
        rnn_cls = fastrnn.RNN if impl == "fastrnn" else nn.RNN
        self.embed = nn.Embedding(vocab, embed)
        self.rnn = rnn_cls(embed, hidden, num_layers=layers, dropout=dropout)  # time-major: [T, B, *]
        self.head = nn.Linear(hidden, vocab)

    def forward(self, chars, h=None):  # chars [T, B] int64, h [L, B, H]
        out, h = self.rnn(self.embed(chars), h)  # out [T, B, H]
        return self.head(out), h  # logits [T, B, V]


def load_text(path: str = DATA):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return text, vocab, torch.tensor([index[c] for c in text], dtype=torch.int64)


def streams(data: torch.Tensor, batch: int) -> torch.Tensor:
    """data [N] -> [N // batch, batch]: column b is the b-th contiguous slice of the text."""
    n = data.numel() // batch
    return data[: n * batch].view(batch, n).t().contiguous()


def train(args, impl: str, data: torch.Tensor, vocab_size: int, log=print) -> dict:
    """Trains one model; returns its loss per step, time per epoch and the model."""
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    model = CharRNN(vocab_size, args.embed, args.hidden, args.layers, impl, args.dropout).to(device)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    cols = streams(data, args.batch).to(device)  # [N, B]
    losses, epoch_times = [], []
    for epoch in range(args.epochs):
        h = None
        step_losses = []
        start = time.perf_counter()
        for step, t in enumerate(range(0, cols.shape[0] - 1, args.bptt)):
            if args.steps and step >= args.steps:
                break
            x = cols[t : t + args.bptt]  # [S, B]
            y = cols[t + 1 : t + 1 + args.bptt]  # [S', B], S' = S except maybe at the very end
            x = x[: y.shape[0]]
            if h is not None:
                h = h.detach()  # truncated BPTT: keep the state, drop its history
            logits, h = model(x, h)
            loss = loss_fn(logits.reshape(-1, vocab_size), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step_losses.append(loss.item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_times.append(time.perf_counter() - start)
        losses += step_losses
        log(f"  [{impl:7}] epoch {epoch + 1:3d}  loss {sum(step_losses) / len(step_losses):.4f}"
            f"  {epoch_times[-1] * 1e3:8.1f} ms/epoch")
    return {"losses": losses, "epoch_times": epoch_times, "model": model, "initial": initial}


@torch.no_grad()
def sample(model: CharRNN, vocab, prompt: str, length: int, temperature: float, seed: int, device) -> str:
    """Generates text: feed the prompt, then draw each next character from softmax(logits / temperature)."""
    model.eval()
    index = {c: i for i, c in enumerate(vocab)}
    gen = torch.Generator(device=device).manual_seed(seed)
    chars = torch.tensor([[index[c]] for c in prompt if c in index], device=device)  # [P, 1]
    logits, h = model(chars)
    out = []
    for _ in range(length):
        probs = torch.softmax(logits[-1, 0] / temperature, dim=-1)
        nxt = torch.multinomial(probs, 1, generator=gen)
        out.append(vocab[nxt.item()])
        logits, h = model(nxt.view(1, 1), h)
    model.train()
    return prompt + "".join(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--impl", choices=("fastrnn", "torch"), default="fastrnn", help="which RNN module to use")
    p.add_argument("--compare", action="store_true", help="train both from the same seed and compare")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--steps", type=int, default=0, help="at most this many steps per epoch (0: the whole text)")
    p.add_argument("--batch", type=int, default=16, help="parallel streams of text")
    p.add_argument("--bptt", type=int, default=64, help="characters per truncated-BPTT chunk")
    p.add_argument("--embed", type=int, default=32)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip", type=float, default=1.0, help="max gradient norm")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (lower: more conservative)")
    p.add_argument("--sample-len", type=int, default=400)
    p.add_argument("--prompt", default="Shall I ")
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
    text, vocab, data = load_text()
    log(f"{len(text)} characters, vocabulary of {len(vocab)}; {args.layers} x RNN({args.hidden}), "
        f"batch {args.batch}, bptt {args.bptt}, device {args.device}")
    impls = ("torch", "fastrnn") if args.compare else (args.impl,)
    results = {impl: train(args, impl, data, len(vocab), log) for impl in impls}
    for impl, r in results.items():
        per_epoch = sorted(r["epoch_times"])[len(r["epoch_times"]) // 2]
        log(f"{impl:8} final loss {r['losses'][-1]:.4f}, median {per_epoch * 1e3:.1f} ms/epoch")
    if args.compare:
        a, b = results["torch"]["losses"], results["fastrnn"]["losses"]
        same = all(torch.equal(v, results["fastrnn"]["initial"][k]) for k, v in results["torch"]["initial"].items())
        log(f"identical initial weights from seed {args.seed}: {same}")
        diff = max(abs(x - y) for x, y in zip(a, b))
        t_torch = sorted(results["torch"]["epoch_times"])[args.epochs // 2]
        t_fast = sorted(results["fastrnn"]["epoch_times"])[args.epochs // 2]
        log(f"max |loss difference| over {len(a)} steps: {diff:.2e}; "
            f"fastrnn is {t_torch / t_fast:.2f}x the speed of nn.RNN per epoch")
    last = results[impls[-1]]["model"]
    log("\n--- sample (temperature %.2f) ---" % args.temperature)
    log(sample(last, vocab, args.prompt, args.sample_len, args.temperature, args.seed, torch.device(args.device)))
    return {impl: {k: v for k, v in r.items() if k not in ("model", "initial")} for impl, r in results.items()}


if __name__ == "__main__":
    main()
