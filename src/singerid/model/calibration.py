"""The score calibration a model artefact carries, and the decisions it gives.

A calibration maps a cosine score to a natural-log likelihood ratio. Scores of longer audio sit
higher, for the same singer and for different singers alike, so a fixed score threshold fitted on
4 s clips accepts too many different-singer pairs of whole songs. A duration-aware calibration
therefore takes the durations of both sides as a quality measure ``m`` (the mean log duration of
the pair, relative to a reference length, clipped to the range seen in fitting):

    llr = (a + e * m) * score + b + c * m

Decisions are made on the llr (``llr_thresholds``), so the score threshold follows the audio's
length. Fitting lives in :mod:`singerid.eval.calibration`; applying it lives here, beside the
artefact, so inference needs nothing from evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


def logit(p: float) -> float:
    """``log(p / (1 - p))``."""
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class DurationTerms:
    """How the duration quality measure enters the llr: ``llr += e * m * score + c * m``.

    ``m = clip(mean(log d1, log d2) - log(ref_seconds), lo, hi)``; ``lo``/``hi`` are the extremes
    of the development trials, so the map is never extrapolated.
    """

    c: float
    e: float
    ref_seconds: float
    lo: float
    hi: float

    def measure(self, durations) -> np.ndarray:
        """The clipped quality measure of each pair of durations (seconds, shape ``(n, 2)`` or ``(2,)``)."""
        d = np.atleast_2d(np.asarray(durations, dtype=np.float64))
        if d.shape[-1] != 2 or np.any(~np.isfinite(d)) or np.any(d <= 0):
            raise ConfigError(f"durations must be positive seconds, one pair per score; got shape {d.shape}.")
        return np.clip(np.log(d).mean(axis=1) - math.log(self.ref_seconds), self.lo, self.hi)


@dataclass(frozen=True)
class Calibration:
    """A score-to-llr map and decision thresholds.

    ``thresholds`` maps an operating point name (``"eer"``, ``"far0.01"``, ``"bayes"``) to the raw
    score accepted at the reference duration (both sides ``ref_seconds`` long, or any length when
    the calibration has no duration terms); ``llr_thresholds`` holds the same operating points on
    the llr, which :meth:`threshold` turns into a score threshold for the actual durations.
    """

    a: float
    b: float
    p_target: float = 0.5
    thresholds: dict[str, float] = field(default_factory=dict)
    fitted_on: dict = field(default_factory=dict)
    duration: DurationTerms | None = None
    llr_thresholds: dict[str, float] = field(default_factory=dict)

    def _slope_offset(self, durations, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.duration is None or durations is None:
            return np.full(n, self.a), np.full(n, self.b)
        m = self.duration.measure(durations)
        if len(m) == 1 and n > 1:
            m = np.repeat(m, n)
        if len(m) != n:
            raise ConfigError(f"{n} scores but {len(m)} duration pairs; pass one pair per score.")
        return self.a + self.duration.e * m, self.b + self.duration.c * m

    def llr(self, scores, durations=None) -> np.ndarray:
        """Natural-log likelihood ratio of each score (``durations``: seconds of both sides, per score)."""
        s = np.atleast_1d(np.asarray(scores, dtype=np.float64))
        slope, offset = self._slope_offset(durations, len(s))
        return slope * s + offset

    def probability(self, scores, durations=None, prior: float | None = None) -> np.ndarray:
        """Posterior probability of "same singer" under ``prior`` (default: the fitted ``p_target``)."""
        p = self.p_target if prior is None else float(prior)
        if not 0 < p < 1:
            raise ConfigError(f"prior must be in (0, 1), got {p}.")
        from scipy.special import expit

        return expit(self.llr(scores, durations) + logit(p))

    def threshold(self, which: str = "eer", durations=None) -> float:
        """The score at or above which a pair of these ``durations`` is accepted at operating point ``which``."""
        if self.duration is not None and durations is not None and which in self.llr_thresholds:
            slope, offset = self._slope_offset(durations, 1)
            return float((self.llr_thresholds[which] - offset[0]) / slope[0])
        if which not in self.thresholds:
            known = ", ".join(sorted(self.thresholds)) or "none"
            raise ConfigError(f"no calibrated {which!r} threshold (stored: {known}).")
        return float(self.thresholds[which])

    def to_dict(self) -> dict:
        """The JSON form stored in the model artefact."""
        d = {
            "thresholds": dict(self.thresholds),
            "logistic": {"a": self.a, "b": self.b, "p_target": self.p_target},
            "fitted_on": dict(self.fitted_on),
        }
        if self.duration is not None:
            d["duration"] = dict(vars(self.duration))
            d["llr_thresholds"] = dict(self.llr_thresholds)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        """Inverse of :meth:`to_dict`; also reads calibrations stored before duration terms existed."""
        try:
            lg = d["logistic"]
            duration = DurationTerms(**{k: float(v) for k, v in d["duration"].items()}) if d.get("duration") else None
            return cls(
                float(lg["a"]),
                float(lg["b"]),
                float(lg.get("p_target", 0.5)),
                {k: float(v) for k, v in d.get("thresholds", {}).items()},
                dict(d.get("fitted_on", {})),
                duration,
                {k: float(v) for k, v in d.get("llr_thresholds", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"calibration entry is not valid ({exc!r}); refit it with fit_calibration.") from exc


def decision_threshold(stored: dict, threshold: float | None, seconds=None) -> tuple[float | None, str]:
    """The threshold to decide with for two sides of ``seconds``, and where it comes from, given a
    model's stored calibration entry ``stored``: ``threshold`` when given, else the calibrated EER
    threshold for these lengths, else ``(None, "none")``."""
    if threshold is not None:
        return float(threshold), "given"
    if stored.get("logistic"):
        return Calibration.from_dict(stored).threshold("eer", seconds), "calibration"
    if "eer" in stored.get("thresholds", {}):
        return float(stored["thresholds"]["eer"]), "calibration"
    return None, "none"
