"""Embedding cache of evaluation: each system's segment embeddings, stored on disk and reused
while the system, the segment list and the audio files are unchanged."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from ..fileio import atomic_path
from ..records import Segment
from ..vectors import l2_normalize

_CACHE_VERSION = "1"


def cache_key(fingerprint: str, segments: Sequence[Segment]) -> str:
    """SHA-256 of the system fingerprint, the segment list and each audio file's size and mtime.

    Any change of model, segment (order included) or audio file gives a new key.
    """
    h = hashlib.sha256(f"singerid-embeddings/{_CACHE_VERSION}\n{fingerprint}\n".encode())
    stats: dict[str, str] = {}
    for s in segments:
        if s.path not in stats:
            try:
                st = os.stat(s.path)
            except OSError as exc:
                raise DatasetError(f"{s.path}: cannot read the audio file ({exc.strerror}); fix the manifest.") from None
            stats[s.path] = f"{st.st_size}:{st.st_mtime_ns}"
        h.update(f"{s.id}\t{s.duration!r}\t{stats[s.path]}\n".encode())
    return h.hexdigest()


def embed_cached(
    system, segments: Sequence[Segment], *, cache_dir=None, progress: bool = True
) -> tuple[np.ndarray, bool]:
    """``system.embed(segments)``, read from / written to ``cache_dir`` when given.

    Returns ``(embeddings, from_cache)``. The cache file is named after the system and the
    :func:`cache_key`; a file that cannot be read is recomputed (with a warning) and replaced.
    """
    segs = list(segments)
    if cache_dir is None:
        return _embed(system, segs, progress), False
    key = cache_key(system.fingerprint, segs)
    path = Path(cache_dir) / f"{_safe_name(system.name)}-{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) == key and f["embeddings"].shape[0] == len(segs):
                    return np.asarray(f["embeddings"], dtype=np.float32), True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"{path}: unreadable embedding cache ({exc}); recomputing it.", stacklevel=2)
    emb = _embed(system, segs, progress)
    with atomic_path(path) as tmp:
        np.savez(tmp, embeddings=emb, key=np.array(key), fingerprint=np.array(system.fingerprint))
    return emb, False


def _embed(system, segs: list[Segment], progress: bool) -> np.ndarray:
    """The system's embeddings, checked and L2-normalised (float32)."""
    return l2_normalize(system.embed(segs, progress=progress), what=f"system {system.name!r}", rows=len(segs))


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "system"
