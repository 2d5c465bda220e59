"""Data-parallel with torch.distributed (gloo, 2 processes started with spawn, never fork).

References: the same computation in one process over all the data (brute-force per-sample Fisher
in float64; single-process training)."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import TensorDataset

from exitnet.torch import _dist
from exitnet.torch._model import EarlyExitNet
from exitnet.torch._trainer import SequentialTrainer

torch.set_num_threads(1)


def _data(n=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return TensorDataset(x, y, torch.arange(n))


def _mlp():
    torch.manual_seed(0)
    stages = [nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 8), nn.ReLU())]
    heads = [nn.Linear(8, 3), nn.Linear(8, 3)]
    return EarlyExitNet(stages, heads)


def _brute_fisher(net, x, y):
    """Empirical Fisher: mean over samples of squared per-sample gradients, float64 loop."""
    net = net.double()
    params = net.parameters_for_exit(1)
    acc = {n: torch.zeros_like(p) for n, p in params.items()}
    for i in range(len(x)):
        net.zero_grad()
        nn.functional.cross_entropy(net.forward_exit(x[i : i + 1].double(), 1), y[i : i + 1]).backward()
        for n, p in params.items():
            acc[n] += p.grad**2
    return {n: v / len(x) for n, v in acc.items()}, len(x)


def _init(rank, world, path):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)


def _worker_fisher(rank, world, path, out):
    _init(rank, world, path)
    ds = _data()
    x, y, _ = ds.tensors
    # uneven shards: rank 0 gets 30 samples, rank 1 gets 18
    sl = slice(0, 30) if rank == 0 else slice(30, 48)
    f, n = _brute_fisher(_mlp(), x[sl], y[sl])
    merged, total = _dist.all_reduce_fisher(f, n)
    sums, count = _dist.all_reduce_sums({k: v * n for k, v in f.items()}, n)
    torch.save({"fisher": merged, "n": total, "sums": dict(sums), "count": count}, f"{out}.{rank}")
    dist.destroy_process_group()


STRATEGIES = ("naive", "joint", "ewc", "lwf")


def _train(strategy):
    net = _mlp()
    SequentialTrainer(net, strategy, epochs_per_stage=2, batch_size=16, lr=0.01, optimizer="sgd",
                      progress=False, log=lambda r: None, fisher_samples=20).fit(_data(), _data(), analyse=False)
    return net.state_dict()


def _worker_train(rank, world, path, out):
    _init(rank, world, path)
    torch.save({s: _train(s) for s in STRATEGIES}, f"{out}.{rank}")
    dist.destroy_process_group()


def _spawn(fn, tmp_path, *args):
    out = str(tmp_path / "out")
    mp.start_processes(fn, args=(2, str(tmp_path / "rdzv"), out, *args), nprocs=2, join=True,
                       start_method="spawn")
    return [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]


def test_not_distributed_is_identity():
    assert not _dist.is_distributed() and _dist.rank_and_world() == (0, 1)
    f = {"w": torch.ones(2)}
    assert _dist.all_reduce_fisher(f, 5) == (f, 5)


def test_fisher_merge_two_ranks_equals_one_process(tmp_path):
    r0, r1 = _spawn(_worker_fisher, tmp_path)
    x, y, _ = _data().tensors
    ref, n = _brute_fisher(_mlp(), x, y)
    for r in (r0, r1):
        assert r["n"] == n == 48 and r["count"] == 48
        for k in ref:
            torch.testing.assert_close(r["fisher"][k].double(), ref[k], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(r["sums"][k] / 48, ref[k], rtol=1e-10, atol=1e-12)


def test_training_two_ranks_equals_one_process(tmp_path):
    """Strided shards of each global minibatch + summed, share-scaled gradients == one process
    (the MLP has no BatchNorm, so the equality is exact up to float summation order)."""
    r0, r1 = _spawn(_worker_train, tmp_path)
    for strategy in STRATEGIES:
        ref = _train(strategy)
        for k, v in ref.items():
            torch.testing.assert_close(r0[strategy][k], r1[strategy][k], rtol=0, atol=0)
            torch.testing.assert_close(r0[strategy][k], v, rtol=1e-5, atol=1e-6, msg=lambda m: f"{strategy} {k}: {m}")
