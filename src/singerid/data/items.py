"""Audio files and segments as map-style datasets for DataLoader workers to decode."""

from __future__ import annotations

import os
from typing import Sequence

import torch
from torch.utils.data import Dataset

from ..audio import STREAM_SECONDS, audio_info, load_audio
from ..errors import SingerIdError


class FileAudio(Dataset):
    """``(path, audio tensor)`` per file.

    A file longer than :data:`~singerid.audio.STREAM_SECONDS` gives ``(path, None)``: the caller
    reads it window by window instead of holding it whole. With ``skip``, a file that cannot be
    read gives ``(path, reason)`` instead of raising.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], skip: bool = False, max_seconds: float | None = None) -> None:
        self.paths = [str(p) for p in paths]
        self.skip, self.max_seconds = skip, max_seconds

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        path = self.paths[i]
        try:
            if audio_info(path).duration > STREAM_SECONDS:
                return path, None
            return path, torch.from_numpy(load_audio(path, max_clipped=None, max_seconds=self.max_seconds))
        except SingerIdError as exc:
            if not self.skip:
                raise
            return path, str(exc)


class SegmentAudio(Dataset):
    """``(segment id, audio tensor)`` per :class:`~singerid.records.Segment` (only its crop is read)."""

    def __init__(self, segments: list) -> None:
        self.segments = segments

    def __len__(self) -> int:
        return len(self.segments)

    def __getitem__(self, i: int):
        s = self.segments[i]
        return s.id, torch.from_numpy(load_audio(s.path, offset=s.offset, duration=s.duration, max_clipped=None))
