"""Two CPU processes (gloo) on halves of a batch reproduce one process on the whole batch."""

from __future__ import annotations

import datetime
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from singerid.training.distributed import gather_with_grad, world
from singerid.training.losses import LOSSES

METHODS = ("contrastive", "vicreg", "uniformity")
WORLD = 2
SPLITS = {"equal": (6, 6), "unequal": (5, 7)}


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Linear]:
    """Inputs of both views and a shared projection layer, identical in every process."""
    g = torch.Generator().manual_seed(11)
    x1 = torch.randn(12, 6, generator=g, dtype=torch.float64)
    x2 = x1 + 0.3 * torch.randn(12, 6, generator=g, dtype=torch.float64)
    torch.manual_seed(5)
    layer = torch.nn.Linear(6, 4).double()
    return x1, x2, layer


def forward(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(layer(x), dim=1)


def run_case(method: str, x1: torch.Tensor, x2: torch.Tensor, layer: torch.nn.Linear, gather: bool) -> dict:
    x1 = x1.clone().requires_grad_()
    x2 = x2.clone().requires_grad_()
    layer.zero_grad()
    z1, z2 = forward(layer, x1), forward(layer, x2)
    if gather:
        z1, z2 = gather_with_grad(z1), gather_with_grad(z2)
    loss = LOSSES[method](z1, z2)
    loss.backward()
    grads = [p.grad.clone() for p in layer.parameters()]
    if gather:
        for grad in grads:  # what DistributedDataParallel does to parameter gradients
            dist.all_reduce(grad)
            grad /= dist.get_world_size()
    return {"loss": loss.detach(), "x1": x1.grad, "x2": x2.grad, "params": grads}


def worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        assert world() == (rank, WORLD)
        x1, x2, layer = batch()
        results = {}
        for split, counts in SPLITS.items():
            rows = slice(sum(counts[:rank]), sum(counts[: rank + 1]))
            for method in METHODS:
                results[split, method] = run_case(method, x1[rows], x2[rows], layer, gather=True)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path: Path) -> None:
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    x1, x2, layer = batch()
    for split, counts in SPLITS.items():
        for method in METHODS:
            ref = run_case(method, x1, x2, layer, gather=False)
            for rank, results in enumerate(ranks):
                got = results[split, method]
                rows = slice(sum(counts[:rank]), sum(counts[: rank + 1]))
                torch.testing.assert_close(got["loss"], ref["loss"])
                # a rank's own rows get the gradient of every rank's (identical) loss: WORLD times
                torch.testing.assert_close(got["x1"], WORLD * ref["x1"][rows])
                torch.testing.assert_close(got["x2"], WORLD * ref["x2"][rows])
                for g_got, g_ref in zip(got["params"], ref["params"]):
                    torch.testing.assert_close(g_got, g_ref)


def test_identity_without_process_group() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert world() == (0, 1)
    assert gather_with_grad(x) is x
