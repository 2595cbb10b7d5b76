"""Catalogue store and search: transactions, dedupe, labels, windows; checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.catalog import Catalog, CatalogError
from singerid.catalog.store import VECTOR_FILES
from singerid.vectors import l2_normalize

DIM = 8


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return l2_normalize(np.random.default_rng(seed).normal(size=(n, DIM)))


def _records(n: int, singers=None) -> list[dict]:
    return [{"path": f"/music/{i}.wav", "singer": None if singers is None else singers[i]} for i in range(n)]


@pytest.fixture(params=["exact", "faiss", "qdrant"])
def catalog(tmp_path, request):
    """The same tests run on every search backend (Qdrant in its local mode, no server)."""
    pytest.importorskip({"exact": "numpy", "faiss": "faiss", "qdrant": "qdrant_client"}[request.param])
    with Catalog.create(tmp_path / "cat", "fp-a", DIM, backend=request.param) as cat:
        yield cat


def test_search_ranks_by_cosine_like_a_brute_force_search(catalog):
    x = _vectors(30)
    ids = catalog.add_vectors(x, _records(30))
    q = _vectors(1, seed=5)[0]
    hits = catalog.search(q, k=7)
    expected = np.argsort(-(x @ q), kind="stable")[:7]
    assert [h.record_id for h in hits] == [ids[i] for i in expected]
    assert [h.path for h in hits] == [f"/music/{i}.wav" for i in expected]
    np.testing.assert_allclose([h.score for h in hits], (x @ q)[expected], rtol=1e-5)


def test_vectors_come_back_normalised_with_their_ids(catalog):
    raw = np.random.default_rng(1).normal(size=(5, DIM)) * 3
    ids = catalog.add_vectors(raw, _records(5))
    got_ids, got = catalog.vectors()
    assert got_ids.tolist() == ids and got.dtype == np.float32
    np.testing.assert_allclose(got, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-5)


def test_search_by_singer_scores_the_mean_of_each_singers_vectors(catalog):
    x = _vectors(6, seed=2)
    catalog.add_vectors(x, _records(6, ["ann", "bob", "ann", None, "bob", "bob"]))
    q = _vectors(1, seed=3)[0]
    hits = catalog.search(q, k=5, by="singer")
    ann, bob = x[[0, 2]].mean(0), x[[1, 4, 5]].mean(0)
    want = {"ann": ann @ q / np.linalg.norm(ann), "bob": bob @ q / np.linalg.norm(bob)}
    assert [h.singer for h in hits] == sorted(want, key=lambda s: -want[s])
    assert all(h.record_id is None for h in hits)
    np.testing.assert_allclose([h.score for h in hits], [want[h.singer] for h in hits], rtol=1e-5)
    assert catalog.singers() == {"ann": 2, "bob": 3}


def test_an_empty_catalogue_finds_nothing(catalog):
    q = _vectors(1)[0]
    assert catalog.search(q, by="singer") == []
    assert catalog.search(q) == []
    assert catalog.search(q, windows=True) == []
    assert catalog.vectors()[1].shape == (0, DIM)


def test_remove_by_id_path_and_singer(catalog):
    ids = catalog.add_vectors(_vectors(5), _records(5, ["a", "b", "b", None, None]))
    assert catalog.remove(ids=[ids[0]]) == 1
    assert catalog.remove(paths=["/music/3.wav"]) == 1
    assert catalog.remove(singer="b") == 2
    assert [r.id for r in catalog.records()] == [ids[4]]
    assert [h.record_id for h in catalog.search(_vectors(1)[0], k=10)] == [ids[4]]
    assert catalog.remove(ids=[12345]) == 0


def test_get_returns_the_record_and_refuses_an_unknown_id(catalog):
    ids = catalog.add_vectors(_vectors(2), [{"path": "/a.wav", "singer": "x", "song": "s1", "offset": 1.5, "duration": 4.0}, {"path": "/b.wav"}])
    rec = catalog.get(ids[0])
    assert (rec.path, rec.singer, rec.song, rec.offset, rec.duration, rec.has_windows) == ("/a.wav", "x", "s1", 1.5, 4.0, False)
    with pytest.raises(CatalogError, match="no entry with id"):
        catalog.get(ids[1] + 100)


def test_open_checks_the_model_fingerprint(tmp_path):
    Catalog.create(tmp_path / "c", "fp-a", DIM).close()
    Catalog.open(tmp_path / "c", "fp-a").close()
    with pytest.raises(CatalogError, match="another model"):
        Catalog.open(tmp_path / "c", "fp-b")
    with pytest.raises(CatalogError, match="not a catalogue"):
        Catalog.open(tmp_path / "nothing")
    with pytest.raises(CatalogError, match="already exists"):
        Catalog.create(tmp_path / "c", "fp-a", DIM)


def test_rows_of_an_uncommitted_write_are_ignored_and_overwritten(tmp_path):
    folder = tmp_path / "c"
    with Catalog.create(folder, "fp", DIM) as cat:
        x = _vectors(3)
        cat.add_vectors(x, _records(3))
    # A writer killed after writing vectors but before its commit leaves extra rows in the file.
    with open(folder / VECTOR_FILES["recording"], "ab") as f:
        f.write(np.ones((2, DIM), np.float32).tobytes())
    with Catalog.open(folder) as cat:
        assert cat.info()["count"] == 3
        y = _vectors(2, seed=9)
        cat.add_vectors(y, _records(2))
        np.testing.assert_allclose(cat.vectors()[1], np.concatenate([x, y]), rtol=1e-6)
    assert (folder / VECTOR_FILES["recording"]).stat().st_size == 5 * DIM * 4


def test_a_failed_write_leaves_nothing_behind(catalog):
    catalog.add_vectors(_vectors(2), _records(2))
    with pytest.raises(CatalogError, match="'path'"):
        catalog.add_vectors(_vectors(2), [{"path": "/x.wav"}, {"singer": "no path"}])
    with pytest.raises(CatalogError, match="zero or not finite"):
        catalog.add_vectors(np.zeros((1, DIM)), _records(1))
    assert len(catalog) == 2 and catalog.vectors()[1].shape == (2, DIM)


def test_a_reader_sees_what_another_process_committed(tmp_path):
    folder = tmp_path / "c"
    writer = Catalog.create(folder, "fp", DIM)
    reader = Catalog.open(folder, readonly=True)
    x = _vectors(4)
    writer.add_vectors(x[:2], _records(2))
    assert len(reader.search(x[0], k=10)) == 2
    writer.add_vectors(x[2:], _records(2))
    hits = reader.search(x[3], k=10)
    assert len(hits) == 4 and hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(CatalogError, match="read-only"):
        reader.remove(ids=[1])
    reader.close()
    writer.close()


def test_window_search_returns_the_best_window_of_each_recording(catalog):
    win = _vectors(5, seed=4)
    starts, ends = np.arange(5) * 2.0, np.arange(5) * 2.0 + 4.0
    ids = catalog.add_vectors(
        np.stack([win[:3].mean(0), win[3:].mean(0)]), _records(2),
        windows=[(win[:3], starts[:3], ends[:3]), (win[3:], starts[3:], ends[3:])],
    )
    hits = catalog.search(win[1], k=5, windows=True)
    assert [h.record_id for h in hits] == [ids[0], ids[1]]
    assert (hits[0].start, hits[0].end) == (2.0, 6.0) and hits[0].score == pytest.approx(1.0, abs=1e-5)
    second = int(np.argmax(win[3:] @ win[1]))
    assert hits[1].start == starts[3 + second] and hits[1].score == pytest.approx(float(win[3 + second] @ win[1]), abs=1e-5)
    assert catalog.get(ids[0]).has_windows
    catalog.remove(ids=[ids[0]])
    assert [h.record_id for h in catalog.search(win[1], k=5, windows=True)] == [ids[1]]


def test_info_counts_entries_and_singers(catalog):
    catalog.add_vectors(_vectors(3), _records(3, ["a", "a", None]))
    info = catalog.info()
    assert (info["count"], info["singers"], info["dim"], info["model_fingerprint"], info["backend"]) == (3, 1, DIM, "fp-a", catalog.backend)
    assert info["bytes"] >= 3 * DIM * 4


def test_threads_search_while_one_adds(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    x = _vectors(40, seed=11)
    with Catalog.create(tmp_path / "c", "fp", DIM) as cat:
        cat.add_vectors(x[:10], _records(10))

        def search(i: int) -> int:
            hits = cat.search(x[i % 10], k=50)
            assert hits[0].score == pytest.approx(1.0, abs=1e-5)
            return len(hits)

        with ThreadPoolExecutor(4) as pool:
            seen = pool.map(search, range(40))
            for i in range(10, 40, 5):
                cat.add_vectors(x[i : i + 5], _records(5))
            counts = list(seen)
        assert all(10 <= c <= 40 for c in counts) and len(cat) == 40
