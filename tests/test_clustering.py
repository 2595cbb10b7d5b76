"""Clustering by singer: cuts on separable data, guards at the edges, and scores against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.errors import ConfigError
from singerid.eval.clustering import (
    best_cut,
    cluster_embeddings,
    clustering_scores,
    confidence,
    cosine_condensed,
    linkage_tree,
)


def _blobs(k: int = 4, per: int = 6, spread: float = 0.15, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:k]  # orthonormal: cosine distance 1 apart
    truth = np.repeat(np.arange(k), per)
    return centres[truth] + spread * rng.normal(size=(k * per, dim)) / np.sqrt(dim), truth


@pytest.mark.parametrize("how", [dict(method="silhouette"), dict(method="gap"), dict(calibration=0.5), dict(n_clusters=4)])
def test_separable_singers_are_found_by_every_cut(how):
    x, truth = _blobs()
    result = cluster_embeddings(x, **how)
    assert clustering_scores(truth, result.labels)["ari"] == pytest.approx(1.0)
    assert result.n_clusters == 4 and result.sizes() == [6, 6, 6, 6]
    assert result.method == ("n_clusters" if "n_clusters" in how else how.get("method", "calibration"))
    assert (result.confidence > 0.5).all()


def test_the_calibrated_threshold_sets_the_cut_height():
    x, _ = _blobs()
    assert cluster_embeddings(x, calibration=0.5).threshold == pytest.approx(0.5)
    # Everything within cosine distance 1.5 merges: one cluster.
    assert cluster_embeddings(x, calibration=-0.5).n_clusters == 1

    class Cal:
        def threshold(self, which="eer", durations=None):
            return 0.9999

    # At distance 1e-4 nothing merges: every point is its own cluster.
    assert cluster_embeddings(x, calibration=Cal()).n_clusters == len(x)


def test_a_duration_aware_calibration_cuts_at_the_threshold_for_the_items_length():
    from singerid.eval.calibration import fit_calibration

    rng = np.random.default_rng(0)
    # Whole songs score higher than 4 s clips for targets and non-targets alike.
    scores = np.concatenate([rng.normal(0.7, 0.08, 500), rng.normal(0.4, 0.1, 500), rng.normal(0.95, 0.02, 500), rng.normal(0.82, 0.05, 500)])
    labels = np.tile(np.repeat([True, False], 500), 2)
    durations = np.repeat([[4.0, 4.0], [60.0, 60.0]], 1000, axis=0)
    cal = fit_calibration(scores, labels, durations=durations)
    x, _ = _blobs()
    songs = cluster_embeddings(x, calibration=cal, seconds=60.0).threshold
    # The cut is the 1 %-false-accept threshold, stricter than the equal-error one.
    assert songs == pytest.approx(1.0 - cal.threshold("far0.01", (60.0, 60.0)))
    assert songs < 1.0 - cal.threshold("eer", (60.0, 60.0))
    assert cluster_embeddings(x, calibration=cal).threshold == pytest.approx(1.0 - cal.threshold("far0.01"))
    assert songs < 1.0 - cal.threshold("far0.01") - 0.1


def test_a_calibration_without_the_false_accept_point_cuts_at_its_equal_error_threshold(caplog):
    from singerid.model.calibration import Calibration

    x, _ = _blobs()
    cal = Calibration(a=20.0, b=-10.0, thresholds={"eer": 0.6})
    with caplog.at_level("WARNING", logger="singerid"):
        assert cluster_embeddings(x, calibration=cal).threshold == pytest.approx(0.4)
    assert "no far0.01 threshold" in caplog.text


def test_small_inputs_and_bad_settings():
    x, _ = _blobs(k=2, per=1)
    assert cluster_embeddings(x, method="silhouette").n_clusters in (1, 2)  # no 2..n-1 candidate: falls back to the gap cut
    assert cluster_embeddings(x[:1]).labels.tolist() == [0]
    with pytest.raises(ConfigError, match="n_clusters=9"):
        cluster_embeddings(x, n_clusters=9)
    with pytest.raises(ConfigError, match="unknown cut method"):
        cluster_embeddings(x, method="elbow")


def test_labels_are_numbered_from_the_largest_cluster():
    x, _ = _blobs(k=3, per=4)
    x = np.concatenate([x[:4], x[4:8][:2], x[8:]])  # sizes 4, 2, 4
    result = cluster_embeddings(x, n_clusters=3)
    assert result.labels.tolist() == [0] * 4 + [2] * 2 + [1] * 4


def test_scores_match_hand_computation():
    truth = ["a", "a", "a", "b", "b", "c"]
    labels = np.array([0, 0, 1, 1, 1, 1])
    s = clustering_scores(truth, labels)
    # Cluster 0 = {a, a} (2 right), cluster 1 = {a, b, b, c} (2): purity 4/6.
    # Class a best matched by cluster 0 (2), b by 1 (2), c by 1 (1): inverse purity 5/6.
    assert s["purity"] == pytest.approx(4 / 6) and s["inverse_purity"] == pytest.approx(5 / 6)
    # ARI by hand: pairs-in-cells sum C(2,2)+C(1,2)+C(2,2)+C(1,2)=2; rows C(2,2)+C(4,2)=7; cols C(3,2)+C(2,2)+0=4; C(6,2)=15.
    expected = (2 - 7 * 4 / 15) / ((7 + 4) / 2 - 7 * 4 / 15)
    assert s["ari"] == pytest.approx(expected)


def test_confidence_is_the_simplified_silhouette():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = np.array([0, 0, 1, 1])
    c = confidence(x, labels)
    centre1 = (np.array([0.0, 1.0]) + np.array([0.6, 0.8])) / np.linalg.norm([0.6, 1.8])
    a = 1 - np.array([0.0, 1.0]) @ centre1
    b = 1 - 0.0  # to centre 0 = (1, 0)
    assert c[2] == pytest.approx((b - a) / max(a, b))
    assert c[0] == pytest.approx(1.0)  # on its own centre: a = 0


def test_best_cut_finds_the_true_partition():
    x, truth = _blobs(k=5, per=3)
    best = best_cut(linkage_tree(x), truth)
    assert best["ari"] == pytest.approx(1.0) and best["n_clusters"] == 5


def test_condensed_cosine_distances_match_scipy():
    from scipy.spatial.distance import pdist

    z = np.random.default_rng(4).normal(size=(37, 5))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine_condensed(z, block=8), pdist(z, "cosine"), atol=1e-12)
