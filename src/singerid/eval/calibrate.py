"""Fit a model's calibration on development recordings so that its thresholds hold for any length,
and measure the error rates those thresholds give.

Trials are drawn twice from the same recordings: between clips (the evaluation segments) and
between whole recordings. Both sets, with the durations of each side, fit one duration-aware
calibration (:func:`singerid.eval.calibration.fit_calibration`). :func:`operating_points` then
reports, for clips and for whole recordings separately, the EER and the false-accept and
false-reject rates at the calibrated EER threshold for each trial's lengths.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..audio import audio_info
from ..errors import TrialsError
from ..model.calibration import Calibration
from ..records import Segment
from .cache import embed_cached
from .calibration import fit_calibration
from .metrics import eer
from .trials import TrialsShortfallWarning, make_trials, score_trials

LENGTHS = ("clips", "recordings")
"""The two kinds of trials: between evaluation segments, and between whole recordings."""


def whole_recordings(segments: Sequence[Segment]) -> list[Segment]:
    """One segment per recording of ``segments``, spanning the whole file."""
    first: dict[str, Segment] = {}
    for s in segments:
        first.setdefault(s.path, s)
    return [
        Segment(path, s.singer, s.song, 0.0, audio_info(path).duration, s.technique, s.gender)
        for path, s in sorted(first.items())
    ]


@dataclass(frozen=True)
class ScoredTrials:
    """Cosine scores of one trial set, its labels and the durations (seconds) of both sides."""

    scores: np.ndarray
    labels: np.ndarray
    durations: np.ndarray


def scored_trials(
    system,
    segments: Sequence[Segment],
    *,
    condition: str = "cross-song",
    n_target: int = 50,
    n_nontarget: int = 50,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
) -> dict[str, ScoredTrials]:
    """Draw clip and whole-recording trials from ``segments`` and score them with ``system``."""
    out = {}
    for kind, segs in (("clips", list(segments)), ("recordings", whole_recordings(segments))):
        with warnings.catch_warnings():
            # Development singers have few songs: all their pairs are used, and the counts are reported.
            warnings.simplefilter("ignore", TrialsShortfallWarning)
            trials = make_trials(segs, n_target=n_target, n_nontarget=n_nontarget, condition=condition, seed=seed)
        if not trials:
            raise TrialsError(f"no {condition} trials between {kind}: calibration needs singers with several songs.")
        ids = [s.id for s in segs]
        emb, _ = embed_cached(system, segs, cache_dir=cache_dir, progress=progress)
        seconds = {s.id: s.duration for s in segs}
        out[kind] = ScoredTrials(
            score_trials(trials, ids, emb).astype(np.float64),
            np.array([t.target for t in trials]),
            np.array([(seconds[t.enroll], seconds[t.test]) for t in trials], dtype=np.float64),
        )
    return out


def fit_for_lengths(trials: dict[str, ScoredTrials]) -> Calibration:
    """One duration-aware calibration fitted on all ``trials`` together, each kind weighing the same."""
    scores = np.concatenate([t.scores for t in trials.values()])
    labels = np.concatenate([t.labels for t in trials.values()])
    durations = np.concatenate([t.durations for t in trials.values()])
    groups = np.concatenate([np.full(len(t.scores), kind) for kind, t in trials.items()])
    return fit_calibration(scores, labels, durations=durations, groups=groups)


def operating_points(calibration: Calibration, trials: dict[str, ScoredTrials], which: str = "eer") -> dict[str, dict]:
    """Per kind of trial: its EER and the false-accept / false-reject rates at the calibrated
    ``which`` threshold for each trial's own lengths (rates in [0, 1])."""
    out = {}
    for kind, t in trials.items():
        thresholds = np.array([calibration.threshold(which, d) for d in t.durations])
        accept = t.scores >= thresholds
        out[kind] = {
            "trials": int(len(t.scores)),
            "eer": float(eer(t.scores, t.labels)[0]),
            "false_accept": float(accept[~t.labels].mean()),
            "false_reject": float((~accept[t.labels]).mean()),
            "threshold_range": [float(thresholds.min()), float(thresholds.max())],
            "median_seconds": float(np.median(t.durations)),
        }
    return out
