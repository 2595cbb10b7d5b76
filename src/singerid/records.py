"""The rows that flow between stages: recordings (whole files) and segments (crops of them).

Both read and write as CSV manifests. A segment points into its source file by offset and
duration; audio is never copied to make segments.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Sequence

from .errors import DatasetError
from .fileio import atomic_path, read_text


@dataclass(frozen=True)
class Recording:
    """One audio file of one singer. ``song`` identifies the recording session/song."""

    path: str
    singer: str
    song: str
    technique: str = ""
    gender: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Segment:
    """A crop ``[offset, offset + duration)`` seconds of a recording."""

    path: str
    singer: str
    song: str
    offset: float
    duration: float
    technique: str = ""
    gender: str = ""

    @property
    def id(self) -> str:
        """Stable identifier used in trial lists and embedding files."""
        return f"{self.path}@{self.offset:.2f}"


_RECORDING_COLUMNS = [f.name for f in fields(Recording) if f.name != "extra"]
_SEGMENT_COLUMNS = [f.name for f in fields(Segment)]


def write_recordings(path: str | os.PathLike, recordings: Iterable[Recording]) -> Path:
    """Write a recording manifest (extra metadata as further columns), atomically."""
    rows = list(recordings)
    extra_cols = sorted({k for r in rows for k in r.extra})
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_RECORDING_COLUMNS + extra_cols)
        writer.writeheader()
        for r in rows:
            row = {k: v for k, v in asdict(r).items() if k != "extra"}
            row.update(r.extra)
            writer.writerow(row)
    return Path(path)


def read_recordings(path: str | os.PathLike) -> list[Recording]:
    """Read a recording manifest (needs at least ``path`` and ``singer`` columns).

    Relative audio paths are taken relative to the manifest's folder. A missing ``song``
    column makes each file its own song.
    """
    rows = _read_rows(path, required=("path", "singer"))
    base = Path(path).parent
    out = []
    for row in rows:
        audio = _resolve(base, row.pop("path"))
        core = {k: row.pop(k, "") or "" for k in ("singer", "song", "technique", "gender")}
        core["song"] = core["song"] or Path(audio).stem
        out.append(Recording(path=audio, extra=row, **core))
    return out


def write_segments(path: str | os.PathLike, segments: Iterable[Segment]) -> Path:
    """Write a segment manifest, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=_SEGMENT_COLUMNS)
        writer.writeheader()
        for s in segments:
            writer.writerow(asdict(s))
    return Path(path)


def read_segments(path: str | os.PathLike) -> list[Segment]:
    """Read a segment manifest written by :func:`write_segments`."""
    rows = _read_rows(path, required=("path", "singer", "song", "offset", "duration"))
    base = Path(path).parent
    try:
        return [
            Segment(
                path=_resolve(base, r["path"]),
                singer=r["singer"],
                song=r["song"],
                offset=float(r["offset"]),
                duration=float(r["duration"]),
                technique=r.get("technique", "") or "",
                gender=r.get("gender", "") or "",
            )
            for r in rows
        ]
    except ValueError as exc:
        raise DatasetError(f"{path}: offset/duration must be numbers ({exc}). Regenerate it with `singerid segment`.") from exc


def _resolve(base: Path, audio: str) -> str:
    p = Path(audio)
    return str(p if p.is_absolute() else (base / p))


def _read_rows(path: str | os.PathLike, required: Sequence[str]) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: manifest not found. Create one with `singerid prepare` or `singerid segment`.")
    text = read_text(p, "Re-create it with `singerid prepare` or `singerid segment`.")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(
                f"{p}: manifest lacks column(s) {', '.join(missing)} (has: {', '.join(reader.fieldnames or [])})."
            )
        rows = list(reader)
    except csv.Error as exc:
        raise DatasetError(f"{p}: malformed CSV ({exc}); re-create it with `singerid prepare` or `singerid segment`.") from None
    if not rows:
        raise DatasetError(f"{p}: manifest has no rows.")
    return rows
