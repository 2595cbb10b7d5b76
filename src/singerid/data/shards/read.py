"""Reading one shard: its records' metadata from the tar headers, and audio crops decoded on demand."""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from ...audio import SAMPLE_RATE
from ...errors import AudioError, DatasetError
from ...records import Recording


class _MemberFile(io.RawIOBase):
    """A read-only, seekable view of bytes ``[offset, offset + size)`` of an open file."""

    def __init__(self, fh, offset: int, size: int) -> None:
        super().__init__()
        self._fh, self._offset, self._size, self._pos = fh, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + pos), self._size)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._offset + self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got


@dataclass(frozen=True, eq=False)
class ShardRecord:
    """One file inside a shard: its metadata and where its FLAC bytes lie."""

    shard: Path
    key: str
    meta: dict
    offset: int
    size: int

    @property
    def frames(self) -> int:
        return int(self.meta["frames"])

    @property
    def recording(self) -> Recording:
        m = self.meta
        return Recording(m["path"], m["singer"], m["song"], m.get("technique", ""), m.get("gender", ""), dict(m.get("extra", {})))

    def read(self, start: int = 0, frames: int = -1) -> np.ndarray:
        """Decode ``frames`` samples from ``start`` (float32); reads only the FLAC frames needed."""
        try:
            with open(self.shard, "rb") as fh, sf.SoundFile(_MemberFile(fh, self.offset, self.size)) as f:
                f.seek(start)
                return f.read(frames, dtype="float32")
        except (OSError, RuntimeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
            raise AudioError(f"{self.shard}: entry {self.key}.flac cannot be decoded ({exc}); delete the shard and "
                             "re-run `singerid shard` to rewrite it.") from exc


_REQUIRED = ("path", "singer", "song", "frames", "sample_rate")
MAX_JSON_BYTES = 2**20
"""Largest ``.json`` member read from a shard: metadata of one file is a few hundred bytes."""


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _record(shard: Path, key: str, meta: dict | None, flac: tarfile.TarInfo | None) -> ShardRecord:
    if meta is None or flac is None:
        raise DatasetError(f"{shard}: sample {key} lacks its {'.json' if meta is None else '.flac'} entry; "
                           "delete the shard and re-run `singerid shard` to rewrite it.")
    if not isinstance(meta, dict) or any(k not in meta for k in _REQUIRED) or _number(meta["sample_rate"]) != SAMPLE_RATE:
        raise DatasetError(f"{shard}: {key}.json lacks {', '.join(_REQUIRED)} or is not at {SAMPLE_RATE} Hz; "
                           "rewrite the shards with `singerid shard`.")
    return ShardRecord(shard, key, meta, flac.offset_data, flac.size)


def read_shard(path: str | os.PathLike, expected: int | None = None) -> Iterator[ShardRecord]:
    """The records of one shard in stored order (metadata only; audio is read on demand).

    Members other than ``.json`` and ``.flac`` are ignored (WebDataset lets shards carry more).
    With ``expected``, a shard holding another number of files raises :class:`DatasetError`.
    """
    shard = Path(path)
    count = 0
    try:
        with tarfile.open(shard, "r:") as tar:
            key, meta, flac = None, None, None
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                name = f"{folder}/{stem}" if folder else stem
                if name != key:
                    if key is not None:
                        count += 1
                        yield _record(shard, key, meta, flac)
                    key, meta, flac = name, None, None
                if ext == "json":
                    if member.size > MAX_JSON_BYTES:
                        raise DatasetError(f"{shard}: entry {member.name} is {member.size} bytes, more than metadata "
                                           "ever needs; the shard is not one singerid wrote.")
                    meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                elif ext == "flac":
                    flac = member
            if key is not None:
                count += 1
                yield _record(shard, key, meta, flac)
    except (OSError, tarfile.TarError, ValueError) as exc:  # ValueError: JSON or text that does not decode
        raise DatasetError(f"{shard}: unreadable shard ({exc}); delete it and re-run `singerid shard` to rewrite it.") from exc
    if expected is not None and count != expected:
        raise DatasetError(f"{shard}: holds {count} files but the index says {expected}; the shard folder is "
                           "inconsistent, re-run `singerid shard` into a new folder.")
