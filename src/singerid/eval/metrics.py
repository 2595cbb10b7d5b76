"""Evaluation metrics on cosine scores and embeddings.

- Verification: :func:`det_curve`, :func:`eer`, :func:`min_dcf`.
- Similarity ranking: :func:`mean_normalized_rank` (the paper's MNR).
- Retrieval: :func:`recall_at_k`, :func:`mean_average_precision` (faiss or numpy).
- Geometry: :func:`alignment`, :func:`uniformity` (Wang & Isola, 2020).
- Uncertainty: :func:`bootstrap_ci` over singers, with :func:`eer_ci` and :func:`accuracy_ci`.

A trial is accepted when its score is ``>= threshold``. Rankings compare similarities computed
in float64 and rounded to float32, so round-off cannot split the tie between identical
embeddings (a collapsed encoder must not be ranked by accident).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DatasetError, TrialsError
from ..vectors import l2_normalize

# ---------------------------------------------------------------------------------------------
# Verification


def _scores_labels(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if len(s) != len(y):
        raise TrialsError(f"{len(s)} scores but {len(y)} labels; pass one label per trial.")
    if not np.all(np.isfinite(s)):
        raise TrialsError("scores contain NaN or inf; check the embeddings of those trials.")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise TrialsError(
            f"need both target and non-target trials, got {int(y.sum())} target of {len(y)}; "
            "regenerate the trial list with both kinds."
        )
    return s, y


def det_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-acceptance and false-rejection rates at every distinct score used as threshold.

    Returns ``(far, frr, thresholds)`` with thresholds ascending; a last threshold just above
    the highest score closes the curve at ``far = 0, frr = 1`` (the first one gives ``far = 1``).
    """
    s, y = _scores_labels(scores, labels)
    thresholds = np.unique(s)
    thresholds = np.append(thresholds, np.nextafter(thresholds[-1], np.inf))
    tar, non = np.sort(s[y]), np.sort(s[~y])
    frr = np.searchsorted(tar, thresholds, side="left") / len(tar)
    far = (len(non) - np.searchsorted(non, thresholds, side="left")) / len(non)
    return far, frr, thresholds


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and the threshold where it is reached.

    FAR falls and FRR rises with the threshold. Between the last operating point where
    FRR < FAR and the first where FRR >= FAR, both rates and the threshold are linearly
    interpolated (on linear probability axes) to the point where they meet; this is the
    crossing of the DET polyline with the diagonal.
    """
    far, frr, thr = det_curve(scores, labels)
    diff = far - frr
    i = int(np.argmax(diff <= 0))
    if i == 0:
        return float(far[0]), float(thr[0])
    w = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(far[i - 1] + w * (far[i] - far[i - 1])), float(thr[i - 1] + w * (thr[i] - thr[i - 1]))


def min_dcf(scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """Minimum normalised detection cost (NIST SRE) and its threshold.

    ``DCF(t) = c_miss * p_target * FRR(t) + c_fa * (1 - p_target) * FAR(t)``, divided by
    ``min(c_miss * p_target, c_fa * (1 - p_target))``, the cost of the best trivial system.
    """
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise TrialsError(f"minDCF needs 0 < p_target < 1 and positive costs, got {p_target}, {c_miss}, {c_fa}.")
    far, frr, thr = det_curve(scores, labels)
    dcf = (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / min(c_miss * p_target, c_fa * (1 - p_target))
    i = int(np.argmin(dcf))
    return float(dcf[i]), float(thr[i])


# ---------------------------------------------------------------------------------------------
# Embedding checks


def _embeddings_labels(embeddings, singers) -> tuple[np.ndarray, np.ndarray]:
    """Row-normalised float64 embeddings and integer singer codes (exact label equality)."""
    z = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(singers)
    if z.ndim != 2 or len(z) != len(labels):
        raise DatasetError(
            f"embeddings of shape {z.shape} do not match {len(labels)} singer labels; pass one label per row."
        )
    z = l2_normalize(z, what="embeddings", dtype=np.float64)
    codes = np.unique(labels.astype(str), return_inverse=True)[1].ravel()
    if codes.max(initial=0) < 1:
        raise DatasetError("embeddings come from fewer than 2 singers; singer metrics need at least 2.")
    return z, codes


def _rounded(similarities: np.ndarray) -> np.ndarray:
    """Similarities rounded to float32 (see the module docstring)."""
    return similarities.astype(np.float32)


def _warn_skipped(what: str, n_skipped: int, n_total: int, why: str) -> None:
    if n_total and n_skipped == n_total:
        raise DatasetError(f"{what}: no usable query among {n_total}: {why}.")
    if n_skipped:
        warnings.warn(f"{what}: {n_skipped} of {n_total} queries left out: {why}.", stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Mean normalised rank


def normalized_ranks(
    embeddings, singers, *, songs=None, k: int = 512, seed: int = 0, cross_song: bool = True
) -> np.ndarray:
    """Per-query normalised rank of the true match among it and up to ``k`` other-singer segments.

    For query ``i`` one true match is drawn among the other segments of the same singer
    (from another song when ``songs`` is given and ``cross_song``), and ``k`` distractors
    among segments of other singers (all of them when fewer exist). The rank is the number of
    distractors more similar to the query than the true match, ties counting one half,
    divided by the number of distractors used: 0 is best, 0.5 is chance. Queries without a
    possible true match get NaN.
    """
    z, codes = _embeddings_labels(embeddings, singers)
    if k < 1:
        raise DatasetError(f"MNR needs k >= 1 distractors, got {k}.")
    song_codes = None
    if songs is not None and cross_song:
        if len(songs) != len(z):
            raise DatasetError(f"{len(songs)} song labels for {len(z)} embeddings; pass one per row.")
        song_codes = np.unique(np.asarray(songs).astype(str), return_inverse=True)[1].ravel()
    rng = np.random.default_rng(seed)
    n = len(z)
    members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
    out = np.full(n, np.nan)
    for i in range(n):
        same = members[codes[i]]
        ok = same != i if song_codes is None else song_codes[same] != song_codes[i]
        candidates = same[ok]
        if len(candidates) == 0:
            continue
        match = candidates[rng.integers(len(candidates))]
        # Drawing k + |same| without replacement leaves at least k other-singer rows.
        draw = rng.choice(n, size=min(n, k + len(same)), replace=False)
        distractors = draw[codes[draw] != codes[i]][:k]
        sims = _rounded(z[np.concatenate([[match], distractors])] @ z[i])
        true, others = sims[0], sims[1:]
        out[i] = (np.sum(others > true) + 0.5 * np.sum(others == true)) / len(distractors)
    return out


def mean_normalized_rank(
    embeddings, singers, *, songs=None, k: int = 512, seed: int = 0, cross_song: bool = True
) -> float:
    """Mean of :func:`normalized_ranks` over queries that have a true match (lower is better).

    Queries without a usable true match are left out with a warning that gives their count.
    """
    ranks = normalized_ranks(embeddings, singers, songs=songs, k=k, seed=seed, cross_song=cross_song)
    usable = ~np.isnan(ranks)
    why = "their singer has no other segment" + (" from another song" if songs is not None and cross_song else "")
    _warn_skipped("MNR", int((~usable).sum()), len(ranks), why)
    return float(ranks[usable].mean())


# ---------------------------------------------------------------------------------------------
# Retrieval

BACKENDS = ("auto", "faiss", "numpy")


def _resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise DatasetError(f"unknown retrieval backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend == "numpy":
        return backend
    try:
        import faiss  # noqa: F401
    except ImportError:
        if backend == "faiss":
            raise DatasetError(
                "backend 'faiss' asked for but faiss is not installed; `pip install faiss-cpu` or use backend='numpy'."
            ) from None
        return "numpy"
    return "faiss"


def _retrieval_inputs(embeddings, singers, exclude) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings, singer codes, exclusion groups and which queries have a relevant item."""
    z, codes = _embeddings_labels(embeddings, singers)
    if exclude is None:
        groups = np.arange(len(z))
    else:
        if len(exclude) != len(z):
            raise DatasetError(f"{len(exclude)} exclusion groups for {len(z)} embeddings; pass one per row.")
        groups = np.unique(np.asarray(exclude).astype(str), return_inverse=True)[1].ravel()
    pairs = np.unique(np.stack([codes, groups], axis=1), axis=0)
    usable = np.bincount(pairs[:, 0], minlength=codes.max() + 1)[codes] > 1
    _warn_skipped("retrieval", int((~usable).sum()), len(z), "no same-singer item outside the query's own group")
    return z, codes, groups, usable


