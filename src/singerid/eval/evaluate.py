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

import hashlib
import os
import time
import warnings
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import CheckpointError, DatasetError, TrialsError
from ..fileio import atomic_path
from ..records import Segment
from ..vectors import l2_normalize
from .calibration import as_norm_trials, fit_calibration, min_cllr, store_calibration
from .metrics import (
    alignment,
    eer,
    eer_ci,
    mean_average_precision,
    min_dcf,
    normalized_ranks,
    recall_at_k,
    uniformity,
)
from .probe import linear_probe
from .trials import (
    CONDITIONS,
    Trial,
    check_trials_against,
    make_trials,
    read_trials,
    score_trials,
    trial_labels,
)

P_TARGETS = (0.01, 0.05)
"""Prior target probabilities at which minDCF is reported."""

RECALL_KS = (1, 5, 10)
UNIFORMITY_MAX_POINTS = 2000
"""Uniformity uses all pairs of at most this many embeddings (a seeded subset beyond it)."""

_CACHE_VERSION = "1"


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
    if not systems:
        raise DatasetError("no systems to evaluate; pass a model and/or baselines.")
    names = [s.name for s in systems]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DatasetError(f"system names must be distinct; {', '.join(dup)} occur more than once. Give each a name.")
    segs = list(segments)
    ids = _check_segments(segs)
    singers = np.array([s.singer for s in segs])
    trial_list, trials_source, shortfall = _trials(trials, segs, ids, condition, n_target, n_nontarget, seed)
    labels = trial_labels(trial_list)
    if labels.all() or not labels.any():
        raise TrialsError(
            f"the trial list has {int(labels.sum())} target trials of {len(labels)}; it needs both target "
            "and non-target trials. Regenerate it with `singerid trials`."
        )
    groups = exclusion_groups(segs, condition)
    singer_of = dict(zip(ids, singers))
    enroll_singers = np.array([singer_of[t.enroll] for t in trial_list])
    test_singers = np.array([singer_of[t.test] for t in trial_list])
    cohort_segs = _check_cohort(cohort, set(enroll_singers) | set(test_singers))

    results: dict = {"protocol": {}, "systems": {}, "warnings": []}
    arrays = EvaluationArrays(segment_ids=ids, singers=singers.tolist(), trials=trial_list)
    for system in systems:
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            emb, cached = embed_cached(system, segs, cache_dir=cache_dir, progress=progress)
            cosine = score_trials(trial_list, ids, emb)
            scores = cosine
            if cohort_segs is not None:
                cohort_emb, _ = embed_cached(system, cohort_segs, cache_dir=cache_dir, progress=progress)
                scores = as_norm_trials(trial_list, ids, emb, cohort_emb, top_k=asnorm_top_k)
            seconds = time.perf_counter() - start
            metrics = _system_metrics(
                emb, scores, labels, trial_list, ids, segs, singers, groups, enroll_singers, test_singers,
                mnr_k=mnr_k, probe_folds=probe_folds, n_boot=n_boot, seed=seed,
            )
        notes = _keep_notes(caught) + metrics.pop("notes")
        if cohort_segs is not None:
            metrics["eer_cosine"] = eer(cosine, labels)[0]
        results["systems"][system.name] = {
            "spec": getattr(system, "spec", system.name),
            "fingerprint": system.fingerprint,
            "dim": int(emb.shape[1]),
            "cached": cached,
            "embed_seconds": round(seconds, 3),
            **metrics,
            "warnings": notes,
        }
        arrays.systems[system.name] = SystemArrays(scores=scores, labels=labels, embeddings=emb, cosine=cosine)

    n_tar = int(labels.sum())
    results["protocol"] = {
        "condition": condition,
        "trials": trials_source,
        "n_trials": len(trial_list),
        "n_target": n_tar,
        "n_nontarget": len(trial_list) - n_tar,
        "n_target_per_singer": n_target if trials_source == "generated" else None,
        "n_nontarget_per_singer": n_nontarget if trials_source == "generated" else None,
        "n_singers_short_of_trials": len(shortfall),
        "n_segments": len(segs),
        "n_singers": int(len(np.unique(singers))),
        "n_recordings": len({s.path for s in segs}),
        "n_songs": len({(s.singer, s.song) for s in segs}),
        "segment_seconds": float(np.median([s.duration for s in segs])),
        "mnr_k": mnr_k,
        "probe_folds": probe_folds,
        "n_boot": n_boot,
        "seed": seed,
        "score": "cosine" if cohort_segs is None else "as-norm",
        "cohort_segments": None if cohort_segs is None else len(cohort_segs),
        "cohort_singers": None if cohort_segs is None else len({s.singer for s in cohort_segs}),
        "asnorm_top_k": None if cohort_segs is None else asnorm_top_k,
    }
    if shortfall:
        results["warnings"].append(
            f"{len(shortfall)} singer(s) had fewer unique pairs than asked for; all of their pairs were used."
        )
    return Evaluation(results, arrays)


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


