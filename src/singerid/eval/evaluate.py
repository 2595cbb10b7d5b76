"""Evaluate singer-identity systems on one set of segments under one protocol.

Every system embeds every segment once (cached on disk, keyed by the system's fingerprint and
the exact segment list); all systems are then scored on the same trial list, the same MNR
draws, the same retrieval queries and the same identification folds, so their numbers compare.

The result is an :class:`Evaluation`: a plain JSON-able ``dict`` (``{"protocol": ...,
"systems": {name: metrics}, "warnings": [...]}``) that also carries the arrays the report
plots (trial scores, labels, embeddings) in its :attr:`Evaluation.arrays` attribute, which
``json.dumps`` never sees.

Which pairs count as "the same singer" follows ``condition`` throughout:

===================  ============================  ==========================================
condition            target trials (trials.py)     MNR true match / retrieval exclusion
===================  ============================  ==========================================
cross-song           different songs               another song of the singer; same song hidden
cross-recording      different files               another file; same file hidden
cross-technique      different techniques          another file; same file hidden
same-song, any       see trials.py                 any other segment; only the query hidden
===================  ============================  ==========================================
"""

from __future__ import annotations

import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import DatasetError, TrialsError
from ..records import Segment
from .cache import embed_cached
from .calibration import as_norm_trials
from .metrics import eer
from .system_metrics import MetricInputs, MetricSettings, system_metrics
from .trials import (
    CONDITIONS,
    Trial,
    check_trials_against,
    make_trials,
    read_trials,
    score_trials,
    trial_labels,
)


@dataclass
class SystemArrays:
    """What one system produced: per-trial scores and labels, and per-segment embeddings.

    ``scores`` are the scores the metrics used (AS-normalised when a cohort was given);
    ``cosine`` the raw cosine scores (what a deployed model's thresholds apply to).
    """

    scores: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray
    cosine: np.ndarray


@dataclass
class EvaluationArrays:
    """Arrays behind an :class:`Evaluation`; rows of every ``embeddings`` follow ``segment_ids``."""

    segment_ids: list[str]
    singers: list[str]
    trials: list[Trial] = field(default_factory=list)
    systems: dict[str, SystemArrays] = field(default_factory=dict)


class Evaluation(dict):
    """The JSON-able results, plus :attr:`arrays` (scores, labels, embeddings) for plots."""

    def __init__(self, results: dict, arrays: EvaluationArrays):
        super().__init__(results)
        self.arrays = arrays


@dataclass(frozen=True)
class TrialSet:
    """The trial list of an evaluation with what every system's metrics need from it."""

    trials: list[Trial]
    labels: np.ndarray
    source: str
    shortfall: dict
    enroll_singers: np.ndarray
    test_singers: np.ndarray