def _top_candidates(
    z: np.ndarray, groups: np.ndarray, depth: int, backend: str
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(queries, ids, scores)`` blocks: each query's ``depth`` best gallery rows, best first.

    Rows of the query's own group (itself included) score ``-inf``. The backend only
    proposes candidates (a margin more than needed); their scores are then recomputed in
    float64 from the same inputs in both backends, so both give identical results.
    """
    n, dim = z.shape
    fetch = min(n, depth + int(np.bincount(groups).max()) + 16)
    z32 = np.ascontiguousarray(z, dtype=np.float32)
    index = None
    if backend == "faiss":
        import faiss

        index = faiss.IndexFlatIP(dim)
        index.add(z32)
    # Keep each block's candidate tensor (queries x fetch x dim) to a few tens of MB.
    block = max(1, min(1024, (1 << 22) // (fetch * dim)))
    for start in range(0, n, block):
        q = np.arange(start, min(n, start + block))
        if index is not None:
            cand = index.search(z32[q], fetch)[1]
        else:
            cand = np.argpartition(-(z32[q] @ z32.T), fetch - 1, axis=1)[:, :fetch]
        cand = np.sort(cand, axis=1)
        scores = _rounded(np.einsum("qd,qkd->qk", z[q], z[cand]))
        scores[groups[cand] == groups[q][:, None]] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        yield q, np.take_along_axis(cand, order, axis=1), np.take_along_axis(scores, order, axis=1)


def recall_at_k(
    embeddings, singers, ks: Sequence[int] = (1, 5, 10), exclude=None, backend: str = "auto"
) -> dict[int, float]:
    """Fraction of queries with a same-singer item among their ``k`` nearest neighbours (cosine).

    Every item queries all others; the query itself, and items sharing its ``exclude`` group
    (e.g. its source recording) when given, are left out of its results. Ties with other
    singers' items count against the query: the best same-singer item must be within ``k``
    even when placed behind every other-singer item of equal score, so collapsed embeddings
    score 0, not a lucky value.
    Queries with no same-singer item left are skipped with a warning. ``backend`` picks the
    nearest-neighbour search (faiss ``IndexFlatIP`` or numpy); both give identical results.
    """
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise DatasetError(f"recall@k needs ks >= 1, got {ks}.")
    z, codes, groups, usable = _retrieval_inputs(embeddings, singers, exclude)
    hits = {k: 0 for k in ks}
    # One more than the largest k, so a tie reaching past it is seen.
    for q, ids, scores in _top_candidates(z, groups, ks[-1] + 1, _resolve_backend(backend)):
        relevant = (codes[ids] == codes[q][:, None]) & (scores > -np.inf)
        best = np.where(relevant, scores, -np.inf).max(axis=1)
        # Other same-singer items tied with the best one do not push it down; other singers' do.
        rank = 1 + np.sum(~relevant & (scores >= best[:, None]), axis=1)
        found = relevant.any(axis=1) & usable[q]
        # A tie reaching the end of the candidate list may hide more other-singer items: count exactly.
        for row in np.flatnonzero(found & (scores[:, -1] >= best)):
            full = _rounded(z @ z[q[row]])
            valid = groups != groups[q[row]]
            rank[row] = 1 + int(np.sum(valid & (codes != codes[q[row]]) & (full >= best[row])))
        for k in ks:
            hits[k] += int(np.sum(found & (rank <= k)))
    return {k: hits[k] / int(usable.sum()) for k in ks}


def mean_average_precision(embeddings, singers, exclude=None) -> float:
    """Mean over queries of the average precision of the full cosine ranking, singer as relevance.

    Same query and exclusion rules as :func:`recall_at_k`. The precision at a relevant item
    with score ``s`` is (same-singer items scoring ``>= s``) / (items scoring ``>= s``), so ties
    count against the query and collapsed embeddings score the share of same-singer items.
    Every score is needed, so this always computes them exactly with numpy.
    """
    z, codes, groups, usable = _retrieval_inputs(embeddings, singers, exclude)
    total = 0.0
    block = max(1, (1 << 22) // len(z))
    for start in range(0, len(z), block):
        q = np.arange(start, min(len(z), start + block))
        scores = _rounded(z[q] @ z.T)
        for row, i in zip(scores, q):
            if not usable[i]:
                continue
            valid = np.sort(row[groups != groups[i]])
            rel = np.sort(row[(groups != groups[i]) & (codes == codes[i])])
            at_least = len(valid) - np.searchsorted(valid, rel, side="left")
            rel_at_least = len(rel) - np.searchsorted(rel, rel, side="left")
            total += float(np.mean(rel_at_least / at_least))
    return total / int(usable.sum())


# ---------------------------------------------------------------------------------------------
# Geometry


def alignment(z1, z2, alpha: float = 2) -> float:
    """Mean ``||z1_i - z2_i||^alpha`` over positive pairs (rows of equal index); lower is better."""
    a, b = np.asarray(z1, dtype=np.float64), np.asarray(z2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DatasetError(f"alignment needs two (n, dim) arrays of equal shape, got {a.shape} and {b.shape}.")
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def uniformity(z, t: float = 2) -> float:
    """``log mean_{i<j} exp(-t ||z_i - z_j||^2)`` over all distinct pairs; lower is more uniform."""
    from scipy.spatial.distance import pdist
    from scipy.special import logsumexp

    x = np.asarray(z, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DatasetError(f"uniformity needs an (n, dim) array with n >= 2, got shape {x.shape}.")
    d2 = pdist(x, "sqeuclidean")
    return float(logsumexp(-t * d2) - np.log(len(d2)))


# ---------------------------------------------------------------------------------------------
# Bootstrap over singers


def _percentile_interval(
    draw_stat: Callable[[np.random.Generator], float], n_boot: int, alpha: float, seed: int
) -> tuple[float, float]:
    if n_boot < 2 or not 0 < alpha < 1:
        raise DatasetError(f"bootstrap needs n_boot >= 2 and 0 < alpha < 1, got {n_boot} and {alpha}.")
    rng = np.random.default_rng(seed)
    stats = np.array([draw_stat(rng) for _ in range(n_boot)], dtype=np.float64)
    valid = stats[np.isfinite(stats)]
    if len(valid) < 0.9 * n_boot:
        raise DatasetError(
            f"bootstrap: the statistic was undefined in {n_boot - len(valid)} of {n_boot} resamples; "
            "there are too few singers for a confidence interval."
        )
    low, high = np.quantile(valid, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_ci(
    groups, stat_fn: Callable[[np.ndarray], float], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of ``stat_fn`` when whole groups (singers) are resampled with replacement.

    ``groups[i]`` is the group of item ``i``. Each resample draws as many groups as there are,
    with replacement, and calls ``stat_fn(indices)`` with the indices of all items of the drawn
    groups (repeated when a group is drawn more than once). Resamples where the statistic is
    not finite are dropped; more than 10 % of them raises :class:`DatasetError`.
    """
    codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)[1].ravel()
    if codes.max(initial=0) < 1:
        raise DatasetError("bootstrap over singers needs at least 2 singers.")
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]

    def draw(rng: np.random.Generator) -> float:
        picked = rng.integers(len(members), size=len(members))
        return stat_fn(np.concatenate([members[g] for g in picked]))

    return _percentile_interval(draw, n_boot, alpha, seed)


