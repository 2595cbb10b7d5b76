"""The service's catalogue: enrolled singers, their recordings and the search over them.

Enrolled uploads are kept (so the map can play them) under ``<catalogue>/audio/<hash>/<name>``,
written and synced before the catalogue transaction that records them: an enrolment answered with
success is on disk, and an interrupted one leaves no entry. Files no entry refers to (from an
interrupted enrolment or a deleted singer) are removed when the service starts. One lock
serialises the catalogue's calls, which the web process makes from worker threads; a file lock
keeps services sharing the folder from removing each other's files between copy and commit.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
from filelock import FileLock

from ..catalog import Catalog, CatalogError, Record
from ..errors import ConfigError
from ..profiles import UNKNOWN
from .uploads import MAX_NAME_CHARS, Upload

AUDIO_DIR = "audio"
AUDIO_LOCK = "audio.lock"
HASH_CHUNK = 1 << 20


def check_singer_name(name: str) -> str:
    """A singer label as given, stripped; refuse empty, over-long, control characters and 'unknown'."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS or any(ord(c) < 32 or c == "/" for c in name):
        raise ConfigError(f"singer name {name[:40]!r}: give 1 to {MAX_NAME_CHARS} printable characters, no '/'.")
    if name == UNKNOWN:
        raise ConfigError(f"'{UNKNOWN}' is reserved for recordings no enrolled singer matches; choose another name.")
    return name


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class ServiceCatalog:
    """A :class:`~singerid.catalog.Catalog` for one model, guarded by a lock, plus its audio folder."""

    def __init__(self, folder: str | os.PathLike, fingerprint: str, dim: int, backend: str | None = None) -> None:
        self.folder = Path(folder)
        self.audio = self.folder / AUDIO_DIR
        self.lock = threading.Lock()
        self.files_lock = FileLock(str(self.folder / AUDIO_LOCK))
        if (self.folder / "catalog.sqlite").is_file():
            self.catalog = Catalog.open(self.folder, model_fingerprint=fingerprint, backend=backend)
        else:
            self.catalog = Catalog.create(self.folder, fingerprint, dim, backend=backend or "exact")
        with self.files_lock:
            self._remove_unreferenced()

    def close(self) -> None:
        with self.lock:
            self.catalog.close()

    # -- audio files ------------------------------------------------------------------------
    def _is_ours(self, path: str) -> bool:
        return Path(path).parent.parent == self.audio

    def _keep(self, upload: Upload, digest: str) -> Path:
        """Copy an upload into the audio folder (synced to disk) and return its path there."""
        target = self.audio / digest[:32] / upload.name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(upload.path, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return target

    def _remove_unreferenced(self) -> None:
        if not self.audio.is_dir():
            return
        used = {Path(r.path) for r in self.catalog.records()}
        for folder in self.audio.iterdir():
            for f in list(folder.iterdir()) if folder.is_dir() else [folder]:
                if f not in used:
                    f.unlink()
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    # -- writing ----------------------------------------------------------------------------
    def enroll(self, singer: str, uploads: Sequence[Upload], measured: Sequence[dict]) -> dict:
        """Add the measured uploads under ``singer`` in one transaction; files already enrolled for
        this singer (same content) are skipped."""
        digests = [_sha256(u.path) for u in uploads]
        with self.lock, self.files_lock:
            have = {(r.content_hash, r.singer) for r in self.catalog.records()}
            new = [i for i, d in enumerate(digests) if (d, singer) not in have and d not in digests[:i]]
            records = [
                {"path": str(self._keep(uploads[i], digests[i])), "content_hash": digests[i], "duration": measured[i]["seconds"], "singer": singer}
                for i in new
            ]
            ids = self.catalog.add_vectors(np.stack([measured[i]["embedding"] for i in new]), records) if new else []
            total = self.catalog.singers().get(singer, 0)
        skipped = [uploads[i].name for i in range(len(uploads)) if i not in new]
        return {"singer": singer, "ids": ids, "skipped": skipped, "recordings": total}

    def remove_singer(self, singer: str) -> int:
        """Remove every entry labelled ``singer`` and the kept files only they used; 0 when there is none."""
        with self.lock, self.files_lock:
            paths = [r.path for r in self.catalog.records() if r.singer == singer]
            removed = self.catalog.remove(singer=singer) if paths else 0
            still = {r.path for r in self.catalog.records()}
            for p in paths:
                if self._is_ours(p) and p not in still:
                    Path(p).unlink(missing_ok=True)
                    if Path(p).parent.is_dir() and not any(Path(p).parent.iterdir()):
                        Path(p).parent.rmdir()
        return removed

    # -- reading ----------------------------------------------------------------------------
    def records(self) -> list[Record]:
        with self.lock:
            return self.catalog.records()

    def singers(self) -> list[dict]:
        """Every labelled singer with the number and total seconds of their recordings."""
        out: dict[str, dict] = {}
        for r in self.records():
            if r.singer is not None:
                s = out.setdefault(r.singer, {"name": r.singer, "recordings": 0, "seconds": 0.0})
                s["recordings"] += 1
                s["seconds"] += float(r.duration or 0.0)
        return [out[n] for n in sorted(out)]

    def rank_singers(self, embedding: np.ndarray, top: int) -> tuple[list, float]:
        """Singers best first (catalogue hits) and the enrolled seconds of the best one."""
        with self.lock:
            hits = self.catalog.search(embedding, k=top, by="singer")
        if not hits:
            raise CatalogError("no singers are enrolled yet; enroll some first (POST /v1/enroll or the web page).")
        seconds = sum(float(r.duration or 0.0) for r in self.records() if r.singer == hits[0].singer)
        return hits, seconds

    def search(self, embedding: np.ndarray, k: int) -> list[tuple]:
        """The ``k`` nearest recordings as ``(hit, record)`` pairs."""
        with self.lock:
            hits = self.catalog.search(embedding, k=k)
            return [(h, self.catalog.get(h.record_id)) for h in hits]

    def audio_file(self, record_id: int) -> Path | None:
        """The file of entry ``record_id`` when it is on disk, else None (unknown id: CatalogError)."""
        with self.lock:
            path = Path(self.catalog.get(record_id).path)
        return path if path.is_file() else None

    def map(self) -> tuple[list[Record], np.ndarray]:
        """Every entry and 2-D coordinates for it: the first two principal components of the vectors."""
        with self.lock:
            ids, vectors = self.catalog.vectors()
            by_id = {r.id: r for r in self.catalog.records()}
        records = [by_id[int(i)] for i in ids]
        xy = np.zeros((len(ids), 2), np.float64)
        if len(ids) >= 2:
            from sklearn.decomposition import PCA

            n = min(2, len(ids), vectors.shape[1])
            xy[:, :n] = PCA(n_components=n, svd_solver="full").fit_transform(np.asarray(vectors, np.float64))
        return records, xy

    def info(self) -> dict:
        with self.lock:
            info = self.catalog.info()
        return {k: info[k] for k in ("count", "singers", "dim", "backend")}
