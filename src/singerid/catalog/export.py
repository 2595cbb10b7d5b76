"""Export a catalogue's entries and vectors to one file: ``.npz`` (numpy) or ``.parquet`` (pyarrow)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .store import CatalogError

EXPORT_FORMATS = (".npz", ".parquet")
COLUMNS = ("id", "path", "content_hash", "offset", "duration", "singer", "song", "added")


def export_catalog(catalog, out: str | os.PathLike) -> Path:
    """Write every entry (metadata columns + ``vector``) of ``catalog`` to ``out``; the suffix picks the format."""
    out = Path(out)
    if out.suffix not in EXPORT_FORMATS:
        raise CatalogError(f"{out}: export to a {' or '.join(EXPORT_FORMATS)} file (the name picks the format).")
    ids, vectors = catalog.vectors()
    by_id = {r.id: r for r in catalog.records()}
    keep = np.array([int(i) in by_id for i in ids], bool)
    ids, vectors = ids[keep], vectors[keep]
    records = [by_id[int(i)] for i in ids]
    columns = {c: [getattr(r, c) for r in records] for c in COLUMNS}
    meta = {"model_fingerprint": catalog.model_fingerprint, "dim": catalog.dim, "count": len(records)}
    if out.suffix == ".npz":
        arrays = {
            "ids": ids.astype(np.int64),
            "vectors": vectors,
            "offset": np.array(columns["offset"], np.float64),
            "duration": np.array([np.nan if d is None else d for d in columns["duration"]], np.float64),
            "added": np.array(columns["added"], np.float64),
            **{c: np.array(["" if v is None else v for v in columns[c]], dtype=str) for c in ("path", "content_hash", "singer", "song")},
        }
        with atomic_path(out, suffix=".npz") as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        return out
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise CatalogError(f"{out}: Parquet export needs `pip install 'singerid[parquet]'` ({exc}).") from exc
    table = pa.table(
        {**columns, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), catalog.dim)},
    ).replace_schema_metadata({"singerid": json.dumps(meta)})
    with atomic_path(out, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return out
