"""Search backends against an independent brute-force search: exactness, approximate recall, removal, reuse from disk."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.catalog import CatalogError
from singerid.catalog.backends import make_backend, top_k
from singerid.vectors import l2_normalize


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Vectors around 50 seeded centres, like recordings of 50 singers."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return l2_normalize(centres[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, dim)))


def _brute(x: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return ids[np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]]


def test_top_k_matches_a_full_sort_and_pads():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(4, 30)).astype(np.float32)
    ids = np.arange(100, 130)
    s, i = top_k(scores, ids, 5)
    np.testing.assert_array_equal(i, ids[np.argsort(-scores, axis=1)[:, :5]])
    np.testing.assert_allclose(s, -np.sort(-scores, axis=1)[:, :5])
    s, i = top_k(scores[:, :3], ids[:3], 5)
    assert (i[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()


@pytest.mark.parametrize("name", ["exact", "qdrant"])
def test_exact_backends_agree_with_brute_force(tmp_path, name):
    pytest.importorskip({"exact": "numpy", "qdrant": "qdrant_client"}[name])
    x = _clustered(300, 16)
    ids = np.arange(300) * 3 + 1
    backend = make_backend(name, tmp_path, "recording", 16)
    backend.sync(ids, x, generation=1)
    q = _clustered(5, 16, seed=1)
    _, got = backend.search(q, 10)
    np.testing.assert_array_equal(got, _brute(x, ids, q, 10))
    keep = np.arange(300) % 2 == 0
    backend.sync(ids[keep], x[keep], generation=2)
    _, got = backend.search(q, 10)
    np.testing.assert_array_equal(got, _brute(x[keep], ids[keep], q, 10))
    backend.close()


def test_faiss_ivf_reaches_its_recall_and_forgets_removed_ids(tmp_path):
    pytest.importorskip("faiss")
    dim, n = 16, 20_000
    x = _clustered(n, dim)
    ids = np.arange(n, dtype=np.int64)
    backend = make_backend("faiss", tmp_path, "recording", dim)
    backend.sync(ids, x, generation=1)
    assert type(backend.index).__name__ == "IndexIVFFlat"
    q = _clustered(200, dim, seed=2)
    _, got = backend.search(q, 10)
    want = _brute(x, ids, q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert recall >= 0.95
    keep = ids % 3 != 0
    backend.sync(ids[keep], x[keep], generation=2)
    _, got = backend.search(q, 10)
    assert not np.isin(got, ids[~keep]).any()
    # A fresh backend at the same generation reuses the index on disk (same answers).
    again = make_backend("faiss", tmp_path, "recording", dim)
    again.sync(ids[keep], x[keep], generation=2)
    np.testing.assert_array_equal(again.search(q, 10)[1], got)


def test_an_unknown_backend_is_named_in_the_error(tmp_path):
    with pytest.raises(CatalogError, match="unknown catalogue backend 'annoy'"):
        make_backend("annoy", tmp_path, "recording", 4)
