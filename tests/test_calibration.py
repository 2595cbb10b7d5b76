from __future__ import annotations

import json
import math

import numpy as np
import pytest

from singerid.errors import ConfigError, TrialsError
from singerid.eval.calibration import (
    Calibration,
    as_norm,
    as_norm_trials,
    cllr,
    cohort_stats,
    far_key,
    fit_calibration,
    min_cllr,
    threshold_at_far,
)
from singerid.eval.metrics import eer
from singerid.eval.trials import Trial


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _naive_as_norm(scores, enroll, test, cohort, top_k):
    """A direct per-trial loop, written independently of the vectorised version."""
    enroll, test, cohort = _unit(enroll), _unit(test), _unit(cohort)
    out = []
    for s, e, t in zip(scores, enroll, test):
        parts = []
        for side in (e, t):
            cs = sorted((float(np.dot(side, c)) for c in cohort), reverse=True)[:top_k]
            m = sum(cs) / len(cs)
            sd = math.sqrt(sum((v - m) ** 2 for v in cs) / len(cs))
            parts.append((s - m) / sd)
        out.append(0.5 * sum(parts))
    return np.array(out)


def test_as_norm_matches_naive_loop():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((12, 8))
    cohort = rng.standard_normal((40, 8))
    pairs = rng.integers(0, 12, size=(30, 2))
    e, t = emb[pairs[:, 0]], emb[pairs[:, 1]]
    scores = np.einsum("ij,ij->i", _unit(e), _unit(t))
    for k in (5, 17, 40, None):
        got = as_norm(scores, e, t, cohort, top_k=k)
        want = _naive_as_norm(scores, e, t, cohort, 40 if k is None else k)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_as_norm_hand_computed():
    # 2-d unit vectors; cohort at angles 0, 90, 180 degrees.
    cohort = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    e = np.array([[1.0, 0.0]])  # cohort scores 1, 0, -1 -> top-2 {1, 0}: mean 0.5, sd 0.5
    t = np.array([[0.0, 1.0]])  # cohort scores 0, 1, 0 -> top-2 {1, 0}: mean 0.5, sd 0.5
    out = as_norm([0.9], e, t, cohort, top_k=2)
    assert out[0] == pytest.approx(0.5 * ((0.9 - 0.5) / 0.5 + (0.9 - 0.5) / 0.5))
    mean, std = cohort_stats(e, cohort, top_k=None)  # all three: mean 0, sd sqrt(2/3)
    assert mean[0] == pytest.approx(0.0, abs=1e-12) and std[0] == pytest.approx(math.sqrt(2 / 3))


def test_as_norm_trials_uses_trial_rows():
    rng = np.random.default_rng(1)
    ids = ["a", "b", "c", "d"]
    emb = rng.standard_normal((4, 6))
    cohort = rng.standard_normal((20, 6))
    trials = [Trial("a", "b", True), Trial("c", "d", False), Trial("d", "a", False)]
    got = as_norm_trials(trials, ids, emb, cohort, top_k=10)
    rows = {"a": 0, "b": 1, "c": 2, "d": 3}
    e = emb[[rows[t.enroll] for t in trials]]
    t = emb[[rows[t.test] for t in trials]]
    scores = np.einsum("ij,ij->i", _unit(e), _unit(t))
    np.testing.assert_allclose(got, _naive_as_norm(scores, e, t, cohort, 10), rtol=1e-5)


def test_as_norm_rejects_bad_top_k():
    cohort = np.eye(3)
    with pytest.raises(ConfigError, match="top_k"):
        as_norm([0.1], np.ones((1, 3)), np.ones((1, 3)), cohort, top_k=4)
    with pytest.raises(ConfigError, match="top_k"):
        as_norm([0.1], np.ones((1, 3)), np.ones((1, 3)), cohort, top_k=1)


def test_cllr_hand_computed():
    # llr 0 costs exactly one bit per trial.
    assert cllr([0.0, 0.0], [1, 0]) == pytest.approx(1.0)
    # target at llr ln 3: log2(1 + 1/3); non-target at llr -ln 3: log2(1 + 1/3).
    assert cllr([math.log(3), -math.log(3)], [1, 0]) == pytest.approx(math.log2(4 / 3))
    assert cllr([math.inf, -math.inf], [1, 0]) == 0.0
    assert cllr([-math.inf, -math.inf], [1, 0]) == math.inf


