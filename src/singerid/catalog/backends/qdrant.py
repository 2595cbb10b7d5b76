"""Search through Qdrant (``qdrant-client``): its local mode in the catalogue folder, or a server
named ``qdrant:URL`` for catalogues that outgrow one machine. singerid keeps the metadata; Qdrant
holds the vectors under the catalogue's ids.

Qdrant's local mode lets one process at a time use its folder; several processes that search one
catalogue at once need the exact or faiss backend, or a Qdrant server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qdrant_client import QdrantClient, models

from . import Backend
from ._persist import IndexState, diff

UPSERT_BATCH = 1024


class QdrantBackend(Backend):
    """A Qdrant collection per catalogue and kind, synced from the catalogue's committed vectors."""

    def __init__(self, folder: Path, kind: str, dim: int, url: str | None = None) -> None:
        super().__init__(folder, kind, dim)
        self.client = QdrantClient(url=url) if url else QdrantClient(path=str(self.folder / f"qdrant-{kind}"))
        # One collection per catalogue on a shared server: name it after the folder.
        self.collection = f"singerid-{kind}" if not url else f"singerid-{self.folder.resolve().name}-{kind}"
        self.state = IndexState(self.folder, f"qdrant-{kind}")

    def sync(self, ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        ids = np.asarray(ids, np.int64)
        stored = self.state.load()
        if not self.client.collection_exists(self.collection):
            self.client.create_collection(self.collection, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.DOT))
            stored = None
        if stored is not None and stored[0] == generation:
            return
        held = stored[1] if stored is not None else np.zeros(0, np.int64)
        if stored is None and self.client.count(self.collection).count:
            self.client.delete_collection(self.collection)
            self.client.create_collection(self.collection, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.DOT))
        gone, new = diff(held, ids)
        if len(gone):
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=[int(i) for i in gone]))
        for start in range(0, len(new), UPSERT_BATCH):
            part = new[start : start + UPSERT_BATCH]
            self.client.upsert(
                self.collection,
                points=models.Batch(ids=[int(i) for i in ids[part]], vectors=np.asarray(vectors)[part].astype(np.float32).tolist()),
            )
        self.state.save(generation, ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32).reshape(-1, self.dim)
        scores = np.full((len(q), k), -np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        for row, vec in enumerate(q):
            points = self.client.query_points(self.collection, query=vec.tolist(), limit=k).points
            for j, p in enumerate(points):
                scores[row, j], out[row, j] = p.score, int(p.id)
        return scores, out

    def close(self) -> None:
        self.client.close()


def make(spec: str, folder: Path, kind: str, dim: int) -> QdrantBackend:
    url = spec.split(":", 1)[1] if ":" in spec else None
    return QdrantBackend(folder, kind, dim, url=url)
