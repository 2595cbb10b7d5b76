"""Search backends behind one small interface: exact (the default), faiss (approximate), Qdrant.

A backend holds the vectors of one kind (whole recordings or windows) under integer ids and
answers top-k inner-product (cosine) queries. The catalogue is the source of truth: it calls
:meth:`Backend.sync` with its committed ids and vectors whenever they changed, and the backend
updates or rebuilds whatever index it keeps.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..store import CatalogError

BACKENDS = {"exact": "exact", "faiss": "faiss", "qdrant": "qdrant"}
"""Backend name -> module in this package. ``qdrant:URL`` names a Qdrant server instead of the local store."""


class Backend(ABC):
    """Top-k cosine search over ``(id, vector)`` pairs of one kind."""

    def __init__(self, folder: Path, kind: str, dim: int) -> None:
        self.folder, self.kind, self.dim = Path(folder), kind, dim

    @abstractmethod
    def sync(self, ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        """Make the index hold exactly ``vectors`` under ``ids`` as of catalogue ``generation``."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids ``(m, k)`` of the best ``k`` per query, best first; missing places hold id -1."""

    def close(self) -> None:
        """Release files or connections."""


def backend_name(spec: str) -> str:
    """The backend's name in ``spec`` (``qdrant:URL`` -> ``qdrant``), checked."""
    name = spec.split(":", 1)[0]
    if name not in BACKENDS:
        raise CatalogError(f"unknown catalogue backend {spec!r}; choose one of: {', '.join(BACKENDS)} (or qdrant:URL).")
    return name


def make_backend(spec: str, folder: Path, kind: str, dim: int) -> Backend:
    """The backend ``spec`` names, for vectors of ``kind`` in the catalogue ``folder``."""
    name = backend_name(spec)
    try:
        module = importlib.import_module(f".{BACKENDS[name]}", __name__)
    except ImportError as exc:
        extra = {"faiss": "retrieval", "qdrant": "qdrant"}[name]
        raise CatalogError(f"the {name} backend needs `pip install 'singerid[{extra}]'` ({exc}).") from exc
    return module.make(spec, folder, kind, dim)


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores`` ``(m, n)``, best first (ties: lower column first),
    padded with score -inf and id -1 when ``n < k``."""
    m, n = scores.shape
    out_s = np.full((m, k), -np.inf, np.float32)
    out_i = np.full((m, k), -1, np.int64)
    if n == 0 or k == 0:
        return out_s, out_i
    take = min(k, n)
    part = np.argpartition(-scores, take - 1, axis=1)[:, :take] if take < n else np.tile(np.arange(n), (m, 1))
    part_scores = np.take_along_axis(scores, part, 1)
    order = np.lexsort((part, -part_scores), axis=1)
    best = np.take_along_axis(part, order, 1)
    out_s[:, :take] = np.take_along_axis(scores, best, 1)
    out_i[:, :take] = ids[best]
    return out_s, out_i
