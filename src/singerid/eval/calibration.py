"""Score normalisation and calibration for verification trials.

- :func:`as_norm`: adaptive symmetric score normalisation (AS-norm) against a cohort of
  embeddings from singers outside the trials (Matejka et al., 2017; Cumani et al., 2011).
- :func:`fit_calibration`: a map from cosine score to log-likelihood ratio fitted on a
  development trial list, ``llr = a * s + b``, or, given the durations of both sides of each
  trial, the duration-aware ``llr = (a + e m) s + b + c m`` (see
  :mod:`singerid.model.calibration`), plus decision thresholds at the EER, at target
  false-acceptance rates and at the Bayes point. :meth:`Calibration.to_dict` is the form stored
  in the model artefact (see :func:`store_calibration`) and applied by ``SingerEncoder``.
- :func:`cllr` and :func:`min_cllr`: the log-likelihood-ratio cost of calibrated scores and
  its minimum over monotonic score maps (the discrimination part alone).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import WINDOW_SECONDS
from ..errors import ConfigError, TrialsError
from ..model.calibration import Calibration, DurationTerms, logit
from ..vectors import l2_normalize
from .metrics import _scores_labels, det_curve, eer

# ---------------------------------------------------------------------------------------------
# AS-norm


def cohort_stats(embeddings, cohort, top_k: int | None = 200, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (``ddof=0``) of each row's ``top_k`` highest cohort cosine scores.

    ``top_k=None`` uses the whole cohort (plain S-norm statistics). Rows are processed in
    blocks of ``block`` so memory stays at ``block x len(cohort)`` scores.
    """
    z = l2_normalize(embeddings, what="embeddings", error=TrialsError, dtype=np.float64)
    c = l2_normalize(cohort, what="cohort", error=TrialsError, dtype=np.float64)
    if z.shape[1] != c.shape[1]:
        raise TrialsError(f"embeddings have dim {z.shape[1]} but the cohort has dim {c.shape[1]}; embed both with the same model.")
    k = len(c) if top_k is None else int(top_k)
    if not 2 <= k <= len(c):
        raise ConfigError(
            f"AS-norm top_k={top_k} with a cohort of {len(c)} embeddings; use 2 <= top_k <= {len(c)} "
            "(or a larger cohort)."
        )
    mean = np.empty(len(z))
    std = np.empty(len(z))
    for start in range(0, len(z), block):
        s = z[start : start + block] @ c.T
        top = s if k == len(c) else np.partition(s, len(c) - k, axis=1)[:, len(c) - k :]
        mean[start : start + block] = top.mean(axis=1)
        std[start : start + block] = top.std(axis=1)
    if np.any(std == 0):
        raise TrialsError("some embeddings score identically against their whole top-k cohort; use a larger top_k or a more varied cohort.")
    return mean, std


def _symmetric(s: np.ndarray, mean_e, std_e, mean_t, std_t) -> np.ndarray:
    return 0.5 * ((s - mean_e) / std_e + (s - mean_t) / std_t)