def evaluate(
    systems: Sequence,
    segments: Sequence[Segment],
    *,
    trials: Sequence[Trial] | str | os.PathLike | None = None,
    condition: str = "cross-song",
    n_target: int = 50,
    n_nontarget: int = 50,
    mnr_k: int = 512,
    probe_folds: int = 5,
    n_boot: int = 1000,
    seed: int = 0,
    cohort: Sequence[Segment] | None = None,
    asnorm_top_k: int | None = 200,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Evaluation:
    """Embed ``segments`` with every system and compute all metrics; see the module docstring.

    ``systems`` are :class:`~singerid.eval.baselines.systems.System` objects (distinct names).
    ``trials`` is a trial list or a trial file; without it one is drawn from ``segments`` with
    :func:`~singerid.eval.trials.make_trials` (``n_target``/``n_nontarget`` per singer, ``seed``).
    ``probe_folds=0`` leaves out the identification probe; ``n_boot`` resamples give the
    confidence intervals (0 leaves them out). With ``cohort`` (segments of singers absent from
    the trials) trial scores are AS-normalised against it (:func:`singerid.eval.calibration.as_norm`,
    ``asnorm_top_k`` best cohort scores per side) and the raw cosine EER is kept as
    ``eer_cosine``. With ``cache_dir`` embeddings are stored there and reused while the system
    and the segment list are unchanged.
    """
    if condition not in CONDITIONS:
        raise TrialsError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}.")
    _check_systems(systems)
    segs = list(segments)
    ids = _check_segments(segs)
    singers = np.array([s.singer for s in segs])
    trial_set = _trial_set(trials, segs, ids, singers, condition, n_target, n_nontarget, seed)
    cohort_segs = _check_cohort(cohort, set(trial_set.enroll_singers) | set(trial_set.test_singers))
    groups = exclusion_groups(segs, condition)
    settings = MetricSettings(mnr_k=mnr_k, probe_folds=probe_folds, n_boot=n_boot, seed=seed)

    results: dict = {"protocol": {}, "systems": {}, "warnings": []}
    arrays = EvaluationArrays(segment_ids=ids, singers=singers.tolist(), trials=trial_set.trials)
    for system in systems:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emb, cached = embed_cached(system, segs, cache_dir=cache_dir, progress=progress)
            cosine = score_trials(trial_set.trials, ids, emb)
            scores = cosine
            if cohort_segs is not None:
                cohort_emb, _ = embed_cached(system, cohort_segs, cache_dir=cache_dir, progress=progress)
                scores = as_norm_trials(trial_set.trials, ids, emb, cohort_emb, top_k=asnorm_top_k)
            seconds = time.perf_counter() - start
            inputs = MetricInputs(
                embeddings=emb, scores=scores, labels=trial_set.labels, trials=trial_set.trials, ids=ids,
                segments=segs, singers=singers, groups=groups,
                enroll_singers=trial_set.enroll_singers, test_singers=trial_set.test_singers,
            )  # fmt: skip
            metrics, notes = system_metrics(inputs, settings)
        if cohort_segs is not None:
            metrics["eer_cosine"] = eer(cosine, trial_set.labels)[0]
        results["systems"][system.name] = {
            "spec": getattr(system, "spec", system.name),
            "fingerprint": system.fingerprint,
            "dim": int(emb.shape[1]),
            "cached": cached,
            "embed_seconds": round(seconds, 3),
            **metrics,
            "warnings": _keep_notes(caught) + notes,
        }
        arrays.systems[system.name] = SystemArrays(scores=scores, labels=trial_set.labels, embeddings=emb, cosine=cosine)

    results["protocol"] = _protocol(segs, singers, trial_set, condition, n_target, n_nontarget, settings, cohort_segs, asnorm_top_k)
    if trial_set.shortfall:
        results["warnings"].append(
            f"{len(trial_set.shortfall)} singer(s) had fewer unique pairs than asked for; all of their pairs were used."
        )
    return Evaluation(results, arrays)


def _protocol(segs, singers, trial_set: TrialSet, condition, n_target, n_nontarget, settings: MetricSettings, cohort_segs, asnorm_top_k) -> dict:
    """The JSON description of what was measured, for the report and results.json."""
    n_tar = int(trial_set.labels.sum())
    generated = trial_set.source == "generated"
    return {
        "condition": condition,
        "trials": trial_set.source,
        "n_trials": len(trial_set.trials),
        "n_target": n_tar,
        "n_nontarget": len(trial_set.trials) - n_tar,
        "n_target_per_singer": n_target if generated else None,
        "n_nontarget_per_singer": n_nontarget if generated else None,
        "n_singers_short_of_trials": len(trial_set.shortfall),
        "n_segments": len(segs),
        "n_singers": int(len(np.unique(singers))),
        "n_recordings": len({s.path for s in segs}),
        "n_songs": len({(s.singer, s.song) for s in segs}),
        "segment_seconds": float(np.median([s.duration for s in segs])),
        "mnr_k": settings.mnr_k,
        "probe_folds": settings.probe_folds,
        "n_boot": settings.n_boot,
        "seed": settings.seed,
        "score": "cosine" if cohort_segs is None else "as-norm",
        "cohort_segments": None if cohort_segs is None else len(cohort_segs),
        "cohort_singers": None if cohort_segs is None else len({s.singer for s in cohort_segs}),
        "asnorm_top_k": None if cohort_segs is None else asnorm_top_k,
    }


