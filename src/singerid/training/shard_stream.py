"""Positive pairs streamed from shards, split across processes and DataLoader workers, resumable mid-epoch."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..audio import training_crop
from ..data.shards import ShardInfo, ShardRecord, read_shard
from ..errors import ConfigError, DatasetError
from .augment import AugmentConfig, Augmenter, key_seed
from .distributed import world as distributed_world

T = TypeVar("T")


def stream_augmenter(cfg: AugmentConfig) -> Augmenter:
    """The augmenter for streamed crops; the pitch bank (whole songs in memory) is refused."""
    if cfg.pitch_mode == "bank" and cfg.pitch_p > 0:
        raise ConfigError("augment.pitch_mode 'bank' needs whole songs in memory, which streamed shards do not hold; "
                          "set augment.pitch_mode=praat (e.g. --set augment.pitch_mode=praat).")
    return Augmenter(cfg)


def _shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Items through a shuffle buffer of ``size`` (drained at the end)."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    while buffer:
        j = int(rng.integers(len(buffer)))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()


def batches_before(step: int, worker: int, num_workers: int) -> int:
    """Batches worker ``worker`` of ``num_workers`` delivered in steps ``[0, step)`` (round-robin)."""
    return max(0, -(-(step - worker) // num_workers))


class ShardPairStream(IterableDataset):
    """Positive pairs ``(view1, view2)`` streamed from shards; see :mod:`singerid.data.shards`.

    ``infinite`` streams run epoch after epoch from :meth:`set_epoch`'s epoch (training);
    otherwise one epoch. ``rank``/``world`` default to torch.distributed's.
    """

    def __init__(
        self,
        shards: Sequence[ShardInfo],
        augmenter: Augmenter,
        crop_samples: int,
        *,
        seed: int = 0,
        buffer_size: int = 256,
        infinite: bool = False,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        if not shards:
            raise DatasetError("no shards to stream; write some with `singerid shard`.")
        self.shards, self.augmenter, self.crop_samples = list(shards), augmenter, crop_samples
        self.seed, self.buffer_size, self.infinite = seed, buffer_size, infinite
        self.rank, self.world = rank, world
        self.epoch, self.first_step, self.batch_size = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Start at ``epoch`` (shard order and split are re-drawn from ``(seed, epoch)``)."""
        self.epoch = epoch

    def resume_at(self, step: int, batch_size: int) -> None:
        """Skip the items of global steps ``[0, step)``, batches of ``batch_size`` items per process."""
        self.first_step, self.batch_size = step, batch_size

    def check_streams(self, streams: int) -> None:
        """An endless stream needs a shard for each of ``streams`` (processes x workers)."""
        if self.infinite and streams > len(self.shards):
            raise ConfigError(
                f"{len(self.shards)} training shard(s) cannot feed {streams} streams (processes x DataLoader workers); "
                "write more, smaller shards (singerid shard --max-shard-mb/--max-files) or lower num_workers."
            )

    def assignment(self, epoch: int, stream: int, streams: int) -> list[ShardInfo]:
        """The shards stream ``stream`` of ``streams`` reads in ``epoch``, in reading order."""
        order = np.random.default_rng([self.seed, epoch, 3]).permutation(len(self.shards))
        return [self.shards[i] for i in order[stream::streams]]

    def records(
        self, *, rank: int, world: int, worker: int, num_workers: int, epoch: int | None = None, skip: int = 0
    ) -> Iterator[tuple[int, ShardRecord]]:
        """``(epoch, record)`` in the order this stream delivers them, after skipping ``skip`` items."""
        streams, stream = world * num_workers, rank * num_workers + worker
        self.check_streams(streams)
        e = self.epoch if epoch is None else epoch
        while True:
            mine = self.assignment(e, stream, streams)
            count = sum(s.files for s in mine)
            if skip >= count:
                skip -= count
            else:
                rng = np.random.default_rng([self.seed, e, stream, streams, 4])
                items = (rec for s in mine for rec in read_shard(s.path, s.files))
                for i, rec in enumerate(_shuffled(items, self.buffer_size, rng)):
                    if i >= skip:
                        yield e, rec
                skip = 0
            if not self.infinite:
                return
            e += 1

    def pair(self, record: ShardRecord, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented crops of ``record``, a pure function of ``(seed, epoch, record.key)``."""
        rng = np.random.default_rng([self.seed, epoch, key_seed(record.key)])
        n = self.crop_samples
        room = max(0, record.frames - n)
        views = []
        for _ in range(2):
            start = int(rng.integers(room + 1))
            crop = training_crop(record.read(start, n), n)
            view = self.augmenter.view(f"{record.key}@{start}", crop, 0, n, rng)
            views.append(torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32)))
        return views[0], views[1]

    def iterate(
        self, *, rank: int, world: int, worker: int, num_workers: int, epoch: int | None = None, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pairs of one stream (see :meth:`records`)."""
        for e, record in self.records(rank=rank, world=world, worker=worker, num_workers=num_workers, epoch=epoch, skip=skip):
            yield self.pair(record, e)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        loader_worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        rank, world = (self.rank, self.world) if self.rank is not None and self.world is not None else distributed_world()
        # A new DataLoader starts its round-robin at worker 0, which must play the stream that owns step first_step.
        worker = (loader_worker + self.first_step) % num_workers
        skip = batches_before(self.first_step, worker, num_workers) * self.batch_size
        return self.iterate(rank=rank, world=world, worker=worker, num_workers=num_workers, skip=skip)