def as_norm(scores, enroll_emb, test_emb, cohort, top_k: int | None = 200) -> np.ndarray:
    """AS-norm of trial scores: ``s' = ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2``.

    ``scores[i]`` is the score of the pair ``(enroll_emb[i], test_emb[i])``; ``mu``/``sd`` are the
    :func:`cohort_stats` of each side. The cohort must hold segments of singers that appear in
    no trial. Embeddings repeated across trials (the usual case) are scored against the cohort
    only once.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    e = np.asarray(enroll_emb, dtype=np.float64)
    t = np.asarray(test_emb, dtype=np.float64)
    if e.ndim != 2 or e.shape != t.shape or len(e) != len(s):
        raise TrialsError(
            f"AS-norm needs one enrolment and one test row per score: got {len(s)} scores, "
            f"enrolment {e.shape}, test {t.shape}."
        )
    rows, inverse = np.unique(np.concatenate([e, t]), axis=0, return_inverse=True)
    mean, std = cohort_stats(rows, cohort, top_k)
    ie, it = inverse.ravel()[: len(s)], inverse.ravel()[len(s) :]
    return _symmetric(s, mean[ie], std[ie], mean[it], std[it])


def as_norm_trials(trials, ids: Sequence[str], embeddings, cohort, top_k: int | None = 200) -> np.ndarray:
    """AS-normalised cosine scores of a trial list; ``ids[i]`` names row ``i`` of ``embeddings``.

    Cohort statistics are computed once per embedding row that some trial uses.
    """
    from .trials import score_trials

    raw = score_trials(trials, ids, embeddings)
    row_of = {i: r for r, i in enumerate(ids)}
    e = np.fromiter((row_of[t.enroll] for t in trials), dtype=np.int64, count=len(trials))
    t = np.fromiter((row_of[t.test] for t in trials), dtype=np.int64, count=len(trials))
    used, inverse = np.unique(np.concatenate([e, t]), return_inverse=True)
    mean, std = cohort_stats(np.asarray(embeddings, dtype=np.float64)[used], cohort, top_k)
    ie, it = inverse[: len(trials)], inverse[len(trials) :]
    return _symmetric(raw.astype(np.float64), mean[ie], std[ie], mean[it], std[it])


# ---------------------------------------------------------------------------------------------
# Cllr


def cllr(llr, labels) -> float:
    """Log-likelihood-ratio cost in bits: ``(mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)) / 2``.

    0 is perfect, 1 is the cost of always answering ``llr = 0``; infinite llrs are allowed.
    """
    x = np.asarray(llr, dtype=np.float64).ravel()
    y = np.asarray(labels).astype(bool).ravel()
    if len(x) != len(y):
        raise TrialsError(f"{len(x)} llrs but {len(y)} labels; pass one label per trial.")
    if np.any(np.isnan(x)):
        raise TrialsError("llrs contain NaN; check the scores of those trials.")
    if y.all() or not y.any():
        raise TrialsError("Cllr needs both target and non-target trials; regenerate the trial list with both kinds.")
    tar = np.logaddexp(0.0, -x[y]).mean()
    non = np.logaddexp(0.0, x[~y]).mean()
    return float((tar + non) / (2 * math.log(2)))


def min_cllr(scores, labels) -> float:
    """Cllr after the best monotonic score-to-llr map (pool-adjacent-violators on the scores).

    Tied scores are pooled before the fit, so the result does not depend on trial order.
    """
    from sklearn.isotonic import IsotonicRegression

    s, y = _scores_labels(scores, labels)
    posterior = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(s, y.astype(np.float64)).predict(s)
    prior_logit = logit(y.mean())
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - prior_logit
    return cllr(llr, y)


# ---------------------------------------------------------------------------------------------
# Logistic calibration


def far_key(far: float) -> str:
    """Name of the threshold stored for a target false-acceptance rate, e.g. ``"far0.01"``."""
    return f"far{far:g}"


def threshold_at_far(scores, labels, far: float) -> float:
    """Lowest score threshold whose false-acceptance rate (``score >= t`` accepted) is at most ``far``."""
    if not 0 <= far < 1:
        raise ConfigError(f"target false-acceptance rate must be in [0, 1), got {far}.")
    rates, _, thr = det_curve(scores, labels)
    # det_curve computes rates as 1 - k/n, which can land a rounding error above an exact k/n.
    return float(thr[int(np.argmax(rates <= far + 1e-12))])


def _class_weights(y: np.ndarray, p_target: float, groups: np.ndarray) -> np.ndarray:
    """``p / N_tar`` and ``(1 - p) / N_non`` within each group, each group weighing the same."""
    w = np.empty(len(y))
    names = np.unique(groups)
    for g in names:
        in_g = groups == g
        tar, non = in_g & y, in_g & ~y
        if not tar.any() or not non.any():
            raise TrialsError(f"calibration trials of group {g!r} need both same-singer and different-singer pairs.")
        w[tar] = p_target / tar.sum() / len(names)
        w[non] = (1 - p_target) / non.sum() / len(names)
    return w


def _fit_logistic(features: np.ndarray, y: np.ndarray, p_target: float, groups: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimise the ``p_target``-weighted cross-entropy of ``sigmoid(features @ w + b + logit p)``.

    Each class is weighted by ``p / N_tar`` and ``(1 - p) / N_non`` (within each of ``groups``,
    which weigh the same) so the fit depends neither on the target proportion nor on which
    group has more trials, and the prior log-odds offset keeps the linear part a likelihood ratio
    rather than a posterior. The objective is convex; columns are standardised first for
    conditioning and the solution mapped back. Returns ``(w, b)``.
    """
    from scipy.optimize import minimize

    mu, sd = features.mean(axis=0), features.std(axis=0)
    if np.any(sd == 0):
        raise TrialsError("all scores are equal; calibration needs scores that vary.")
    x = (features - mu) / sd
    w = _class_weights(y, p_target, groups)
    sign = np.where(y, 1.0, -1.0)
    offset = logit(p_target)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        m = sign * (x @ theta[:-1] + theta[-1] + offset)
        loss = np.logaddexp(0.0, -m)
        g = -w * sign / (1.0 + np.exp(m))
        return float(np.sum(w * loss)), np.append(x.T @ g, np.sum(g))

    res = minimize(objective, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B")
    if not res.success:
        raise TrialsError(f"calibration fit did not converge ({res.message}); check the development scores.")
    coef = res.x[:-1] / sd
    return coef, float(res.x[-1] - np.sum(res.x[:-1] * mu / sd))


def _balanced_eer_threshold(llr: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The llr where the false-accept and false-reject rates, each averaged over ``groups``, meet."""
    candidates = np.unique(llr)
    fa, fr = np.zeros(len(candidates)), np.zeros(len(candidates))
    names = np.unique(groups)
    for g in names:
        tar = np.sort(llr[(groups == g) & y])
        non = np.sort(llr[(groups == g) & ~y])
        fa += (len(non) - np.searchsorted(non, candidates, side="left")) / len(non) / len(names)
        fr += np.searchsorted(tar, candidates, side="left") / len(tar) / len(names)
    return float(candidates[np.argmin(np.abs(fa - fr))])


def _duration_fit(s: np.ndarray, y: np.ndarray, durations, ref_seconds: float, p_target: float, groups: np.ndarray):
    """``(a, b, DurationTerms)`` of the duration-aware map; the score-duration interaction is
    dropped when it would make the slope non-positive somewhere in the fitted range."""
    d = np.asarray(durations, dtype=np.float64)
    if d.shape != (len(s), 2):
        raise TrialsError(f"{len(s)} scores but durations of shape {d.shape}; pass one (seconds, seconds) pair per trial.")
    if np.any(~np.isfinite(d)) or np.any(d <= 0):
        raise TrialsError("trial durations must be positive seconds.")
    m = np.log(d).mean(axis=1) - math.log(ref_seconds)
    lo, hi = float(m.min()), float(m.max())
    if hi - lo < 1e-3:
        # Every trial has the same lengths: nothing to learn about duration.
        coef, b = _fit_logistic(s[:, None], y, p_target, groups)
        return float(coef[0]), b, DurationTerms(c=0.0, e=0.0, ref_seconds=float(ref_seconds), lo=lo, hi=hi)
    coef, b = _fit_logistic(np.column_stack([s, s * m, m]), y, p_target, groups)
    a, e, c = coef
    if min(a + e * lo, a + e * hi) <= 0:
        (a, c), b = _fit_logistic(np.column_stack([s, m]), y, p_target, groups)
        e = 0.0
    return float(a), float(b), DurationTerms(c=float(c), e=float(e), ref_seconds=float(ref_seconds), lo=lo, hi=hi)


def fit_calibration(
    scores,
    labels,
    p_target: float = 0.5,
    fars: Sequence[float] = (0.01,),
    *,
    durations=None,
    ref_seconds: float = WINDOW_SECONDS,
    groups=None,
) -> Calibration:
    """Fit a :class:`Calibration` on development trial scores (``labels``: True for same singer).

    The map minimises the prior-weighted logistic loss at ``p_target`` (the Cllr objective when
    ``p_target = 0.5``) with scipy's L-BFGS. With ``durations`` (seconds of both sides of each
    trial, shape ``(n, 2)``) the map is duration-aware and the trials should cover the lengths
    that will be scored (clips and whole recordings). Thresholds: ``"eer"`` (the EER point of the
    development llrs), ``far_key(f)`` for each ``f`` in ``fars``, and ``"bayes"``, where the llr
    reaches ``-logit(p_target)``; each is stored on the llr and as a score at ``ref_seconds``.
    ``groups`` (one label per trial, e.g. clips and whole recordings) weigh the same in the fit
    and in the thresholds: the EER point balances their averaged error rates, and a target
    false-acceptance rate holds in every group.
    """
    if not 0 < p_target < 1:
        raise ConfigError(f"p_target must be in (0, 1), got {p_target}.")
    s, y = _scores_labels(scores, labels)
    groups = np.zeros(len(s), int) if groups is None else np.asarray(groups)
    if groups.shape != s.shape:
        raise TrialsError(f"{len(s)} scores but {groups.size} group labels; pass one per trial.")
    if durations is None:
        coef, b = _fit_logistic(s[:, None], y, p_target, groups)
        a, terms = float(coef[0]), None
    else:
        a, b, terms = _duration_fit(s, y, durations, ref_seconds, p_target, groups)
    if a <= 0:
        raise TrialsError(
            f"calibration slope is {a:.3g} <= 0: target trials do not score higher than non-target ones; "
            "check the trial labels and the embeddings."
        )
    plain = Calibration(a, b, p_target, duration=terms)
    llr = plain.llr(s, durations)
    names = np.unique(groups)
    at_far = {far_key(f): max(threshold_at_far(llr[groups == g], y[groups == g], f) for g in names) for f in fars}
    eer_llr = eer(llr, y)[1] if len(names) == 1 else _balanced_eer_threshold(llr, y, groups)
    llr_thresholds = {"eer": eer_llr, **at_far, "bayes": -logit(p_target)}
    reference = None if terms is None else (ref_seconds, ref_seconds)
    if terms is None:
        # The affine map is monotonic, so thresholds on the llr map back to the score exactly.
        thresholds = {k: (v - b) / a for k, v in llr_thresholds.items()}
        if len(names) == 1:
            thresholds.update({"eer": eer(s, y)[1], **{far_key(f): threshold_at_far(s, y, f) for f in fars}})
    else:
        with_llr = Calibration(a, b, p_target, duration=terms, llr_thresholds=llr_thresholds)
        thresholds = {k: with_llr.threshold(k, reference) for k in llr_thresholds}
    fitted_on = {
        "n_trials": int(len(s)),
        "n_target": int(y.sum()),
        "n_nontarget": int((~y).sum()),
        "eer": eer(s, y)[0],
        "cllr": cllr(llr, y),
        "min_cllr": min_cllr(s, y),
    }
    if terms is not None:
        fitted_on["seconds_range"] = [float(np.min(durations)), float(np.max(durations))]
    return Calibration(a, b, p_target, thresholds, fitted_on, terms, llr_thresholds if terms is not None else {})


def store_calibration(artifact_path: str | os.PathLike, calibration: Calibration) -> Path:
    """Write ``calibration`` into the model artefact at ``artifact_path`` (weights untouched)."""
    from ..model.artifact import update_calibration

    return update_calibration(artifact_path, calibration.to_dict())
