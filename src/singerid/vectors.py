"""Embedding vectors: the one L2-normalisation and validity check used across singerid.

Embeddings leave the library as float32 ``(n, dim)`` rows of unit L2 norm; scores are dot
products of such rows (cosine similarities).
"""

from __future__ import annotations

import numpy as np

from .errors import DatasetError, SingerIdError


def l2_normalize(
    x,
    *,
    what: str | None = None,
    rows: int | None = None,
    error: type[SingerIdError] = DatasetError,
    dtype=np.float32,
) -> np.ndarray:
    """``x`` scaled to unit L2 norm along its last axis.

    Without ``what`` a zero vector stays zero (model outputs). With ``what`` (a name for the
    message) ``x`` must be a 2-D ``(n, dim)`` array, with ``rows`` rows when given, and every row
    finite and non-zero; otherwise ``error`` is raised naming ``what``.
    """
    z = np.asarray(x, dtype=dtype)
    norms = np.linalg.norm(z, axis=-1, keepdims=True)
    if what is None:
        return z / np.maximum(norms, 1e-12)
    if z.ndim != 2 or (rows is not None and len(z) != rows):
        expected = f"({rows}, dim)" if rows is not None else "(n, dim)"
        raise error(f"{what}: embeddings of shape {z.shape}; expected {expected}.")
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise error(f"{what}: {int(bad.sum())} embedding(s) are zero or not finite; check and re-embed their audio.")
    return z / norms
