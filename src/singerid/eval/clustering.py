"""Group embeddings by singer without labels: average-linkage agglomerative clustering on cosine
distance, cut at a given number of clusters or at a height chosen automatically, and the scores
that compare a clustering with known singers (purity, inverse purity, ARI, NMI).

The automatic cut comes from the model's calibration when there is one (the cosine distance
``1 - threshold`` at its :data:`CALIBRATED_CUT` operating point: merge while the groups' average
pair would be accepted as the same singer), otherwise from the data: the cut with the best
silhouette (:data:`AUTO_FROM_DATA`), or the widest gap between successive merge heights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

from ..errors import ConfigError
from ..vectors import l2_normalize

log = logging.getLogger(__name__)

CALIBRATED_CUT = "far0.01"
"""The calibrated operating point the cut is taken at: 1 % false accepts. In a collection most
pairs of recordings are by different singers, so a merge of two singers' groups is the costly
mistake; the equal-error threshold merges too eagerly and leaves too few clusters."""

# scikit-learn is imported where it is used: `singerid cluster`'s parser reads CUT_METHODS from
# here, and that parser must build without loading scikit-learn.

CUT_METHODS = ("silhouette", "gap")
"""Ways to choose the cut from the data alone."""
AUTO_FROM_DATA = "silhouette"
"""The data-driven cut used when there is no calibration (compared with the others in ``singerid cluster``'s report)."""
SILHOUETTE_CANDIDATES = 60
"""At most this many numbers of clusters are tried for the silhouette cut (all small ones, then geometric steps)."""
SILHOUETTE_MAX_POINTS = 3000
"""Silhouettes are computed on a seeded sample of at most this many points."""
SWEEP_MAX_CUTS = 400
"""The best-over-all-cuts score tries at most this many numbers of clusters."""


@dataclass(frozen=True)
class Clustering:
    """Cluster ``labels`` ``(n,)`` (0 is the largest cluster), a ``confidence`` in [0, 1] per point
    (how much nearer its own cluster's centre is than the next one's; 0 for a point alone), the
    cosine-distance ``threshold`` the tree was cut at (None for a fixed number of clusters) and
    the ``method`` that chose the cut (``n_clusters``, ``calibration``, ``silhouette``, ``gap``)."""

    labels: np.ndarray
    confidence: np.ndarray
    threshold: float | None
    method: str

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def sizes(self) -> list[int]:
        return np.bincount(self.labels).tolist() if len(self.labels) else []


def cosine_condensed(z: np.ndarray, block: int = 512) -> np.ndarray:
    """Pairwise cosine distances of the unit rows of ``z`` in scipy's condensed order, by blocks of
    matrix products (BLAS; never the full square matrix in memory)."""
    n = len(z)
    out = np.empty(n * (n - 1) // 2, np.float64)
    pos = 0
    for start in range(0, n, block):
        sims = z[start : start + block] @ z.T
        for i in range(start, min(start + block, n)):
            row = sims[i - start, i + 1 :]
            out[pos : pos + len(row)] = 1.0 - row
            pos += len(row)
    return np.clip(out, 0.0, 2.0, out=out)


def linkage_tree(x: np.ndarray) -> np.ndarray:
    """Average-linkage merge tree (scipy format) of the rows of ``x`` under cosine distance."""
    z = l2_normalize(x, what="embeddings to cluster", dtype=np.float64)
    if len(z) < 2:
        raise ConfigError(f"clustering needs at least 2 recordings, got {len(z)}.")
    return linkage(cosine_condensed(z), method="average")


def cut_at(tree: np.ndarray, height: float) -> np.ndarray:
    """Labels (0-based) of the clusters below cosine distance ``height``."""
    return fcluster(tree, t=height, criterion="distance") - 1


def cut_into(tree: np.ndarray, k: int) -> np.ndarray:
    """Labels (0-based) of the cut that gives ``k`` clusters (or the nearest possible)."""
    return fcluster(tree, t=k, criterion="maxclust") - 1


def _height_for(tree: np.ndarray, k: int) -> float:
    """A cut height between the merges that leave ``k`` clusters."""
    h = tree[:, 2]
    n = len(h) + 1
    lower = h[n - k - 1] if k < n else 0.0
    upper = h[n - k] if k > 1 else lower + 1e-6
    return float((lower + upper) / 2)


def gap_cut(tree: np.ndarray) -> float:
    """The height in the middle of the widest gap between successive merge heights."""
    h = tree[:, 2]
    if len(h) < 2:
        return float(h[0] + 1e-6)
    i = int(np.argmax(np.diff(h)))
    return float((h[i] + h[i + 1]) / 2)


def _candidates(n: int, limit: int) -> list[int]:
    """Numbers of clusters 2..n-1 to try: every one up to ``limit // 2``, then geometric steps."""
    top = n - 1
    if top < 2:
        return []
    small = list(range(2, min(top, limit // 2) + 1))
    big = np.unique(np.geomspace(max(small[-1], 2), top, limit - len(small)).round().astype(int)) if top > len(small) + 1 else []
    return sorted(set(small) | {int(k) for k in big if 2 <= k <= top})


def silhouette_cut(x: np.ndarray, tree: np.ndarray, seed: int = 0) -> float:
    """The height of the cut (2..n-1 clusters) with the best cosine silhouette."""
    from sklearn.metrics import silhouette_score

    n = len(x)
    rows = np.arange(n)
    if n > SILHOUETTE_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(n, SILHOUETTE_MAX_POINTS, replace=False))
    z = l2_normalize(np.asarray(x)[rows], dtype=np.float64)
    dist = np.clip(1.0 - z @ z.T, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    best, best_k = -np.inf, None
    for k in _candidates(n, SILHOUETTE_CANDIDATES):
        labels = cut_into(tree, k)[rows]
        # sklearn refuses one cluster, or as many clusters as points.
        if not 2 <= len(np.unique(labels)) < len(rows):
            continue
        value = silhouette_score(dist, labels, metric="precomputed")
        if value > best:
            best, best_k = value, k
    if best_k is None:
        return gap_cut(tree)
    return _height_for(tree, best_k)


def calibration_cut(calibration, seconds: float | None = None) -> float:
    """Cut height from a calibration (an object with ``threshold(which, durations)``) at its
    :data:`CALIBRATED_CUT` threshold for two items of ``seconds`` (a duration-aware calibration
    accepts longer recordings only at higher scores), or from a cosine threshold. A calibration
    without that operating point (fitted on too few trials, or written by hand) gives its
    equal-error threshold, with a warning."""
    if not hasattr(calibration, "threshold"):
        return float(1.0 - float(calibration))
    durations = None if seconds is None else (seconds, seconds)
    try:
        return float(1.0 - calibration.threshold(CALIBRATED_CUT, durations))
    except ConfigError:
        log.warning("the model's calibration stores no %s threshold; the clustering cut uses its equal-error threshold", CALIBRATED_CUT)
        return float(1.0 - calibration.threshold("eer", durations))


def cluster_embeddings(
    x: np.ndarray,
    n_clusters: int | None = None,
    calibration=None,
    *,
    method: str | None = None,
    seed: int = 0,
    seconds: float | None = None,
) -> Clustering:
    """Cluster the rows of ``x`` ``(n, dim)`` by cosine distance.

    ``n_clusters`` fixes the number of clusters. Otherwise the cut is taken from ``calibration``
    (a :class:`~singerid.model.calibration.Calibration` or a cosine threshold) when given, else by
    ``method`` (one of :data:`CUT_METHODS`; default :data:`AUTO_FROM_DATA`), seeded by ``seed``.
    ``seconds`` is the typical length of the items, at which a calibration's threshold is taken.
    """
    x = np.asarray(x, np.float32)
    if n_clusters is not None and not 1 <= n_clusters <= len(x):
        raise ConfigError(f"n_clusters={n_clusters}: choose between 1 and the number of recordings ({len(x)}).")
    if method is not None and method not in CUT_METHODS:
        raise ConfigError(f"unknown cut method {method!r}; choose one of: {', '.join(CUT_METHODS)}.")
    if len(x) == 1:
        return Clustering(np.zeros(1, np.int64), np.zeros(1), None, "n_clusters" if n_clusters else "single")
    tree = linkage_tree(x)
    if n_clusters is not None:
        labels, height, how = cut_into(tree, n_clusters), None, "n_clusters"
    else:
        if calibration is not None and method is None:
            height, how = calibration_cut(calibration, seconds), "calibration"
        else:
            how = method or AUTO_FROM_DATA
            height = silhouette_cut(x, tree, seed) if how == "silhouette" else gap_cut(tree)
        labels = cut_at(tree, height)
    labels = _by_size(labels)
    return Clustering(labels, confidence(x, labels), height, how)


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0.. from the largest (ties: first seen)."""
    _, first, inverse, counts = np.unique(labels, return_index=True, return_inverse=True, return_counts=True)
    order = np.lexsort((first, -counts))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64)


def confidence(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per point, the simplified silhouette against cluster centres, clipped to [0, 1]:
    ``(b - a) / max(a, b)`` with ``a``, ``b`` the cosine distances to its own and the nearest other centre."""
    z = l2_normalize(x, dtype=np.float64)
    k = int(labels.max()) + 1
    sums = np.zeros((k, z.shape[1]))
    np.add.at(sums, labels, z)
    sim = z @ l2_normalize(sums, dtype=np.float64).T
    a = 1.0 - sim[np.arange(len(z)), labels]
    if k == 1:
        return np.zeros(len(z))
    sim[np.arange(len(z)), labels] = -np.inf
    b = 1.0 - sim.max(1)
    out = np.clip((b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0, 1.0)
    out[np.bincount(labels)[labels] == 1] = 0.0
    return out


def clustering_scores(truth, labels) -> dict:
    """Purity, inverse purity, adjusted Rand index and NMI of ``labels`` against the ``truth`` classes."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    truth = np.unique(np.asarray(truth), return_inverse=True)[1]
    labels = np.asarray(labels)
    table = np.zeros((labels.max() + 1, truth.max() + 1), np.int64)
    np.add.at(table, (labels, truth), 1)
    n = len(labels)
    return {
        "purity": float(table.max(1).sum() / n),
        "inverse_purity": float(table.max(0).sum() / n),
        "ari": float(adjusted_rand_score(truth, labels)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
        "n_clusters": int(len(np.unique(labels))),
        "n_classes": int(table.shape[1]),
    }


def best_cut(tree: np.ndarray, truth) -> dict:
    """The cut (over all numbers of clusters, or :data:`SWEEP_MAX_CUTS` of them) with the best ARI."""
    from sklearn.metrics import adjusted_rand_score

    n = len(tree) + 1
    ks = range(1, n + 1) if n <= SWEEP_MAX_CUTS else sorted({1, n, *np.unique(np.geomspace(1, n, SWEEP_MAX_CUTS).round().astype(int))})
    best = max((adjusted_rand_score(truth, cut_into(tree, k)), k) for k in ks)
    return {"ari": float(best[0]), "n_clusters": int(best[1]), "threshold": _height_for(tree, best[1])}
