"""DistributedDataParallel over fastrnn.RNN: two CPU processes (gloo, loopback) each train on
half of a batch; after a few all-reduced SGD steps their parameters equal those of one
process training on the whole batch.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import fastrnn
from helpers import assert_close

STEPS, B, T, I, H = 3, 6, 7, 3, 5  # B: the combined batch, split evenly over 2 ranks


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = fastrnn.RNN(I, H, 2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * H, 1)

    def forward(self, x):
        out, h_n = self.rnn(x)
        return self.head(out).squeeze(-1).mean(1) + h_n.sum((0, 2))  # [B]


def _data():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(B, T, I, generator=g, dtype=torch.float64)
    target = torch.randn(B, generator=g, dtype=torch.float64)
    return x, target


def _model():
    torch.manual_seed(0)
    return Model().double()


def _train(model, x, target):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = (model(x) - target).pow(2).mean()  # a mean: DDP averages the ranks' gradients
        loss.backward()
        opt.step()


def _worker(rank: int, world: int, store_path: str, out_path: str) -> None:
    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # gloo's traffic stays on loopback
    # A file store for the rendezvous: no port to probe and then race other processes for.
    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        x, target = _data()
        part = slice(rank * B // world, (rank + 1) * B // world)
        _train(model, x[part], target[part])
        if rank == 0:
            torch.save({k: v.detach().clone() for k, v in model.module.state_dict().items()}, out_path)
        # Neither rank closes its connections while the other may still use them: without
        # this, a gloo thread of the slower rank can die on the closed socket (std::terminate).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_matches_single_process(tmp_path):
    out_path = str(tmp_path / "rank0.pt")
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), out_path), nprocs=2, join=True)
    distributed = torch.load(out_path, weights_only=True)

    x, target = _data()
    single = _model()
    _train(single, x, target)
    half = _model()  # what rank 0 alone would reach: shows the all-reduce mattered
    _train(half, x[: B // 2], target[: B // 2])

    initial = _model().state_dict()
    assert list(distributed) == list(single.state_dict())
    for name, value in single.state_dict().items():
        assert not torch.equal(value, initial[name]), f"{name} did not train"
        assert_close(distributed[name], value, name=name)
    assert any(not torch.allclose(half.state_dict()[n], v) for n, v in single.state_dict().items())
