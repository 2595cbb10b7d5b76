"""Training data: positive pairs are two random crops of the same file, each augmented on its own.

Item ``i`` is a pure function of ``(seed, i)`` and optimiser step ``g`` always consumes items
``[g * batch, (g + 1) * batch)`` (split across processes), so runs are reproducible with any number
of workers and a resumed run sees exactly the items the uninterrupted run would have.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..audio import (
    SAMPLE_RATE,
    audio_info,
    fit_length,
    load_audio,
    peak_normalize,
    training_crop,
)
from ..data.shards import (
    read_index,
    split_shards,
    validation_set,
)
from ..errors import ConfigError, DatasetError
from ..records import Recording, Segment
from .augment import AugmentConfig, Augmenter, default_bank_dir
from .config import TrainConfig
from .interrupt import ignore_interrupts_in_worker
from .shard_stream import ShardPairStream, stream_augmenter

log = logging.getLogger(__name__)


def split_files(recordings: Sequence[Recording], val_fraction: float, seed: int) -> tuple[list[Recording], list[Recording]]:
    """Hold out ``val_fraction`` of the files (seeded); the rest train."""
    order = np.random.default_rng([seed, 1]).permutation(len(recordings))
    n_val = int(round(val_fraction * len(recordings)))
    val = [recordings[i] for i in sorted(order[:n_val])]
    train = [recordings[i] for i in sorted(order[n_val:])]
    if not train:
        raise DatasetError("no files left for training after the validation split; add data or lower val_fraction.")
    return train, val


def song_keys(paths: Sequence[str]) -> list[str]:
    """Each file's path below the files' common folder, with ``/`` separators.

    Augmentation draws are seeded from these keys, so a training run gives the same result
    wherever its data lives (absolute, relative or moved).
    """
    absolute = [os.path.abspath(p) for p in paths]
    if not absolute:
        return []
    root = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [os.path.relpath(p, root).replace(os.sep, "/") for p in absolute]


class SongStore:
    """Peak-normalised float32 audio of each training file, keyed by :func:`song_keys` (loaded
    once, shared by forked workers)."""

    def __init__(self, recordings: Sequence[Recording], crop_samples: int, preload: bool) -> None:
        self.paths = [r.path for r in recordings]
        self.keys = song_keys(self.paths)
        self.crop_samples = crop_samples
        self.preload = preload
        self._audio: dict[str, np.ndarray] = {}
        self.lengths = np.array([audio_info(p).frames for p in self.paths]) if not preload else None
        if preload:
            for key, p in zip(self.keys, self.paths):
                self._audio[key] = peak_normalize(load_audio(p))
            self.lengths = np.array([len(self._audio[k]) for k in self.keys])
        short = int(np.sum(self.lengths < crop_samples))
        if short:
            log.warning("%d of %d training files are shorter than one crop; they are repeat-padded.", short, len(self.paths))

    def songs(self) -> dict[str, np.ndarray]:
        """The preloaded audio (empty when reading crops from disk)."""
        return self._audio

    def song(self, i: int) -> np.ndarray:
        return self._audio[self.keys[i]]

    def read_crop(self, i: int, start: int) -> np.ndarray:
        """One crop read from disk (the not-preloaded path), peak-normalised."""
        audio = load_audio(self.paths[i], offset=start / SAMPLE_RATE, duration=self.crop_samples / SAMPLE_RATE)
        return training_crop(audio, self.crop_samples)


class PairDataset(Dataset):
    """Item ``i`` = two augmented crops of one uniformly drawn file, drawn from ``(seed, i)``."""

    def __init__(self, store: SongStore, augmenter: Augmenter, length: int, seed: int) -> None:
        self.store, self.augmenter, self.length, self.seed = store, augmenter, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index])
        i = int(rng.integers(len(self.store.paths)))
        n = self.store.crop_samples
        room = max(0, int(self.store.lengths[i]) - n)
        views = []
        for _ in range(2):
            start = int(rng.integers(room + 1))
            if self.store.preload:
                song = self.store.song(i)
                if len(song) < n:
                    song = fit_length(song, n, pad="repeat")
                view = self.augmenter.view(self.store.keys[i], song, start, n, rng)
            else:
                crop = self.store.read_crop(i, start)
                view = self.augmenter.view(f"{self.store.keys[i]}@{start}", crop, 0, n, rng)
            views.append(torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32)))
        return views[0], views[1]


class StepSampler(Sampler[int]):
    """Indices of optimiser steps ``first_step, first_step + 1, ...``: this process's share of each global batch."""

    def __init__(self, first_step: int, last_step: int, per_device_batch: int, rank: int, world: int) -> None:
        self.first, self.last, self.batch, self.rank, self.world = first_step, last_step, per_device_batch, rank, world

    def __len__(self) -> int:
        return max(0, self.last - self.first) * self.batch

    def __iter__(self):
        for step in range(self.first, self.last):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)


