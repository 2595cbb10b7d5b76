"""Singer identification on frozen embeddings: linear, k-nearest-neighbour and centroid probes.

All probes share the same fixed, seeded, singer-stratified folds, built so that no recording
(source file) has segments on both sides of a split: a probe must recognise the singer, not
the file. A singer with a single recording cannot be both trained on and tested on under
that rule, so such singers are excluded from every fold; the folds report them
(:attr:`Folds.excluded_singers`) and a warning gives their count.

Folds are built here rather than with scikit-learn's ``StratifiedGroupKFold`` because that
splitter may place all recordings of a singer in one test fold, leaving the singer absent
from training; the assignment below rules this out by construction.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from ..errors import DatasetError
from ..vectors import l2_normalize
from .metrics import accuracy_ci


class Folds(list):
    """A list of ``(train_idx, test_idx)`` pairs plus the singers left out of every fold."""

    def __init__(self, folds=(), excluded_singers: list[str] | None = None, n_excluded_segments: int = 0):
        super().__init__(folds)
        self.excluded_singers: list[str] = list(excluded_singers or [])
        self.n_excluded_segments = n_excluded_segments


def recording_folds(singers, recordings, n_folds: int = 5, seed: int = 0) -> Folds:
    """Split segment indices into ``n_folds`` folds; each recording lies wholly in one test fold.

    For every singer (with two or more recordings) its recordings are taken largest first,
    ties in random order, and each goes to the fold holding the fewest of that singer's
    segments so far (ties: fewest segments overall, then random). With two or more
    recordings a singer therefore lands in at least two folds, so each of its test folds
    leaves some of its recordings for training.
    """
    labels = np.asarray(singers).astype(str)
    recs = np.asarray(recordings).astype(str)
    if labels.ndim != 1 or len(labels) != len(recs):
        raise DatasetError(
            f"{len(labels)} singer labels but {len(recs)} recording labels; pass one of each per segment."
        )
    if n_folds < 2:
        raise DatasetError(f"n_folds must be >= 2, got {n_folds}.")
    owners: dict[str, set[str]] = {}
    for s, r in zip(labels, recs):
        owners.setdefault(r, set()).add(s)
    shared = sorted(r for r, o in owners.items() if len(o) > 1)
    if shared:
        raise DatasetError(
            f"{len(shared)} recording(s) carry more than one singer label (e.g. {shared[0]}); "
            "fix the singer column of the manifest."
        )
    rng = np.random.default_rng(seed)
    fold_of = np.full(len(labels), -1)
    load = np.zeros(n_folds, dtype=np.int64)
    excluded = []
    for singer in sorted(set(labels)):
        mine = labels == singer
        names, sizes = np.unique(recs[mine], return_counts=True)
        if len(names) < 2:
            excluded.append(singer)
            continue
        per_fold = np.zeros(n_folds, dtype=np.int64)
        for r in np.lexsort((rng.permutation(len(names)), -sizes)):
            f = np.lexsort((rng.permutation(n_folds), load, per_fold))[0]
            fold_of[mine & (recs == names[r])] = f
            per_fold[f] += sizes[r]
            load[f] += sizes[r]
    if len(set(labels)) - len(excluded) < 2:
        raise DatasetError(
            f"identification folds need at least 2 singers with 2 or more recordings each, got "
            f"{len(set(labels)) - len(excluded)}; add recordings (a singer's songs must be separate files)."
        )
    n_excl = int(np.sum(fold_of < 0))
    if excluded:
        warnings.warn(
            f"{len(excluded)} singer(s) with a single recording ({n_excl} segments) left out of the "
            f"identification folds: {', '.join(excluded[:5])}{' ...' if len(excluded) > 5 else ''}.",
            stacklevel=2,
        )
    folds = [(np.flatnonzero((fold_of >= 0) & (fold_of != f)), np.flatnonzero(fold_of == f)) for f in range(n_folds)]
    return Folds([(tr, te) for tr, te in folds if len(te)], excluded, n_excl)


# A scorer fits on (train embeddings, train class codes, number of classes) and returns
# class scores (n_test, n_classes) for the test embeddings; a higher score is a better class.
Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def _run(name: str, scorer: Scorer, embeddings, singers, recordings, n_folds: int, seed: int) -> dict:
    z = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(singers).astype(str)
    if z.ndim != 2 or len(z) != len(labels):
        raise DatasetError(f"embeddings of shape {z.shape} do not match {len(labels)} singer labels.")
    if not np.all(np.isfinite(z)):
        raise DatasetError("embeddings contain NaN or inf; re-embed those segments.")
    folds = recording_folds(labels, recordings, n_folds=n_folds, seed=seed)
    classes, y = np.unique(labels, return_inverse=True)
    top1, top5 = [], []
    correct = np.zeros(len(z), dtype=bool)
    tested = np.zeros(len(z), dtype=bool)
    for train, test in folds:
        scores = scorer(z[train], y[train], z[test], len(classes))
        # A class absent from training must never be predicted.
        scores[:, np.setdiff1d(np.arange(len(classes)), y[train])] = -np.inf
        # Rank of the true class; equal scores are ordered by class index, as argmax does.
        true = scores[np.arange(len(test)), y[test]][:, None]
        earlier = np.arange(len(classes))[None, :] < y[test][:, None]
        rank = np.sum((scores > true) | ((scores == true) & earlier), axis=1)
        top1.append(float(np.mean(rank < 1)))
        top5.append(float(np.mean(rank < 5)))
        correct[test] = rank < 1
        tested[test] = True
    low, high = accuracy_ci(correct[tested], labels[tested], seed=seed)
    return {
        "probe": name,
        "n_folds": len(folds),
        "n_segments": int(tested.sum()),
        "n_singers": int(len(np.unique(labels[tested]))),
        "chance_top1": 1.0 / len(np.unique(labels[tested])),
        "top1_mean": float(np.mean(top1)),
        "top1_std": float(np.std(top1)),
        "top5_mean": float(np.mean(top5)),
        "top5_std": float(np.std(top5)),
        "top1_per_fold": top1,
        "top5_per_fold": top5,
        "top1_pooled": float(correct[tested].mean()),
        "top1_pooled_ci95": [low, high],
        "excluded_singers": folds.excluded_singers,
        "n_excluded_segments": folds.n_excluded_segments,
    }


def _linear_scorer(seed: int, c: float, max_iter: int) -> Scorer:
    def score(train_x, train_y, test_x, n_classes):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter, random_state=seed))
        model.fit(train_x, train_y)
        out = np.full((len(test_x), n_classes), -np.inf)
        out[:, model.classes_] = model.predict_log_proba(test_x)
        return out

    return score


def _knn_scorer(k: int) -> Scorer:
    def score(train_x, train_y, test_x, n_classes):
        sims = l2_normalize(test_x, dtype=np.float64) @ l2_normalize(train_x, dtype=np.float64).T
        nearest = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(test_x), n_classes))
        np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[nearest]), 1.0)
        # Ties in votes (and classes without votes) are ordered by the class's closest item;
        # similarities lie in [-1, 1], so the tie-break stays below one vote.
        closest = np.full((len(test_x), n_classes), -1.0)
        for c in np.unique(train_y):
            closest[:, c] = sims[:, train_y == c].max(axis=1)
        return votes + (closest + 1.0) / 3.0

    return score


def _centroid_scorer(train_x, train_y, test_x, n_classes):
    centroids = np.zeros((n_classes, train_x.shape[1]))
    np.add.at(centroids, train_y, l2_normalize(train_x, dtype=np.float64))
    return l2_normalize(test_x, dtype=np.float64) @ l2_normalize(centroids, dtype=np.float64).T


def linear_probe(
    embeddings, singers, recordings, n_folds: int = 5, seed: int = 0, c: float = 1.0, max_iter: int = 2000
) -> dict:
    """Logistic regression on standardised embeddings; top-1/top-5 accuracy per fold, mean and std."""
    return _run("linear", _linear_scorer(seed, c, max_iter), embeddings, singers, recordings, n_folds, seed)


def knn_probe(embeddings, singers, recordings, n_folds: int = 5, seed: int = 0, k: int = 5) -> dict:
    """Majority vote of the ``k`` most cosine-similar training segments (same folds and outputs)."""
    if k < 1:
        raise DatasetError(f"knn_probe needs k >= 1, got {k}.")
    return _run(f"knn{k}", _knn_scorer(k), embeddings, singers, recordings, n_folds, seed)


def centroid_probe(embeddings, singers, recordings, n_folds: int = 5, seed: int = 0) -> dict:
    """Nearest singer centroid (mean of unit training embeddings) by cosine (same folds and outputs)."""
    return _run("centroid", _centroid_scorer, embeddings, singers, recordings, n_folds, seed)
