from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.stats import norm
from sklearn.metrics import average_precision_score, roc_curve

from singerid.errors import DatasetError, TrialsError
from singerid.eval.metrics import (
    accuracy_ci,
    alignment,
    bootstrap_ci,
    det_curve,
    eer,
    eer_ci,
    mean_average_precision,
    mean_normalized_rank,
    min_dcf,
    normalized_ranks,
    recall_at_k,
    uniformity,
)


def circle(*degrees: float) -> np.ndarray:
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def gaussian_trials(rng, n_target, n_nontarget, mu=1.0):
    scores = np.concatenate([rng.normal(mu, 1, n_target), rng.normal(-mu, 1, n_nontarget)])
    return scores, np.r_[np.ones(n_target, bool), np.zeros(n_nontarget, bool)]


# ----------------------------------------------------------------------------- verification


def test_eer_analytic_cases():
    value, threshold = eer([0.9, 0.8, 0.7, 0.1, 0.2, 0.3], [1, 1, 1, 0, 0, 0])
    assert value == 0.0 and 0.3 < threshold <= 0.7
    same = np.arange(10.0)
    assert eer(np.r_[same, same], np.r_[np.ones(10), np.zeros(10)])[0] == pytest.approx(0.5)
    scores, labels = gaussian_trials(np.random.default_rng(0), 20000, 20000, mu=1.0)
    value, threshold = eer(scores, labels)
    assert value == pytest.approx(norm.cdf(-1.0), abs=0.006)
    assert threshold == pytest.approx(0.0, abs=0.05)


@pytest.mark.parametrize("seed", range(6))
def test_eer_matches_roc_curve_and_brentq(seed):
    rng = np.random.default_rng(seed)
    scores, labels = gaussian_trials(rng, int(rng.integers(5, 60)), int(rng.integers(5, 200)), mu=0.7)
    if seed % 2:
        scores = np.round(scores * 2)  # many ties
    fpr, tpr, _ = roc_curve(labels, scores)
    reference = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert eer(scores, labels)[0] == pytest.approx(reference, abs=1e-9)


def test_det_curve_against_direct_counts():
    rng = np.random.default_rng(1)
    scores, labels = gaussian_trials(rng, 30, 70)
    scores = np.round(scores, 1)
    far, frr, thr = det_curve(scores, labels)
    assert np.all(np.diff(thr) > 0) and far[0] == 1 and frr[0] == 0 and far[-1] == 0 and frr[-1] == 1
    for a, r, t in zip(far, frr, thr):
        assert a == np.mean(scores[~labels] >= t)
        assert r == np.mean(scores[labels] < t)


def test_min_dcf_hand_computed():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    # Thresholds 0.1, 0.35, 0.4, 0.8, 0.8+: (FAR, FRR) = (1,0) (.5,0) (.5,.5) (0,.5) (0,1).
    # p=0.5: DCF/0.5 = 1, .5, 1, .5, 1 -> 0.5 first reached at 0.35.
    assert min_dcf(scores, labels, p_target=0.5) == (pytest.approx(0.5), 0.35)
    # p=0.25: (.25*FRR + .75*FAR)/.25 = 3, 1.5, 2, .5, 1 -> 0.5 at 0.8.
    assert min_dcf(scores, labels, p_target=0.25) == (pytest.approx(0.5), 0.8)
    # c_miss=3, p=0.25: (.75*FRR + .75*FAR)/.75 = 1, .5, 1, .5, 1.
    assert min_dcf(scores, labels, p_target=0.25, c_miss=3.0)[0] == pytest.approx(0.5)
    rng = np.random.default_rng(2)
    assert min_dcf(*gaussian_trials(rng, 50, 500, mu=0.0))[0] <= 1.0


