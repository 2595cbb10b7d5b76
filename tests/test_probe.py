from __future__ import annotations

import numpy as np
import pytest

from singerid.errors import DatasetError
from singerid.eval.probe import centroid_probe, knn_probe, linear_probe, recording_folds

PROBES = [linear_probe, knn_probe, centroid_probe]


def dataset(n_singers=8, recordings=(3,), segs=5, seed=0, spread=0.0):
    """Singer ``sK`` with ``recordings[K % len]`` files of ``segs`` segments; embeddings = singer centre + noise."""
    rng = np.random.default_rng(seed)
    singers, recs = [], []
    for k in range(n_singers):
        for r in range(recordings[k % len(recordings)]):
            singers += [f"s{k}"] * segs
            recs += [f"s{k}_r{r}.wav"] * segs
    singers, recs = np.array(singers), np.array(recs)
    centres = rng.normal(size=(n_singers, 16))
    codes = np.array([int(s[1:]) for s in singers])
    emb = centres[codes] + spread * rng.normal(size=(len(singers), 16))
    return emb.astype(np.float32), singers, recs


def test_folds_keep_recordings_whole_and_train_every_test_singer():
    _, singers, recs = dataset(n_singers=9, recordings=(2, 3, 7), segs=3)
    folds = recording_folds(singers, recs, n_folds=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([te for _, te in folds])
    assert np.array_equal(np.sort(tested), np.arange(len(singers)))  # each segment tested once
    for train, test in folds:
        assert not set(recs[train]) & set(recs[test])
        assert set(singers[test]) <= set(singers[train])


def test_folds_are_stratified_by_singer():
    _, singers, recs = dataset(n_singers=6, recordings=(5,), segs=4)
    for _, test in recording_folds(singers, recs, n_folds=5, seed=3):
        # Five recordings per singer over five folds: one recording of every singer per fold.
        assert sorted(np.unique(singers[test], return_counts=True)[1]) == [4] * 6


def test_single_recording_singers_are_excluded_and_reported():
    _, singers, recs = dataset(n_singers=5, recordings=(1, 3, 3), segs=2)
    with pytest.warns(UserWarning, match=r"2 singer\(s\) with a single recording \(4 segments\)"):
        folds = recording_folds(singers, recs, n_folds=3)
    assert folds.excluded_singers == ["s0", "s3"] and folds.n_excluded_segments == 4
    used = np.concatenate([np.concatenate(f) for f in folds])
    assert not set(singers[used]) & {"s0", "s3"}


def test_folds_are_seeded():
    _, singers, recs = dataset(n_singers=6, recordings=(4,), segs=2)
    a = recording_folds(singers, recs, seed=1)
    b = recording_folds(singers, recs, seed=1)
    c = recording_folds(singers, recs, seed=2)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_fold_errors():
    _, singers, recs = dataset(n_singers=3, recordings=(1,), segs=2)
    with pytest.raises(DatasetError, match="at least 2 singers with 2 or more recordings"):
        recording_folds(singers, recs)
    bad = recs.copy()
    bad[-1] = recs[0]  # a file labelled with two singers
    with pytest.raises(DatasetError, match="more than one singer"):
        recording_folds(singers, bad)
    with pytest.raises(DatasetError, match="n_folds"):
        recording_folds(singers, recs, n_folds=1)


@pytest.mark.parametrize("probe", PROBES)
def test_separable_embeddings_are_identified(probe):
    emb, singers, recs = dataset(spread=0.05)
    result = probe(emb, singers, recs, n_folds=3)
    assert result["top1_mean"] == 1.0 and result["top1_per_fold"] == [1.0] * 3
    assert result["top1_pooled_ci95"] == [1.0, 1.0]
    assert result["n_segments"] == len(singers) and result["n_singers"] == 8


@pytest.mark.parametrize("probe", PROBES)
def test_random_embeddings_are_near_chance(probe):
    rng = np.random.default_rng(5)
    _, singers, recs = dataset(n_singers=10, recordings=(4,), segs=5)
    emb = rng.normal(size=(len(singers), 16)).astype(np.float32)
    result = probe(emb, singers, recs, n_folds=4)
    assert result["chance_top1"] == pytest.approx(0.1)
    assert result["top1_mean"] < 0.25
    assert result["top5_mean"] < 0.75
    assert all(t5 >= t1 for t1, t5 in zip(result["top1_per_fold"], result["top5_per_fold"]))


@pytest.mark.parametrize("probe", PROBES)
def test_probe_is_deterministic_and_top5_bounds_top1(probe):
    emb, singers, recs = dataset(n_singers=7, recordings=(2, 3), spread=1.2, seed=2)
    a = probe(emb, singers, recs, n_folds=3, seed=4)
    b = probe(emb, singers, recs, n_folds=3, seed=4)
    assert a == b
    assert 0.3 < a["top1_mean"] < 1.0  # noisy but informative
    assert all(t5 >= t1 for t1, t5 in zip(a["top1_per_fold"], a["top5_per_fold"]))
    assert a["top5_mean"] > a["top1_mean"]


def test_collapsed_embeddings_do_not_score_perfectly():
    _, singers, recs = dataset(n_singers=6, recordings=(3,), segs=4)
    flat = np.ones((len(singers), 8), np.float32)
    for probe in (knn_probe, centroid_probe):
        assert probe(flat, singers, recs, n_folds=3)["top1_mean"] <= 1 / 6 + 1e-9


@pytest.mark.parametrize("seed", range(3))
def test_centroid_probe_hand_computed(seed):
    # a: files at 0 and 100 degrees; b: files at 40 and 60. Two folds hold one file of each singer.
    # Whatever the split, each a-file's nearest training file is a b-file (cos <= -0.17 to the
    # other a-file), and each b-file's nearest is the other b-file (cos 20 deg): a wrong, b right.
    angles = np.radians([0, 100, 40, 60])
    emb = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    singers = np.array(["a", "a", "b", "b"])
    recs = np.array(["a1", "a2", "b1", "b2"])
    result = centroid_probe(emb, singers, recs, n_folds=2, seed=seed)
    assert result["top1_per_fold"] == [0.5, 0.5] and result["top5_per_fold"] == [1.0, 1.0]
