"""Adding audio files to a catalogue: hash, skip what is already there, embed, commit file by file."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from tqdm.auto import tqdm

from ..audio import load_audio
from ..errors import AudioError, ConfigError
from ..vectors import l2_normalize
from .store import CatalogError

if TYPE_CHECKING:
    from ..infer import SingerEncoder
    from .core import Catalog

HASH_CHUNK = 1 << 20


@dataclass
class AddReport:
    """What :meth:`Catalog.add` did with each file."""

    added: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    relabelled: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.replaced)} re-embedded (changed)", f"{len(self.unchanged)} already catalogued"]
        if self.relabelled:
            parts.append(f"{len(self.relabelled)} given the new label")
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (unreadable)")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"added": self.added, "unchanged": self.unchanged, "replaced": self.replaced, "relabelled": self.relabelled,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "ids": self.ids}


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _per_file(label: str | Sequence[str | None] | None, n: int, what: str) -> list[str | None]:
    if label is None or isinstance(label, str):
        return [label] * n
    labels = list(label)
    if len(labels) != n:
        raise ConfigError(f"{what}: {len(labels)} labels for {n} files; give one label, or one per file.")
    return labels


def add_files(
    catalog: "Catalog",
    encoder: "SingerEncoder",
    paths: Sequence[str | os.PathLike],
    *,
    singer=None,
    song=None,
    windows: bool = False,
    skip_unreadable: bool = False,
    progress: bool = False,
) -> AddReport:
    """See :meth:`Catalog.add`. Each file is committed on its own, so an interrupted add keeps every
    file it finished and a re-run picks up where it stopped."""
    from .core import _path_key

    files = [Path(p) for p in paths]
    singers, songs = _per_file(singer, len(files), "singer"), _per_file(song, len(files), "song")
    report = AddReport()
    db = catalog.store.db
    for path, who, what in tqdm(list(zip(files, singers, songs)), desc="catalog add", unit="file", disable=not progress):
        key = _path_key(path)
        try:
            digest = content_hash(path)
        except OSError as exc:
            _unreadable(report, key, f"cannot read ({exc.strerror or exc})", skip_unreadable)
            continue
        with catalog.store.lock:
            known = db.execute("SELECT id, singer FROM recordings WHERE content_hash = ?", (digest,)).fetchall()
            old = [int(i) for (i,) in db.execute("SELECT id FROM recordings WHERE path = ?", (key,)).fetchall()]
        if known:
            if who is not None and any(s != who for _, s in known):
                catalog.relabel([i for i, _ in known], who)
                report.relabelled.append(key)
            else:
                report.unchanged.append(key)
            continue
        try:
            audio = load_audio(path, max_clipped=None)
            win = encoder.embed_windows(audio, source=key)
        except AudioError as exc:
            _unreadable(report, key, str(exc), skip_unreadable)
            continue
        record = {"path": key, "content_hash": digest, "offset": 0.0, "duration": len(audio) / encoder.sample_rate,
                  "singer": who, "song": what}
        vector = l2_normalize(win.embeddings.mean(0, keepdims=True))
        ids = catalog.add_vectors(vector, [record], windows=[(win.embeddings, win.starts, win.ends)] if windows else None, replace=old)
        report.ids.extend(ids)
        (report.replaced if old else report.added).append(key)
    return report


def _unreadable(report: AddReport, path: str, reason: str, skip: bool) -> None:
    if not skip:
        raise CatalogError(
            f"{path}: {reason}. Files before it were added; fix or remove it and re-run, or pass --skip-unreadable "
            "(skip_unreadable=True) to skip and list such files."
        )
    report.skipped.append((path, reason))
