"""``Catalog``: a folder that keeps embeddings of a growing collection and searches it by voice."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..vectors import l2_normalize
from .backends import Backend, backend_name, make_backend, top_k
from .store import CatalogError, Record, Store

if TYPE_CHECKING:
    from ..infer import SingerEncoder
    from .ingest import AddReport

DEFAULT_BACKEND = "exact"
WINDOW_OVERFETCH = 8
"""A windowed search asks the backend for this many windows per wanted recording, then keeps each
recording's best window (an exact backend scores them all anyway)."""


@dataclass(frozen=True)
class Hit:
    """One search answer: a recording (``record_id``, ``path``), or a singer (``by="singer"``, no record),
    its cosine ``score``, and for window searches the seconds of the best-matching window."""

    record_id: int | None
    path: str | None
    singer: str | None
    score: float
    start: float | None
    end: float | None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Catalog:
    """Embeddings of recordings made with one model, in a folder: metadata in SQLite, vectors beside it.

    Open with :meth:`create`, :meth:`open` or :meth:`open_or_create`; close (or use as a context
    manager) when done. Writes are transactions: a crash leaves every completed write and no part
    of an unfinished one.
    """

    def __init__(self, store: Store, backend: str) -> None:
        self.store = store
        self.folder = store.folder
        self.dim = store.dim
        self.model_fingerprint = store.meta["model_fingerprint"]
        backend_name(backend)
        self.backend = backend
        self._backends: dict[str, tuple[Backend, int]] = {}

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike, model_fingerprint: str, dim: int, backend: str = DEFAULT_BACKEND) -> "Catalog":
        """A new, empty catalogue in ``folder`` for vectors of size ``dim`` from the model ``model_fingerprint``."""
        backend_name(backend)
        if int(dim) < 1:
            raise CatalogError(f"dim={dim}: a catalogue needs a positive vector size.")
        meta = {"model_fingerprint": str(model_fingerprint), "dim": str(int(dim)), "backend": backend}
        return cls(Store.create(Path(folder), meta), backend)

    @classmethod
    def open(
        cls,
        folder: str | os.PathLike,
        model_fingerprint: str | None = None,
        backend: str | None = None,
        readonly: bool = False,
    ) -> "Catalog":
        """An existing catalogue; with ``model_fingerprint``, refuse one made with another model."""
        store = Store(Path(folder), readonly=readonly)
        stored = store.meta["model_fingerprint"]
        if model_fingerprint is not None and model_fingerprint != stored:
            store.close()
            raise CatalogError(
                f"{folder}: this catalogue holds embeddings of another model (fingerprint {stored[:12]}, "
                f"not {str(model_fingerprint)[:12]}); use that model, or a new catalogue folder for this one."
            )
        return cls(store, backend or store.meta["backend"])

    @classmethod
    def open_or_create(cls, folder: str | os.PathLike, encoder: "SingerEncoder", backend: str = DEFAULT_BACKEND) -> "Catalog":
        """The catalogue in ``folder`` for ``encoder``'s model, created when the folder holds none."""
        fingerprint = encoder.artifact.fingerprint
        if (Path(folder) / "catalog.sqlite").is_file():
            return cls.open(folder, fingerprint, backend=backend)
        return cls.create(folder, fingerprint, encoder.dim, backend=backend)

    def close(self) -> None:
        """Close the database and any backend index."""
        for b, _ in self._backends.values():
            b.close()
        self._backends.clear()
        self.store.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------
    def add(
        self,
        encoder: "SingerEncoder",
        paths: Sequence[str | os.PathLike],
        *,
        singer: str | Sequence[str | None] | None = None,
        song: str | Sequence[str | None] | None = None,
        windows: bool = False,
        skip_unreadable: bool = False,
        progress: bool = False,
    ) -> "AddReport":
        """Embed and add audio files (one transaction per file, so an interrupted add resumes).

        A file whose content is already catalogued is left alone (given ``singer`` as its new label
        when that differs); a catalogued path whose content changed is re-embedded. ``singer`` and
        ``song`` label every file, or give one label per file. ``windows`` also keeps each window's
        vector, for :meth:`search` with ``windows=True``.
        """
        from .ingest import add_files

        if encoder.artifact.fingerprint != self.model_fingerprint:
            raise CatalogError(f"{self.folder}: this catalogue holds embeddings of another model; use that model or a new catalogue.")
        return add_files(self, encoder, paths, singer=singer, song=song, windows=windows, skip_unreadable=skip_unreadable, progress=progress)

    def add_vectors(
        self,
        vectors: np.ndarray,
        records: list[dict],
        *,
        windows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray] | None] | None = None,
        replace: Sequence[int] = (),
    ) -> list[int]:
        """Add ready-made vectors with their records (dicts with ``path`` and optionally ``content_hash``,
        ``offset``, ``duration``, ``singer``, ``song``) in one transaction; returns the new ids.

        ``windows`` gives, per record, ``(vectors, starts, ends)`` of its windows (or None);
        ``replace`` lists ids removed in the same transaction (a changed file's old entry).
        """
        x = l2_normalize(vectors, what=f"{self.folder}: vectors to add", rows=len(records), error=CatalogError)
        if x.shape[1] != self.dim:
            raise CatalogError(f"{self.folder}: vectors have {x.shape[1]} dimensions; this catalogue holds {self.dim}.")
        for r in records:
            if "path" not in r:
                raise CatalogError(f"{self.folder}: every record needs a 'path' (got {sorted(r)}).")
        with self.store.write() as con:
            if replace:
                con.executemany("DELETE FROM recordings WHERE id = ?", [(int(i),) for i in replace])
            ids = self.store.insert(con, records, self.store.append_vectors(con, "recording", x))
            for rid, win in zip(ids, windows or []):
                if win is None:
                    continue
                wv, starts, ends = win
                wv = l2_normalize(wv, what=f"{self.folder}: window vectors", rows=len(starts), error=CatalogError)
                first = self.store.append_vectors(con, "window", wv)
                con.executemany(
                    "INSERT INTO windows (record_id, row, start, end) VALUES (?, ?, ?, ?)",
                    [(rid, first + j, float(s), float(e)) for j, (s, e) in enumerate(zip(starts, ends))],
                )
        return ids

    def remove(self, *, ids: Sequence[int] | None = None, paths: Sequence[str | os.PathLike] | None = None, singer: str | None = None) -> int:
        """Remove entries by id, by path or by singer label (one transaction); returns how many went."""
        if ids is None and paths is None and singer is None:
            raise CatalogError("say what to remove: ids, paths or a singer.")
        count = "SELECT COUNT(*) FROM recordings"
        with self.store.write() as con:
            before = con.execute(count).fetchone()[0]
            if ids is not None:
                con.executemany("DELETE FROM recordings WHERE id = ?", [(int(i),) for i in ids])
            if paths is not None:
                con.executemany("DELETE FROM recordings WHERE path = ?", [(_path_key(p),) for p in paths])
            if singer is not None:
                con.execute("DELETE FROM recordings WHERE singer = ?", (singer,))
            return int(before - con.execute(count).fetchone()[0])

    def relabel(self, ids: Sequence[int], singer: str | None) -> None:
        """Give the entries ``ids`` the singer label ``singer`` (None: unlabelled)."""
        with self.store.write() as con:
            con.executemany("UPDATE recordings SET singer = ? WHERE id = ?", [(singer, int(i)) for i in ids])

    # -- reading --------------------------------------------------------------------------
    def get(self, record_id: int) -> Record:
        """The record with id ``record_id``."""
        found = self.store.records("WHERE r.id = ?", (int(record_id),))
        if not found:
            raise CatalogError(f"{self.folder}: no entry with id {record_id}; list entries with `singerid catalog info --list`.")
        return found[0]

    def records(self) -> list[Record]:
        """Every entry, oldest first."""
        return self.store.records()

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)``: entry ids and their ``(n, dim)`` float32 L2-normalised vectors."""
        with self.store.read() as con:
            ids, vecs = self._snapshot(con, "recording")
        return ids, np.array(vecs, np.float32)

    def _snapshot(self, con, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """Ids and (memory-mapped where possible) vectors of ``kind`` as of the open read transaction."""
        if kind == "recording":
            rows = np.array(con.execute("SELECT id, row FROM recordings ORDER BY id").fetchall(), np.int64).reshape(-1, 2)
        else:
            rows = np.array(con.execute("SELECT row, row FROM windows ORDER BY row").fetchall(), np.int64).reshape(-1, 2)
        matrix = self.store.matrix(con, kind)
        ids, where = rows[:, 0], rows[:, 1]
        if len(where) == len(matrix) and np.array_equal(where, np.arange(len(matrix))):
            return ids, matrix
        return ids, matrix[where]

    def gallery(self):
        """The labelled entries as a :class:`~singerid.profiles.Gallery` for :meth:`SingerEncoder.identify`."""
        from .gallery import CatalogGallery

        return CatalogGallery(self)

    def singers(self) -> dict[str, int]:
        """Singer label -> number of entries with that label."""
        with self.store.lock:
            rows = self.store.db.execute("SELECT singer, COUNT(*) FROM recordings WHERE singer IS NOT NULL GROUP BY singer ORDER BY singer").fetchall()
        return {s: int(n) for s, n in rows}

    def __len__(self) -> int:
        with self.store.lock:
            return int(self.store.db.execute("SELECT COUNT(*) FROM recordings").fetchone()[0])

    def info(self) -> dict:
        """Counts, model fingerprint, vector size, backend and size on disk."""
        with self.store.read() as con:
            count = int(con.execute("SELECT COUNT(*) FROM recordings").fetchone()[0])
            n_windows = int(con.execute("SELECT COUNT(*) FROM windows").fetchone()[0])
            singers = int(con.execute("SELECT COUNT(DISTINCT singer) FROM recordings WHERE singer IS NOT NULL").fetchone()[0])
        return {
            "folder": str(self.folder),
            "count": count,
            "windows": n_windows,
            "singers": singers,
            "dim": self.dim,
            "model_fingerprint": self.model_fingerprint,
            "backend": self.backend,
            "bytes": self.store.size_on_disk(),
        }

    # -- search ---------------------------------------------------------------------------
    def search(self, query: np.ndarray, k: int = 10, by: str = "recording", windows: bool = False) -> list[Hit]:
        """The ``k`` entries (``by="recording"``) or labelled singers (``by="singer"``) closest to ``query``.

        ``query`` is one embedding ``(dim,)``. A singer scores by the cosine of ``query`` with the
        normalised mean of the singer's vectors. ``windows=True`` scores each recording by its
        best-matching window and returns that window's start and end.
        """
        q = l2_normalize(np.asarray(query, np.float32).reshape(1, -1), what="search query", rows=1, error=CatalogError)
        if q.shape[1] != self.dim:
            raise CatalogError(f"search query has {q.shape[1]} dimensions; this catalogue holds {self.dim}.")
        if k < 1:
            raise CatalogError(f"k={k}: ask for at least one result.")
        if by == "singer":
            return self._search_singers(q[0], k)
        if by != "recording":
            raise CatalogError(f"by={by!r}: search by 'recording' or 'singer'.")
        if windows:
            return self._search_windows(q, k)
        scores, ids = self._backend("recording").search(q, k)
        found = {r.id: r for r in self._records_by_id(ids[0])}
        return [
            Hit(int(i), found[i].path, found[i].singer, float(s), None, None)
            for s, i in zip(scores[0], ids[0])
            if i >= 0 and i in found
        ]

    def singer_centroids(self) -> tuple[list[str], np.ndarray]:
        """Labelled singers (sorted) and the normalised means of their vectors ``(n_singers, dim)``."""
        with self.store.read() as con:
            rows = con.execute("SELECT row, singer FROM recordings WHERE singer IS NOT NULL ORDER BY singer, id").fetchall()
            matrix = self.store.matrix(con, "recording")
        if not rows:
            return [], np.zeros((0, self.dim), np.float32)
        labels = [s for _, s in rows]
        names, owner = np.unique(np.array(labels, dtype=object), return_inverse=True)
        sums = np.zeros((len(names), self.dim), np.float64)
        np.add.at(sums, owner, np.asarray(matrix[np.array([r for r, _ in rows])], np.float64))
        return [str(n) for n in names], l2_normalize(sums)

    def _search_singers(self, q: np.ndarray, k: int) -> list[Hit]:
        names, centroids = self.singer_centroids()
        if not names:
            return []
        scores, idx = top_k((centroids @ q)[None, :], np.arange(len(names)), k)
        return [Hit(None, None, names[i], float(s), None, None) for s, i in zip(scores[0], idx[0]) if i >= 0]

    def _search_windows(self, q: np.ndarray, k: int) -> list[Hit]:
        backend = self._backend("window")
        with self.store.lock:
            total = int(self.store.db.execute("SELECT COUNT(*) FROM windows").fetchone()[0])
        scores, rows = backend.search(q, min(total, k * WINDOW_OVERFETCH) or 1)
        keep = rows[0] >= 0
        scores, rows = scores[0][keep], rows[0][keep]
        if not len(rows):
            return []
        where = ",".join(str(int(r)) for r in rows)
        with self.store.lock:
            found = self.store.db.execute(f"SELECT row, record_id, start, end FROM windows WHERE row IN ({where})").fetchall()
        info = {row: (rid, start, end) for row, rid, start, end in found}
        hits, seen = [], set()
        for s, row in zip(scores, rows):
            if int(row) not in info:
                continue
            rid, start, end = info[int(row)]
            if rid in seen:
                continue
            seen.add(rid)
            rec = self.get(rid)
            hits.append(Hit(rid, rec.path, rec.singer, float(s), float(start), float(end)))
            if len(hits) == k:
                break
        return hits

    def _records_by_id(self, ids: np.ndarray) -> list[Record]:
        wanted = [int(i) for i in ids if i >= 0]
        if not wanted:
            return []
        return self.store.records(f"WHERE r.id IN ({','.join(map(str, wanted))})")

    def _backend(self, kind: str) -> Backend:
        """The backend for ``kind``, synced with the catalogue's latest committed state."""
        with self.store.read() as con:
            generation = self.store._value(con, "generation")
            held = self._backends.get(kind)
            if held is not None and held[1] == generation:
                return held[0]
            backend = held[0] if held is not None else make_backend(self.backend, self.folder, kind, self.dim)
            ids, vecs = self._snapshot(con, kind)
        backend.sync(ids, vecs, generation)
        self._backends[kind] = (backend, generation)
        return backend


def _path_key(path: str | os.PathLike) -> str:
    """How a file's path is stored: absolute, so the same file is found from any working folder."""
    return str(Path(path).absolute())
