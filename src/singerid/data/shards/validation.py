"""The training/validation split of a shard folder, and fixed validation crops read from its held-out shards."""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ...audio import SAMPLE_RATE, training_crop
from ...records import Segment
from .index import ShardIndex, ShardInfo
from .read import ShardRecord, read_shard

log = logging.getLogger(__name__)


def split_shards(index: ShardIndex, val_fraction: float) -> tuple[list[ShardInfo], list[ShardInfo]]:
    """Hold out the last ``round(val_fraction * n)`` shards for validation (files are already shuffled across shards)."""
    n_val = min(int(round(val_fraction * len(index.shards))), len(index.shards) - 1)
    if val_fraction > 0 and n_val == 0:
        log.info("validation off: %d shard(s) are too few to hold out %.0f%% of them; write smaller shards to validate.",
                 len(index.shards), 100 * val_fraction)
    cut = len(index.shards) - n_val
    return list(index.shards[:cut]), list(index.shards[cut:])


class ShardCropDataset(Dataset):
    """Fixed, unaugmented crops read from shards, padded to the crop length (validation)."""

    def __init__(self, crops: Sequence[tuple[ShardRecord, int]], crop_samples: int) -> None:
        self.crops, self.crop_samples = list(crops), crop_samples

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        record, start = self.crops[index]
        audio = record.read(start, min(self.crop_samples, record.frames - start))
        return torch.from_numpy(training_crop(audio, self.crop_samples))


def validation_set(shards: Sequence[ShardInfo], crop_seconds: float, per_file: int) -> tuple[list[Segment], ShardCropDataset]:
    """Evenly spaced crops of every file in ``shards``: their segments (for trials) and a dataset of the crops."""
    segments, crops = [], []
    for info in shards:
        for record in read_shard(info.path, info.files):
            duration = record.frames / SAMPLE_RATE
            room = max(0.0, duration - crop_seconds)
            offsets = np.linspace(0.0, room, per_file) if per_file > 1 else [room / 2]
            r = record.recording
            for off in sorted(set(round(float(o), 2) for o in offsets)):
                segments.append(Segment(r.path, r.singer, r.song, off, min(crop_seconds, duration), r.technique, r.gender))
                crops.append((record, int(round(off * SAMPLE_RATE))))
    return segments, ShardCropDataset(crops, int(round(crop_seconds * SAMPLE_RATE)))

