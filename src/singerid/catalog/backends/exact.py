"""Exact search: every stored vector is scored (numpy matrix product). The default backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import Backend, top_k


class ExactBackend(Backend):
    """Brute-force cosine search over the catalogue's memory-mapped vectors."""

    def __init__(self, folder: Path, kind: str, dim: int) -> None:
        super().__init__(folder, kind, dim)
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)

    def sync(self, ids: np.ndarray, vectors: np.ndarray, generation: int) -> None:
        self.ids, self.vectors = np.asarray(ids, np.int64), vectors

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(queries, np.float32).reshape(-1, self.dim)
        return top_k(q @ np.asarray(self.vectors).T, self.ids, k)


def make(spec: str, folder: Path, kind: str, dim: int) -> ExactBackend:
    return ExactBackend(folder, kind, dim)