def test_verification_input_errors():
    with pytest.raises(TrialsError, match="both target and non-target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(TrialsError, match="3 scores but 2 labels"):
        eer([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(TrialsError, match="NaN"):
        min_dcf([np.nan, 0.2], [1, 0])


# ----------------------------------------------------------------------------- MNR


def test_mnr_perfect_and_collapsed():
    singers = np.repeat([f"s{i}" for i in range(6)], 5)
    perfect = np.eye(6, dtype=np.float32)[np.repeat(np.arange(6), 5)]
    assert mean_normalized_rank(perfect, singers, k=10) == 0.0
    # Identical embeddings tie everywhere: chance (0.5), not a flattering 0.
    collapsed = np.tile(np.random.default_rng(0).normal(size=(1, 7)), (30, 1)).astype(np.float32)
    assert mean_normalized_rank(collapsed, singers, k=10) == 0.5


def test_mnr_hand_computed_with_warning():
    # A at 0 and 60 degrees, B at 30, C at 150. Query A@0: true 0.5, distractors 0.87 (above) and
    # -0.87 -> 1/2. Query A@60: true 0.5, distractors 0.87 (above), 0 -> 1/2. B and C: no true match.
    emb = circle(0, 60, 30, 150)
    with pytest.warns(UserWarning, match="2 of 4 queries"):
        assert mean_normalized_rank(emb, ["A", "A", "B", "C"], k=512) == pytest.approx(0.5)
    ranks = normalized_ranks(emb, ["A", "A", "B", "C"], k=512)
    assert ranks[:2].tolist() == [0.5, 0.5] and np.isnan(ranks[2:]).all()


def test_mnr_exact_labels_not_substrings():
    # male1 at 0 and 90 degrees, male10 at 10 and 80 (by hand):
    # male1@0: true 0; distractors .98, .17 -> 1.   male1@90: true 0; .17, .98 -> 1.
    # male10@10: true .34; .98 above, .17 below -> .5.   male10@80: the same -> .5.
    emb = circle(0, 90, 10, 80)
    ranks = normalized_ranks(emb, ["male1", "male1", "male10", "male10"], k=512)
    assert ranks.tolist() == [1.0, 1.0, 0.5, 0.5]


def test_mnr_cross_song_uses_other_song():
    # Singer A: two takes of song x (identical), one of song y far away; B in between.
    emb = circle(0, 0, 90, 45)
    singers, songs = ["A", "A", "A", "B"], ["x", "x", "y", "z"]
    same_song_ok = normalized_ranks(emb, singers, songs=songs, cross_song=False, k=5, seed=0)
    cross = normalized_ranks(emb, singers, songs=songs, k=5)
    # Query A@0 (first row), cross-song: true match A@90 (sim 0) loses to B@45 -> 1.
    assert cross[0] == 1.0 and cross[1] == 1.0 and cross[2] == 1.0
    # Without the cross-song rule, the draw can pick the identical take (rank 0) for row 0 or 1.
    rows = [normalized_ranks(emb, singers, songs=songs, cross_song=False, k=5, seed=s)[0] for s in range(10)]
    assert 0.0 in rows and 1.0 in rows and np.isnan(same_song_ok[3])


def test_mnr_subsamples_k_and_is_seeded():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 8)).astype(np.float32)
    singers = rng.integers(0, 20, 200).astype(str)
    a = normalized_ranks(emb, singers, k=16, seed=1)
    assert np.array_equal(a, normalized_ranks(emb, singers, k=16, seed=1))
    assert not np.array_equal(a, normalized_ranks(emb, singers, k=16, seed=2))
    assert set(np.unique(a * 16)) <= set(range(17))  # ranks are multiples of 1/16
    assert mean_normalized_rank(emb, singers, k=16) == pytest.approx(0.5, abs=0.06)


# ----------------------------------------------------------------------------- retrieval

# a1 at 0, a2 at 60 (singer A); b1 at 25, b2 at 180 (singer B). Rankings by hand:
# a1: b1 .91, a2 .5, b2 -1      -> first hit at 2, AP 1/2
# a2: b1 .82, a1 .5, b2 -.5     -> first hit at 2, AP 1/2
# b1: a1 .91, a2 .82, b2 -.91   -> first hit at 3, AP 1/3
# b2: a2 -.5, b1 -.91, a1 -1    -> first hit at 2, AP 1/2
HAND = circle(0, 60, 25, 180), ["A", "A", "B", "B"]


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_retrieval_hand_computed(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    emb, singers = HAND
    assert recall_at_k(emb, singers, ks=(1, 2, 3), backend=backend) == {1: 0.0, 2: 0.75, 3: 1.0}
    assert mean_average_precision(emb, singers) == pytest.approx(11 / 24)
    # Same group for a1 and b1: each drops out of the other's results.
    # a1: a2, b2 -> hit at 1, AP 1.  b1: a2, b2 -> AP 1/2.  a2, b2 unchanged.
    groups = ["g", "h", "g", "i"]
    assert recall_at_k(emb, singers, ks=(1,), exclude=groups, backend=backend) == {1: 0.25}
    assert mean_average_precision(emb, singers, exclude=groups) == pytest.approx(0.625)


def brute_force(emb, singers, groups, ks):
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = z.astype(np.float64) @ z.T.astype(np.float64)
    recall, ap = {k: [] for k in ks}, []
    for i in range(len(z)):
        keep = groups != groups[i]
        rel = singers[keep] == singers[i]
        if not rel.any():
            continue
        order = np.argsort(-sims[i, keep])
        for k in ks:
            recall[k].append(rel[order][:k].any())
        ap.append(average_precision_score(rel, sims[i, keep]))
    return {k: float(np.mean(v)) for k, v in recall.items()}, float(np.mean(ap))


def test_retrieval_matches_brute_force_and_backends_agree():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    singers = rng.integers(0, 12, 300)
    emb = (rng.normal(size=(12, 16))[singers] + 1.5 * rng.normal(size=(300, 16))).astype(np.float32)
    groups = rng.integers(0, 60, 300)
    ks = (1, 5, 10)
    expect_recall, expect_map = brute_force(emb, singers, groups, ks)
    via_numpy = recall_at_k(emb, singers, ks=ks, exclude=groups, backend="numpy")
    via_faiss = recall_at_k(emb, singers, ks=ks, exclude=groups, backend="faiss")
    assert via_numpy == via_faiss
    assert via_numpy == pytest.approx(expect_recall, abs=1e-12)
    assert mean_average_precision(emb, singers, exclude=groups) == pytest.approx(expect_map, abs=1e-12)


def test_retrieval_ties_count_against_the_query():
    singers = np.repeat(np.arange(3), 4)
    flat = np.tile(np.random.default_rng(0).normal(size=(1, 37)), (12, 1)).astype(np.float32)
    # Each query ties with 8 other-singer items, which all count ahead of its match: rank 9.
    assert recall_at_k(flat, singers, ks=(1, 8, 9)) == {1: 0.0, 8: 0.0, 9: 1.0}
    # Every item ties: precision is the share of same-singer items, 3 of 11 (as sklearn agrees).
    assert mean_average_precision(flat, singers) == pytest.approx(3 / 11)
    assert average_precision_score(singers[1:] == 0, np.ones(11)) == pytest.approx(3 / 11)
    # Large enough for matrix-product round-off to differ between identical rows.
    many = np.tile(flat[:1], (600, 1))
    assert mean_average_precision(many, np.repeat(np.arange(3), 200)) == pytest.approx(199 / 599)
    assert mean_normalized_rank(many, np.repeat(np.arange(3), 200), k=512) == 0.5


def test_retrieval_errors():
    emb, singers = HAND
    with pytest.raises(DatasetError, match="backend"):
        recall_at_k(emb, singers, backend="annoy")
    with pytest.raises(DatasetError, match="4 singer labels"):
        recall_at_k(emb[:3], singers)
    with pytest.warns(UserWarning, match="1 of 5 queries"):
        recall_at_k(np.vstack([emb, circle(5)]), singers + ["C"], ks=(1,))


# ----------------------------------------------------------------------------- geometry


def test_alignment_and_uniformity_by_hand():
    assert alignment(circle(0), circle(90)) == pytest.approx(2.0)
    assert alignment(circle(0, 0), circle(90, 0), alpha=1) == pytest.approx(math.sqrt(2) / 2)
    assert uniformity(circle(0, 180)) == pytest.approx(-8.0)
    assert uniformity(circle(0, 120, 240)) == pytest.approx(-6.0)
    # Pairs at squared distance 0 contribute 1, pairs at distance 2 contribute exp(-2 t).
    assert uniformity(circle(0, 0, 90, 90), t=0.5) == pytest.approx(math.log((2 + 4 * math.exp(-1)) / 6))
    assert uniformity(circle(0, 0, 0, 90), t=1) == pytest.approx(math.log((3 + 3 * math.exp(-2)) / 6))


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci_contains_estimate_narrows_and_is_seeded():
    def widths(n_groups):
        rng = np.random.default_rng(0)
        groups = np.repeat(np.arange(n_groups), 5)
        values = rng.normal(size=n_groups)[groups] + rng.normal(size=len(groups))
        low, high = bootstrap_ci(groups, lambda idx: float(values[idx].mean()), n_boot=300, seed=1)
        assert low <= values.mean() <= high
        return high - low, (low, high), groups, values

    small, ci, groups, values = widths(10)
    large = widths(200)[0]
    assert large < small / 2
    assert bootstrap_ci(groups, lambda idx: float(values[idx].mean()), n_boot=300, seed=1) == ci
    assert bootstrap_ci(groups, lambda idx: float(values[idx].mean()), n_boot=300, seed=2) != ci


def test_bootstrap_resamples_whole_groups():
    # Each group's items share one value, so every resample mean is a mean of group values.
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    seen = []
    bootstrap_ci(groups, lambda idx: seen.append(np.sort(idx)) or 0.0, n_boot=50)
    members = {"a": [0, 1], "b": [2], "c": [3, 4, 5]}
    for idx in seen:
        counts = np.bincount(idx, minlength=6)
        for items in members.values():
            assert len(set(counts[items])) == 1  # a group is drawn whole or not at all


def eer_ci_by_copies(scores, labels, enroll, test, n_boot, alpha, seed):
    """Second implementation: materialise the singer copies and list every trial combination."""
    names = np.unique(np.concatenate([enroll, test]))
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        drawn = names[rng.integers(len(names), size=len(names))]
        copies = {n: int(np.sum(drawn == n)) for n in names}
        rows = []
        for i, (e, t) in enumerate(zip(enroll, test)):
            combos = copies[e] if e == t else copies[e] * copies[t]
            rows += [i] * combos
        rows = np.array(rows, dtype=int)
        stats.append(eer(scores[rows], labels[rows])[0] if labels[rows].any() and not labels[rows].all() else np.nan)
    stats = np.array(stats)
    return tuple(np.quantile(stats[np.isfinite(stats)], [alpha / 2, 1 - alpha / 2]))


def singer_trials(n_singers, per_singer, seed):
    rng = np.random.default_rng(seed)
    names = np.array([f"s{i:03d}" for i in range(n_singers)])
    enroll = np.repeat(names, 2 * per_singer)
    test = enroll.copy()
    other = rng.integers(1, n_singers, size=len(enroll))
    nontarget = np.tile(np.r_[np.zeros(per_singer, bool), np.ones(per_singer, bool)], n_singers)
    idx = np.searchsorted(names, enroll)
    test[nontarget] = names[(idx[nontarget] + other[nontarget]) % n_singers]
    labels = ~nontarget
    shift = rng.normal(0, 0.5, n_singers)[idx]  # singer-level effect makes singers the unit
    scores = np.where(labels, 1.0, -1.0) + shift + rng.normal(size=len(labels))
    return scores, labels, enroll, test


def test_eer_ci_matches_copy_semantics_and_narrows():
    scores, labels, enroll, test = singer_trials(8, 6, seed=0)
    got = eer_ci(scores, labels, enroll, test, n_boot=60, seed=4)
    assert got == pytest.approx(eer_ci_by_copies(scores, labels, enroll, test, 60, 0.05, 4))
    point = eer(scores, labels)[0]
    assert got[0] <= point <= got[1]
    big = singer_trials(120, 6, seed=0)
    low, high = eer_ci(*big, n_boot=60, seed=4)
    assert low <= eer(big[0], big[1])[0] <= high
    assert high - low < (got[1] - got[0]) / 2


def test_accuracy_ci():
    rng = np.random.default_rng(0)
    singers = np.repeat(np.arange(30), 10)
    correct = rng.random(300) < 0.7
    low, high = accuracy_ci(correct, singers, n_boot=200)
    assert low <= correct.mean() <= high and high - low > 0
    assert accuracy_ci(correct, singers, n_boot=200) == (low, high)
    with pytest.raises(DatasetError, match="singer labels"):
        accuracy_ci(correct, singers[:5])


def test_recall_ties_among_same_singer_items_do_not_count_against_the_query():
    # One-hot per singer: every same-singer item ties with the best; no other singer does.
    singers = np.repeat(["a", "b", "c"], 4)
    emb = np.eye(3, dtype=np.float32)[np.repeat([0, 1, 2], 4)]
    for backend in ("numpy", "faiss"):
        assert recall_at_k(emb, singers, ks=(1,), backend=backend) == {1: 1.0}