def _system_metrics(
    emb, scores, labels, trial_list, ids, segs, singers, groups, enroll_singers, test_singers,
    *, mnr_k, probe_folds, n_boot, seed,
) -> dict:
    notes: list[str] = []
    value, threshold = eer(scores, labels)
    out: dict = {"eer": {"value": value, "threshold": threshold, "ci95": None}}
    if n_boot:
        try:
            out["eer"]["ci95"] = list(eer_ci(scores, labels, enroll_singers, test_singers, n_boot=n_boot, seed=seed))
        except (DatasetError, TrialsError) as exc:
            notes.append(f"no EER confidence interval: {exc}")
    out["min_dcf"] = {}
    for p in P_TARGETS:
        cost, thr = min_dcf(scores, labels, p_target=p)
        out["min_dcf"][f"{p:g}"] = {"value": cost, "threshold": thr}
    out["min_cllr"] = min_cllr(scores, labels)

    ranks = normalized_ranks(emb, singers, songs=groups, k=mnr_k, seed=seed, cross_song=groups is not None)
    usable = ~np.isnan(ranks)
    if not usable.any():
        raise DatasetError(
            "MNR: no segment has a same-singer match under this condition (every singer has a single "
            "song/recording); evaluate with condition 'any' or add recordings."
        )
    if not usable.all():
        notes.append(f"MNR: {int((~usable).sum())} of {len(ranks)} queries have no same-singer match and were left out.")
    out["mnr"] = {"value": float(ranks[usable].mean()), "k": mnr_k, "n_queries": int(usable.sum())}

    recall = recall_at_k(emb, singers, ks=RECALL_KS, exclude=groups)
    out["retrieval"] = {f"recall@{k}": v for k, v in recall.items()}
    out["retrieval"]["map"] = mean_average_precision(emb, singers, exclude=groups)

    out["identification"] = None
    if probe_folds:
        recordings = [s.path for s in segs]
        try:
            probe = linear_probe(emb, singers, recordings, n_folds=probe_folds, seed=seed)
        except DatasetError as exc:
            raise DatasetError(
                f"identification probe: {exc} Or leave the probe out (probe_folds=0, --probe-folds 0)."
            ) from None
        out["identification"] = probe

    row = {i: r for r, i in enumerate(ids)}
    target = [t for t in trial_list if t.target]
    a = np.array([row[t.enroll] for t in target], dtype=np.int64)
    b = np.array([row[t.test] for t in target], dtype=np.int64)
    subset = np.arange(len(emb))
    if len(subset) > UNIFORMITY_MAX_POINTS:
        subset = np.sort(np.random.default_rng(seed).choice(len(emb), UNIFORMITY_MAX_POINTS, replace=False))
    out["geometry"] = {
        "alignment": alignment(emb[a], emb[b]),
        "n_target_pairs": len(target),
        "uniformity": uniformity(emb[subset]),
        "n_uniformity_points": len(subset),
    }
    out["notes"] = notes
    return out


# ---------------------------------------------------------------------------------------------
# Embedding cache


def cache_key(fingerprint: str, segments: Sequence[Segment]) -> str:
    """SHA-256 of the system fingerprint, the segment list and each audio file's size and mtime.

    Any change of model, segment (order included) or audio file gives a new key.
    """
    h = hashlib.sha256(f"singerid-embeddings/{_CACHE_VERSION}\n{fingerprint}\n".encode())
    stats: dict[str, str] = {}
    for s in segments:
        if s.path not in stats:
            try:
                st = os.stat(s.path)
            except OSError as exc:
                raise DatasetError(f"{s.path}: cannot read the audio file ({exc.strerror}); fix the manifest.") from None
            stats[s.path] = f"{st.st_size}:{st.st_mtime_ns}"
        h.update(f"{s.id}\t{s.duration!r}\t{stats[s.path]}\n".encode())
    return h.hexdigest()


def embed_cached(
    system, segments: Sequence[Segment], *, cache_dir=None, progress: bool = True
) -> tuple[np.ndarray, bool]:
    """``system.embed(segments)``, read from / written to ``cache_dir`` when given.

    Returns ``(embeddings, from_cache)``. The cache file is named after the system and the
    :func:`cache_key`; a file that cannot be read is recomputed (with a warning) and replaced.
    """
    segs = list(segments)
    if cache_dir is None:
        return _embed(system, segs, progress), False
    key = cache_key(system.fingerprint, segs)
    path = Path(cache_dir) / f"{_safe_name(system.name)}-{key[:24]}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) == key and f["embeddings"].shape[0] == len(segs):
                    return np.asarray(f["embeddings"], dtype=np.float32), True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            warnings.warn(f"{path}: unreadable embedding cache ({exc}); recomputing it.", stacklevel=2)
    emb = _embed(system, segs, progress)
    with atomic_path(path) as tmp:
        np.savez(tmp, embeddings=emb, key=np.array(key), fingerprint=np.array(system.fingerprint))
    return emb, False


def _embed(system, segs: list[Segment], progress: bool) -> np.ndarray:
    """The system's embeddings, checked and L2-normalised (float32)."""
    return l2_normalize(system.embed(segs, progress=progress), what=f"system {system.name!r}", rows=len(segs))


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60] or "system"


# ---------------------------------------------------------------------------------------------
# Calibration


def calibrate_model(model_path: str | os.PathLike, evaluation: Evaluation, system: str = "model") -> dict:
    """Fit a score calibration on ``system``'s cosine trial scores and store it in the artefact.

    The evaluated trial list acts as the development list (:func:`singerid.eval.calibration.fit_calibration`:
    an affine score-to-llr map plus thresholds at the EER, at 1 % false acceptance and at the
    Bayes decision point); ``SingerEncoder.verify`` then uses the stored ``"eer"`` threshold.
    Returns the calibration as stored.
    """
    if system not in evaluation["systems"]:
        raise CheckpointError(
            f"cannot calibrate {model_path}: no system named {system!r} was evaluated "
            f"(evaluated: {', '.join(evaluation['systems'])})."
        )
    arrays = evaluation.arrays.systems[system]
    fit = fit_calibration(arrays.cosine, arrays.labels)
    protocol = evaluation["protocol"]
    fit.fitted_on.update({k: protocol[k] for k in ("condition", "trials", "n_segments", "n_singers", "seed")})
    store_calibration(model_path, fit)
    return fit.to_dict()