def eer_ci(
    scores, labels, enroll_singers, test_singers, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap interval of the EER, resampling singers.

    Each resample draws singers with replacement and treats every drawn copy as a singer of
    its own. A trial then occurs once per combination of copies of the singers it involves:
    a target trial of singer ``s`` ``m(s)`` times, a non-target trial between ``a`` and ``b``
    ``m(a) * m(b)`` times, where ``m`` counts how often a singer was drawn.
    """
    s, y = _scores_labels(scores, labels)
    enroll = np.asarray(enroll_singers).astype(str)
    test = np.asarray(test_singers).astype(str)
    if len(enroll) != len(s) or len(test) != len(s):
        raise TrialsError(f"{len(s)} trials but {len(enroll)} enrolment and {len(test)} test singer labels.")
    names, codes = np.unique(np.concatenate([enroll, test]), return_inverse=True)
    if len(names) < 2:
        raise TrialsError("an EER interval over singers needs trials of at least 2 singers.")
    e, t = codes[: len(s)], codes[len(s) :]

    def draw(rng: np.random.Generator) -> float:
        m = np.bincount(rng.integers(len(names), size=len(names)), minlength=len(names))
        weight = np.where(e == t, m[e], m[e] * m[t])
        keep = np.repeat(np.arange(len(s)), weight)
        if y[keep].all() or not y[keep].any():
            return np.nan
        return eer(s[keep], y[keep])[0]

    return _percentile_interval(draw, n_boot, alpha, seed)


def accuracy_ci(correct, singers, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of an accuracy over per-segment outcomes, resampling singers."""
    c = np.asarray(correct, dtype=np.float64).ravel()
    if len(c) != len(singers):
        raise DatasetError(f"{len(c)} outcomes for {len(singers)} singer labels; pass one label per outcome.")
    return bootstrap_ci(singers, lambda idx: float(c[idx].mean()), n_boot=n_boot, alpha=alpha, seed=seed)
