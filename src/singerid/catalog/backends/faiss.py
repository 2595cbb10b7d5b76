"""Approximate search with a faiss inverted-file index (IVF, inner product), kept on disk beside the catalogue.

Below :data:`MIN_TRAIN_PER_LIST` vectors per list the index is a flat (exact) one; above it, an
IVF index with about ``LISTS_PER_SQRT * sqrt(n)`` lists, searched in :data:`PROBE_FRACTION` of
them. Its recall against exact search is measured in ``benchmarks/bench_catalog.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from ...fileio import atomic_path
from . import Backend
from ._persist import IndexState, diff

LISTS_PER_SQRT = 1
"""Number of IVF lists per square root of the number of vectors."""
MIN_TRAIN_PER_LIST = 39
"""faiss wants this many training vectors per list; fewer vectors in all and the index stays flat."""
PROBE_FRACTION = 0.25
"""Share of the lists a query visits: recall against speed."""
TRAIN_SAMPLE_PER_LIST = 40
"""Training vectors per list (a seeded sample of the catalogue)."""
SEED = 0
REBUILD_GROWTH = 4.0
"""Retrain when the catalogue has grown this many times past the size the lists were trained on."""


class FaissBackend(Backend):
    """IVF-flat (or flat, for small catalogues) inner-product index with the catalogue's ids."""

    def __init__(self, folder: Path, kind: str, dim: int) -> None:
        super().__init__(folder, kind, dim)
        self.index_path = self.folder / f"faiss-{kind}.index"
        self.state = IndexState(self.folder, f"faiss-{kind}")
        self.index = None
        self.held = np.zeros(0, np.int64)
        self.trained_on = 0

    def _build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        n = len(ids)
        lists = max(1, int(LISTS_PER_SQRT * math.sqrt(n)))
        if n < lists * MIN_TRAIN_PER_LIST or lists < 2:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        else:
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, lists, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(SEED)
            sample = np.sort(rng.choice(n, size=min(n, lists * TRAIN_SAMPLE_PER_LIST), replace=False))
            index.train(np.ascontiguousarray(vectors[sample], np.float32))
            index.nprobe = max(1, int(math.ceil(PROBE_FRACTION * lists)))
        self._add(index, ids, vectors)
        self.index, self.held, self.trained_on = index, np.asarray(ids, np.int64), n

    @staticmethod
    def _add(index, ids: np.ndarray, vectors: np.ndarray, chunk: int = 100_000) -> None:
        for i in range(0, len(ids), chunk):
            index.add_with_ids(np.ascontiguousarray(vectors[i : i + chunk], np.float32), np.asarray(ids[i : i + chunk], np.int64))

    def sync(self, ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        ids = np.asarray(ids, np.int64)
        if self.index is None:
            stored = self.state.load()
            if stored is not None and self.index_path.is_file():
                self.index = faiss.read_index(str(self.index_path))
                self.held = stored[1]
                self.trained_on = self.index.ntotal
                if stored[0] == generation:
                    return
        if self.index is None or len(ids) > REBUILD_GROWTH * max(self.trained_on, 1) or len(ids) < self.trained_on / REBUILD_GROWTH:
            self._build(ids, vectors)
        else:
            gone, new = diff(self.held, ids)
            if len(gone):
                self.index.remove_ids(faiss.IDSelectorArray(gone))
            if len(new):
                self._add(self.index, ids[new], np.asarray(vectors)[new] if len(new) < len(ids) else vectors)
            self.held = ids
        with atomic_path(self.index_path) as tmp:
            faiss.write_index(self.index, str(tmp))
        self.state.save(generation, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if self.index is None or self.index.ntotal == 0:
            return np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        scores, ids = self.index.search(q, k)
        scores[ids < 0] = -np.inf
        return scores, ids.astype(np.int64)


def make(spec: str, folder: Path, kind: str, dim: int) -> FaissBackend:
    return FaissBackend(folder, kind, dim)