def _check_systems(systems: Sequence) -> None:
    if not systems:
        raise DatasetError("no systems to evaluate; pass a model and/or baselines.")
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"system names must be distinct; {', '.join(dup)} occur more than once. Give each a name.")


def _trial_set(trials, segs, ids, singers, condition, n_target, n_nontarget, seed) -> TrialSet:
    trial_list, source, shortfall = _trials(trials, segs, ids, condition, n_target, n_nontarget, seed)
    labels = trial_labels(trial_list)
    if labels.all() or not labels.any():
        raise TrialsError(
            f"the trial list has {int(labels.sum())} target trials of {len(labels)}; it needs both target "
            "and non-target trials. Regenerate it with `singerid trials`."
        )
    singer_of = dict(zip(ids, singers))
    return TrialSet(
        trials=trial_list,
        labels=labels,
        source=source,
        shortfall=shortfall,
        enroll_singers=np.array([singer_of[t.enroll] for t in trial_list]),
        test_singers=np.array([singer_of[t.test] for t in trial_list]),
    )


_LIBRARY_NOISE = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def _keep_notes(caught: list[warnings.WarningMessage]) -> list[str]:
    """Messages of the caught warnings that concern the evaluation; the rest are re-issued."""
    notes = []
    for w in caught:
        if issubclass(w.category, _LIBRARY_NOISE):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif str(w.message) not in notes:
            notes.append(str(w.message))
    return notes


def _check_segments(segs: list[Segment]) -> list[str]:
    if not segs:
        raise DatasetError("no segments to evaluate; check the manifest or data folder.")
    ids = [s.id for s in segs]
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise DatasetError(
            f"{len(dup)} segment id(s) occur more than once (e.g. {', '.join(dup[:3])}); "
            "remove the duplicate rows from the segment manifest."
        )
    singers = sorted({s.singer for s in segs})
    if len(singers) < 2:
        raise DatasetError(
            f"evaluation needs segments of at least 2 singers, got {len(singers)} ({', '.join(singers)}); "
            "add recordings of more singers."
        )
    return ids


def _check_cohort(cohort: Sequence[Segment] | None, trial_singers: set[str]) -> list[Segment] | None:
    if cohort is None:
        return None
    segs = list(cohort)
    if not segs:
        raise DatasetError("the AS-norm cohort is empty; pass segments of singers outside the evaluation.")
    shared = sorted({s.singer for s in segs} & trial_singers)
    if shared:
        raise DatasetError(
            f"{len(shared)} cohort singer(s) also occur in the trials (e.g. {', '.join(shared[:3])}); "
            "an AS-norm cohort must hold other singers only. Remove them from the cohort manifest."
        )
    return segs


def _trials(trials, segs, ids, condition, n_target, n_nontarget, seed) -> tuple[list[Trial], str, dict]:
    if trials is None:
        with warnings.catch_warnings():
            # The shortfall is kept in the protocol instead of being printed once per call.
            warnings.simplefilter("ignore")
            made = make_trials(segs, n_target=n_target, n_nontarget=n_nontarget, condition=condition, seed=seed)
        return list(made), "generated", made.shortfall
    if isinstance(trials, (str, os.PathLike)):
        source = str(trials)
        trial_list = read_trials(trials)
        try:
            check_trials_against(trial_list, ids)
        except TrialsError as exc:
            raise TrialsError(f"{source}: {exc}") from None
        return trial_list, source, {}
    trial_list = list(trials)
    if not trial_list:
        raise TrialsError("the trial list is empty; generate one with `singerid trials`.")
    check_trials_against(trial_list, ids)
    return trial_list, "given", {}


def exclusion_groups(segments: Sequence[Segment], condition: str) -> np.ndarray | None:
    """Per-segment group that a query may not match within (MNR true match, retrieval results).

    ``cross-song``: the singer's song; ``cross-recording``/``cross-technique``: the source file;
    ``same-song``/``any``: ``None`` (only the query itself is excluded).
    """
    if condition == "cross-song":
        return np.array([f"{s.singer}\x1f{s.song}" for s in segments])
    if condition in ("cross-recording", "cross-technique"):
        return np.array([s.path for s in segments])
    return None