def validation_segments(recordings: Sequence[Recording], crop_seconds: float, per_file: int) -> list[Segment]:
    """Evenly spaced crops of each validation file (fixed, unaugmented)."""
    segments = []
    for r in recordings:
        duration = audio_info(r.path).duration
        room = max(0.0, duration - crop_seconds)
        offsets = np.linspace(0.0, room, per_file) if per_file > 1 else [room / 2]
        for off in sorted(set(round(float(o), 2) for o in offsets)):
            segments.append(Segment(r.path, r.singer, r.song, off, min(crop_seconds, duration), r.technique, r.gender))
    return segments


class SegmentDataset(Dataset):
    """Fixed crops read from disk, padded to the crop length (validation and evaluation)."""

    def __init__(self, segments: Sequence[Segment], crop_samples: int) -> None:
        self.segments, self.crop_samples = list(segments), crop_samples

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, index: int) -> torch.Tensor:
        s = self.segments[index]
        audio = load_audio(s.path, offset=s.offset, duration=s.duration)
        return torch.from_numpy(training_crop(audio, self.crop_samples))


@dataclass
class PairDataModule(L.LightningDataModule):
    """Training pairs and validation crops for :class:`~singerid.training.module.SSLModule`."""

    cfg: TrainConfig
    train_files: list[Recording]
    val_files: list[Recording]
    progress: bool = True

    def __post_init__(self) -> None:
        super().__init__()
        self.crop_samples = int(round(self.cfg.crop_seconds * SAMPLE_RATE))
        self.train_set: PairDataset | None = None
        self.val_segments = validation_segments(self.val_files, self.cfg.crop_seconds, self.cfg.val_crops_per_file)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        aug_cfg: AugmentConfig = self.cfg.augment
        if aug_cfg.pitch_mode == "bank" and not self.cfg.preload_audio:
            raise ConfigError("augment.pitch_mode 'bank' needs preload_audio: true (it shifts whole songs once).")
        store = SongStore(self.train_files, self.crop_samples, self.cfg.preload_audio)
        if aug_cfg.pitch_mode == "bank" and not aug_cfg.bank_dir:
            aug_cfg = replace(aug_cfg, bank_dir=str(default_bank_dir()))
        augmenter = Augmenter(aug_cfg)
        if aug_cfg.pitch_mode == "bank" and aug_cfg.pitch_p > 0:
            log.info("pitch banks: %s (reused by later runs on the same songs)", aug_cfg.bank_dir)
            augmenter.precompute(store.songs(), progress=self.progress, n_jobs=min(4, os.cpu_count() or 1))
        self.world = max(1, self.trainer.world_size if self.trainer else 1)
        self.rank = self.trainer.global_rank if self.trainer else 0
        self.per_device_batch = max(2, self.cfg.batch_size // self.world)
        self.train_set = PairDataset(store, augmenter, self.cfg.max_steps * self.per_device_batch * self.world, self.cfg.seed)

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        # Built after a checkpoint is restored, so a resumed run starts at the restored step.
        first = self.trainer.global_step if self.trainer else 0
        sampler = StepSampler(first, self.cfg.max_steps, self.per_device_batch, self.rank, self.world)
        return DataLoader(
            self.train_set,
            batch_size=self.per_device_batch,
            sampler=sampler,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            worker_init_fn=ignore_interrupts_in_worker,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            SegmentDataset(self.val_segments, self.crop_samples),
            batch_size=max(2, self.cfg.batch_size // 2),
            num_workers=self.cfg.num_workers,
            worker_init_fn=ignore_interrupts_in_worker,
        )


class ShardPairDataModule(L.LightningDataModule):
    """Training pairs streamed from a shard folder (:mod:`singerid.data.shards`); validation crops from its last shards.

    Nothing is preloaded (``preload_audio`` does not apply); ``augment.pitch_mode`` must be ``praat``.
    """

    def __init__(self, cfg: TrainConfig, shard_dir: str | os.PathLike) -> None:
        super().__init__()
        self.cfg = cfg
        self.crop_samples = int(round(cfg.crop_seconds * SAMPLE_RATE))
        self.augmenter = stream_augmenter(cfg.augment)
        self.train_shards, val_shards = split_shards(read_index(shard_dir), cfg.val_fraction)
        self.val_segments, self.val_set = validation_set(val_shards, cfg.crop_seconds, cfg.val_crops_per_file)
        self.train_set: ShardPairStream | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        self.world = max(1, self.trainer.world_size if self.trainer else 1)
        self.rank = self.trainer.global_rank if self.trainer else 0
        self.per_device_batch = max(2, self.cfg.batch_size // self.world)
        self.train_set = ShardPairStream(
            self.train_shards, self.augmenter, self.crop_samples, seed=self.cfg.seed, infinite=True, rank=self.rank, world=self.world
        )
        self.train_set.check_streams(self.world * max(1, self.cfg.num_workers))

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None
        # Built after a checkpoint is restored: each worker skips what it delivered before the restored step.
        self.train_set.resume_at(self.trainer.global_step if self.trainer else 0, self.per_device_batch)
        return DataLoader(self.train_set, batch_size=self.per_device_batch, num_workers=self.cfg.num_workers, worker_init_fn=ignore_interrupts_in_worker)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=max(2, self.cfg.batch_size // 2), num_workers=self.cfg.num_workers, worker_init_fn=ignore_interrupts_in_worker)
