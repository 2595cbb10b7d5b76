"""The catalogue's storage: metadata in SQLite, vectors in append-only float32 files beside it.

A write is one SQLite transaction. Vectors are appended to their file and flushed to disk
*before* the transaction that records their row count commits, so a process killed at any
moment leaves either the whole write (committed rows) or none of it (rows past the committed
count, which readers ignore and the next writer overwrites). Readers see only committed rows
and may search while one writer adds (SQLite WAL).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import SingerIdError

DB_NAME = "catalog.sqlite"
VECTOR_FILES = {"recording": "vectors.f32", "window": "windows.f32"}
FORMAT_VERSION = 1
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another writer before giving up."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    offset REAL NOT NULL DEFAULT 0,
    duration REAL,
    singer TEXT,
    song TEXT,
    added REAL NOT NULL,
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_hash ON recordings (content_hash);
CREATE INDEX IF NOT EXISTS recordings_path ON recordings (path);
CREATE INDEX IF NOT EXISTS recordings_singer ON recordings (singer);
CREATE TABLE IF NOT EXISTS windows (
    record_id INTEGER NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
    row INTEGER NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS windows_record ON windows (record_id);
"""


class CatalogError(SingerIdError):
    """A catalogue folder that is missing, corrupt, of another model, or asked to do what it cannot."""


@dataclass(frozen=True)
class Record:
    """One catalogued recording (or a part of one, from ``offset`` for ``duration`` seconds)."""

    id: int
    path: str
    content_hash: str
    offset: float
    duration: float | None
    singer: str | None
    song: str | None
    added: float
    has_windows: bool

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Store:
    """SQLite metadata plus the vector files of one catalogue folder."""

    def __init__(self, folder: Path, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.readonly = readonly
        # One connection serves every thread of the process (a web service); transactions take turns.
        self.lock = threading.RLock()
        db = self.folder / DB_NAME
        if not db.is_file():
            raise CatalogError(f"{self.folder}: not a catalogue (no {DB_NAME}); create it with `singerid catalog add`.")
        try:
            self.db = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{db}: not a readable catalogue database ({exc}).") from exc
        if int(self.meta.get("format", -1)) != FORMAT_VERSION:
            raise CatalogError(f"{db}: catalogue format {self.meta.get('format')!r}; this singerid reads format {FORMAT_VERSION}.")
        self.dim = int(self.meta["dim"])

    @classmethod
    def create(cls, folder: Path, meta: dict[str, str]) -> "Store":
        """A new empty catalogue in ``folder`` (which must not hold one already)."""
        folder = Path(folder)
        db = folder / DB_NAME
        if db.exists():
            raise CatalogError(f"{folder}: a catalogue already exists here; open it instead, or choose another folder.")
        folder.mkdir(parents=True, exist_ok=True)
        # Built under a temporary name and renamed, so a half-created catalogue is never found.
        tmp = folder / f".{DB_NAME}.creating"
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.executescript(_SCHEMA)
            rows = {**meta, "format": str(FORMAT_VERSION), "rows_recording": "0", "rows_window": "0", "generation": "0"}
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(rows.items()))
        finally:
            con.close()
        for name in VECTOR_FILES.values():
            (folder / name).touch()
        os.replace(tmp, db)
        return cls(folder)

    def close(self) -> None:
        self.db.close()

    # -- transactions ---------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; only one writer at a time holds it (BEGIN IMMEDIATE)."""
        if self.readonly:
            raise CatalogError(f"{self.folder}: opened read-only; open it without readonly=True to change it.")
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                self.db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several reads."""
        with self.lock:
            self.db.execute("BEGIN")
            try:
                yield self.db
            finally:
                self.db.execute("COMMIT")

    def _value(self, con: sqlite3.Connection, key: str) -> int:
        return int(con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])

    def append_vectors(self, con: sqlite3.Connection, kind: str, vectors: np.ndarray) -> int:
        """Inside a write transaction: append ``vectors`` to the ``kind`` file and return their first row."""
        first = self._value(con, f"rows_{kind}")
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != self.dim:
            raise CatalogError(f"{self.folder}: vectors of shape {data.shape}; this catalogue holds ({self.dim},) vectors.")
        with open(self.folder / VECTOR_FILES[kind], "r+b") as f:
            # Rows past the committed count belong to a write that never committed: overwrite them.
            f.truncate(first * self.dim * 4)
            f.seek(first * self.dim * 4)
            f.write(data.tobytes())
            f.flush()
            os.fsync(f.fileno())
        con.execute("UPDATE meta SET value = ? WHERE key = ?", (str(first + len(data)), f"rows_{kind}"))
        return first

    def matrix(self, con: sqlite3.Connection, kind: str) -> np.ndarray:
        """The committed rows of the ``kind`` vector file, memory-mapped (read-only)."""
        n = self._value(con, f"rows_{kind}")
        path = self.folder / VECTOR_FILES[kind]
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        if path.stat().st_size < n * self.dim * 4:
            raise CatalogError(f"{path}: holds fewer vectors than the catalogue records; the folder is damaged.")
        return np.memmap(path, dtype=np.float32, mode="r", shape=(n, self.dim))

    # -- records --------------------------------------------------------------------------
    def insert(self, con: sqlite3.Connection, records: Sequence[dict], first_row: int) -> list[int]:
        now = time.time()
        ids = []
        for i, r in enumerate(records):
            cur = con.execute(
                "INSERT INTO recordings (path, content_hash, offset, duration, singer, song, added, row) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    str(r["path"]), str(r.get("content_hash", "")), float(r.get("offset") or 0.0), r.get("duration"),
                    r.get("singer"), r.get("song"), float(r.get("added", now)), first_row + i,
                ),
            )
            ids.append(int(cur.lastrowid))
        return ids

    def records(self, where: str = "", params: Sequence = ()) -> list[Record]:
        with self.lock:
            rows = self._select_records(where, params)
        return [Record(*row[:8], has_windows=bool(row[8])) for row in rows]

    def _select_records(self, where: str, params: Sequence) -> list[tuple]:
        return self.db.execute(
            "SELECT r.id, r.path, r.content_hash, r.offset, r.duration, r.singer, r.song, r.added, "
            "EXISTS (SELECT 1 FROM windows w WHERE w.record_id = r.id) FROM recordings r "
            f"{where} ORDER BY r.id",
            tuple(params),
        ).fetchall()

    def size_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
