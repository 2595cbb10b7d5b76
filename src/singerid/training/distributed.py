"""Gathering projections across processes so losses see the global batch.

How the training step uses it (data-parallel, one process per device)::

    z1, z2 = gather_with_grad(z1_local), gather_with_grad(z2_local)
    loss, terms = ssl_loss(method, z1, z2)       # negatives and batch statistics are global
    loss.backward()                               # DDP then averages parameter gradients

Every rank computes the same global loss. The backward pass sums, over ranks, the gradient
each rank's copy sends to a slice, so a rank's local input receives ``world_size`` times the
single-process gradient of its slice; DDP's gradient averaging divides that factor out again,
and the parameter gradients equal those of one process on the whole batch. Ranks may hold
different numbers of rows (e.g. a short last batch). Gather ``z1`` and ``z2`` separately so
row ``i`` of both still belongs to the same item. BYOL needs no gathering (its loss is per item).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when torch.distributed is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 with per-rank row counts; backward all-reduces (sums) the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, counts: list[int]) -> Tensor:  # type: ignore[override]
        rank, size = world()
        longest = max(counts)
        padded = x.new_zeros((longest, *x.shape[1:]))
        padded[: x.shape[0]] = x
        pieces = [torch.empty_like(padded) for _ in range(size)]
        dist.all_gather(pieces, padded.contiguous())
        ctx.counts = counts
        ctx.rank = rank
        return torch.cat([piece[:n] for piece, n in zip(pieces, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start : start + ctx.counts[ctx.rank]], None


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (``(n_rank, ...)``) from every rank in rank order, keeping gradients.

    Identity when torch.distributed is not initialised or the world has one process. The
    local slice keeps its autograd graph; see the module docstring for the gradient scale.
    """
    _, size = world()
    if size == 1:
        return x
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    return _GatherRows.apply(x, [int(c.item()) for c in counts])
