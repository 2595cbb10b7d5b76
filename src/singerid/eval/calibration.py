"""Score normalisation and calibration for verification trials.

- :func:`as_norm`: adaptive symmetric score normalisation (AS-norm) against a cohort of
  embeddings from singers outside the trials (Matejka et al., 2017; Cumani et al., 2011).
- :func:`fit_calibration`: an affine map from cosine score to log-likelihood ratio,
  ``llr = a * s + b``, fitted on a development trial list, plus decision thresholds at the
  EER and at target false-acceptance rates. :meth:`Calibration.to_dict` is the form stored
  in the model artefact (see :func:`store_calibration`) and read by
  ``SingerEncoder.threshold("eer")``.
- :func:`cllr` and :func:`min_cllr`: the log-likelihood-ratio cost of calibrated scores and
  its minimum over monotonic score maps (the discrimination part alone).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, TrialsError
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
    prior_logit = math.log(y.mean() / (1 - y.mean()))
    with np.errstate(divide="ignore"):
        llr = np.log(posterior) - np.log1p(-posterior) - prior_logit
    return cllr(llr, y)


# ---------------------------------------------------------------------------------------------
# Logistic calibration


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


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


@dataclass(frozen=True)
class Calibration:
    """An affine score-to-llr map ``llr = a * s + b`` and decision thresholds on the raw score.

    ``thresholds`` maps an operating point name (``"eer"``, ``"far0.01"``, ``"bayes"``) to the
    score at or above which a trial is accepted; ``fitted_on`` describes the development trials.
    """

    a: float
    b: float
    p_target: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    fitted_on: dict = field(default_factory=dict)

    def llr(self, scores) -> np.ndarray:
        """Natural-log likelihood ratio of each score."""
        return self.a * np.asarray(scores, dtype=np.float64) + self.b

    def probability(self, scores, prior: float | None = None) -> np.ndarray:
        """Posterior probability of "same singer" under ``prior`` (default: the fitted ``p_target``)."""
        p = self.p_target if prior is None else float(prior)
        if not 0 < p < 1:
            raise ConfigError(f"prior must be in (0, 1), got {p}.")
        from scipy.special import expit

        return expit(self.llr(scores) + _logit(p))

    def to_dict(self) -> dict:
        """The JSON form stored in the model artefact."""
        return {
            "thresholds": dict(self.thresholds),
            "logistic": {"a": self.a, "b": self.b, "p_target": self.p_target},
            "fitted_on": dict(self.fitted_on),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """Inverse of :meth:`to_dict`."""
        try:
            lg = d["logistic"]
            return cls(float(lg["a"]), float(lg["b"]), float(lg.get("p_target", 0.5)),
                       {k: float(v) for k, v in d.get("thresholds", {}).items()}, dict(d.get("fitted_on", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration entry is not valid ({exc!r}); refit it with fit_calibration.") from exc


def _fit_affine(s: np.ndarray, y: np.ndarray, p_target: float) -> tuple[float, float]:
    """Minimise the ``p_target``-weighted cross-entropy of ``sigmoid(a s + b + logit p)``.

    Each class is weighted by ``p / N_tar`` and ``(1 - p) / N_non`` so the fit does not depend
    on the trial list's target proportion, and the prior log-odds offset keeps ``a s + b`` a
    likelihood ratio rather than a posterior. The objective is convex; scores are
    standardised first for conditioning and the solution mapped back.
    """
    from scipy.optimize import minimize

    mu, sd = s.mean(), s.std()
    if sd == 0:
        raise TrialsError("all scores are equal; calibration needs scores that vary.")
    x = (s - mu) / sd
    w = np.where(y, p_target / y.sum(), (1 - p_target) / (~y).sum())
    sign = np.where(y, 1.0, -1.0)
    offset = _logit(p_target)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        m = sign * (theta[0] * x + theta[1] + offset)
        loss = np.logaddexp(0.0, -m)
        g = -w * sign / (1.0 + np.exp(m))
        return float(np.sum(w * loss)), np.array([np.sum(g * x), np.sum(g)])

    res = minimize(objective, np.zeros(2), jac=True, method="L-BFGS-B")
    if not res.success:
        raise TrialsError(f"calibration fit did not converge ({res.message}); check the development scores.")
    a_std, b_std = res.x
    return float(a_std / sd), float(b_std - a_std * mu / sd)


def fit_calibration(scores, labels, p_target: float = 0.5, fars: Sequence[float] = (0.01,)) -> Calibration:
    """Fit a :class:`Calibration` on development trial scores (``labels``: True for same singer).

    The affine map minimises the prior-weighted logistic loss at ``p_target`` (the Cllr
    objective when ``p_target = 0.5``) with scipy's L-BFGS. Thresholds: ``"eer"`` (the
    interpolated EER threshold), ``far_key(f)`` for each ``f`` in ``fars``, and ``"bayes"``,
    the score where the llr reaches the Bayes decision threshold ``-logit(p_target)``.
    """
    if not 0 < p_target < 1:
        raise ConfigError(f"p_target must be in (0, 1), got {p_target}.")
    s, y = _scores_labels(scores, labels)
    a, b = _fit_affine(s, y, p_target)
    if a <= 0:
        raise TrialsError(
            f"calibration slope is {a:.3g} <= 0: target trials do not score higher than non-target ones; "
            "check the trial labels and the embeddings."
        )
    rate, t_eer = eer(s, y)
    thresholds = {"eer": t_eer}
    for f in fars:
        thresholds[far_key(f)] = threshold_at_far(s, y, f)
    thresholds["bayes"] = (-_logit(p_target) - b) / a
    fitted_on = {
        "n_trials": int(len(s)),
        "n_target": int(y.sum()),
        "n_nontarget": int((~y).sum()),
        "eer": rate,
        "cllr": cllr(a * s + b, y),
        "min_cllr": min_cllr(s, y),
    }
    return Calibration(a, b, p_target, thresholds, fitted_on)


def store_calibration(artifact_path: str | os.PathLike, calibration: Calibration) -> Path:
    """Write ``calibration`` into the model artefact at ``artifact_path`` (weights untouched)."""
    from ..model.artifact import update_calibration

    return update_calibration(artifact_path, calibration.to_dict())