def test_min_cllr_hand_computed():
    # PAV on scores 0,1,2,3 with labels 0,1,0,1 gives posteriors 0, .5, .5, 1 -> llrs -inf, 0, 0, +inf,
    # so each class pays one bit on one of its two trials: Cllr = (0.5 + 0.5) / 2.
    assert min_cllr([0, 1, 2, 3], [0, 1, 0, 1]) == pytest.approx(0.5)
    assert min_cllr([0, 1, 2, 3], [0, 0, 1, 1]) == pytest.approx(0.0)
    # Ties are pooled: two tied trials of opposite class are worth llr 0 whatever their order.
    assert min_cllr([1, 1], [1, 0]) == pytest.approx(min_cllr([1, 1], [0, 1])) == pytest.approx(1.0)


@pytest.mark.parametrize("p_target", [0.5, 0.1])
def test_logistic_fit_recovers_gaussian_llr(p_target):
    rng = np.random.default_rng(0)
    mu0, mu1, sigma = 0.1, 0.6, 0.15
    tar = rng.normal(mu1, sigma, 20000)
    non = rng.normal(mu0, sigma, 60000)
    scores = np.concatenate([tar, non])
    labels = np.concatenate([np.ones(len(tar), bool), np.zeros(len(non), bool)])
    cal = fit_calibration(scores, labels, p_target=p_target)
    slope = (mu1 - mu0) / sigma**2
    intercept = (mu0**2 - mu1**2) / (2 * sigma**2)
    assert cal.a == pytest.approx(slope, rel=0.05)
    assert cal.b == pytest.approx(intercept, abs=0.05 * abs(intercept))
    # Calibrated llrs are close to optimal: Cllr is near minCllr.
    assert cal.fitted_on["cllr"] == pytest.approx(cal.fitted_on["min_cllr"], abs=0.01)
    # The Bayes threshold at p=0.5 is where the two densities cross: (mu0 + mu1) / 2.
    if p_target == 0.5:
        assert cal.thresholds["bayes"] == pytest.approx((mu0 + mu1) / 2, abs=0.01)


def test_thresholds_reproduce_operating_points():
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(0.7, 0.1, 3000), rng.normal(0.3, 0.1, 5000)])
    labels = np.r_[np.ones(3000, bool), np.zeros(5000, bool)]
    cal = fit_calibration(scores, labels, fars=(0.01, 0.05))
    rate, _ = eer(scores, labels)
    t = cal.thresholds["eer"]
    far = np.mean(scores[~labels] >= t)
    frr = np.mean(scores[labels] < t)
    assert far == pytest.approx(rate, abs=2e-3) and frr == pytest.approx(rate, abs=2e-3)
    for f in (0.01, 0.05):
        tf = cal.thresholds[far_key(f)]
        assert np.mean(scores[~labels] >= tf) <= f
        # the next score down would exceed the target: the threshold is the lowest allowed
        below = scores[scores < tf].max()
        assert np.mean(scores[~labels] >= below) > f


def test_threshold_at_far_hand_computed():
    scores = [0.1, 0.2, 0.3, 0.4, 0.9, 0.8]
    labels = [0, 0, 0, 0, 1, 1]
    assert threshold_at_far(scores, labels, 0.25) == pytest.approx(0.4)  # 1 of 4 non-targets accepted
    assert threshold_at_far(scores, labels, 0.0) == pytest.approx(0.8)


def test_calibration_dict_round_trip_and_probability():
    rng = np.random.default_rng(5)
    scores = np.concatenate([rng.normal(1, 1, 500), rng.normal(-1, 1, 500)])
    labels = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    cal = fit_calibration(scores, labels)
    d = json.loads(json.dumps(cal.to_dict()))
    assert set(d) == {"thresholds", "logistic", "fitted_on"}
    assert {"eer", "far0.01", "bayes"} <= set(d["thresholds"])
    assert d["fitted_on"]["n_trials"] == 1000 and d["fitted_on"]["n_target"] == 500
    back = Calibration.from_dict(d)
    np.testing.assert_allclose(back.llr(scores), cal.llr(scores))
    p = cal.probability([cal.thresholds["bayes"]])
    assert p[0] == pytest.approx(0.5)
    q = cal.probability([0.0], prior=0.2)[0]
    assert q == pytest.approx(1 / (1 + math.exp(-(cal.b + math.log(0.25)))))


def test_calibration_rejects_bad_input():
    with pytest.raises(TrialsError, match="target"):
        fit_calibration([0.1, 0.2], [1, 1])
    with pytest.raises(TrialsError, match="slope"):
        fit_calibration([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])
    with pytest.raises(ConfigError):
        Calibration.from_dict({"thresholds": {}})
