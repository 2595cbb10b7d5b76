"""Bookkeeping shared by backends that keep an index on disk: which ids it holds, as of which write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...fileio import atomic_path, write_text


class IndexState:
    """The ids an on-disk index holds and the catalogue generation it reflects (``<name>.ids.npy``, ``<name>.json``)."""

    def __init__(self, folder: Path, name: str) -> None:
        self.ids_path, self.meta_path = folder / f"{name}.ids.npy", folder / f"{name}.json"

    def load(self) -> tuple[int, np.ndarray] | None:
        if not (self.ids_path.is_file() and self.meta_path.is_file()):
            return None
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
            ids = np.load(self.ids_path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return (int(meta["generation"]), ids) if len(ids) == meta.get("count") else None

    def save(self, generation: int, ids: np.ndarray) -> None:
        with atomic_path(self.ids_path, suffix=".npy") as tmp:
            np.save(tmp, np.asarray(ids, np.int64))
        write_text(self.meta_path, json.dumps({"generation": int(generation), "count": len(ids)}))


def diff(held: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids to delete from and positions of ``wanted`` to add to an index holding ``held``."""
    gone = np.setdiff1d(held, wanted, assume_unique=True)
    new = np.flatnonzero(~np.isin(wanted, held, assume_unique=True))
    return gone, new
