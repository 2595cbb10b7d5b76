"""Every metric of one system on one protocol: verification (EER with its interval, minDCF,
minCllr), ranking (MNR, recall@k, mAP), the identification probe, and embedding geometry
(alignment, uniformity). The inputs travel together in :class:`MetricInputs`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DatasetError, TrialsError
from ..records import Segment
from .calibration import min_cllr
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
from .trials import Trial

P_TARGETS = (0.01, 0.05)
"""Prior target probabilities at which minDCF is reported."""

RECALL_KS = (1, 5, 10)
UNIFORMITY_MAX_POINTS = 2000
"""Uniformity uses all pairs of at most this many embeddings (a seeded subset beyond it)."""


@dataclass(frozen=True)
class MetricInputs:
    """One system's embeddings and trial scores, with the protocol they are measured under.

    Rows of ``embeddings`` follow ``segments`` (ids ``ids``, singers ``singers``); ``scores`` and
    ``labels`` follow ``trials``, whose sides' singers are ``enroll_singers``/``test_singers``.
    ``groups`` is the per-segment group a query may not match within (``None``: only itself).
    """

    embeddings: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    trials: Sequence[Trial]
    ids: Sequence[str]
    segments: Sequence[Segment]
    singers: np.ndarray
    groups: np.ndarray | None
    enroll_singers: np.ndarray
    test_singers: np.ndarray


@dataclass(frozen=True)
class MetricSettings:
    """How the metrics are drawn: MNR pool size, probe folds, bootstrap resamples and the seed."""

    mnr_k: int = 512
    probe_folds: int = 5
    n_boot: int = 1000
    seed: int = 0


def system_metrics(x: MetricInputs, settings: MetricSettings) -> tuple[dict, list[str]]:
    """All metrics of one system (a JSON-able dict) and the notes about what was left out."""
    notes: list[str] = []
    out = verification_metrics(x, settings, notes)
    out["mnr"] = mnr_metric(x, settings, notes)
    out["retrieval"] = retrieval_metrics(x)
    out["identification"] = identification_metric(x, settings)
    out["geometry"] = geometry_metrics(x, settings.seed)
    return out, notes


def verification_metrics(x: MetricInputs, settings: MetricSettings, notes: list[str]) -> dict:
    """EER (with a singer-clustered bootstrap interval), minDCF at :data:`P_TARGETS`, minCllr."""
    value, threshold = eer(x.scores, x.labels)
    out: dict = {"eer": {"value": value, "threshold": threshold, "ci95": None}}
    if settings.n_boot:
        try:
            ci = eer_ci(x.scores, x.labels, x.enroll_singers, x.test_singers, n_boot=settings.n_boot, seed=settings.seed)
            out["eer"]["ci95"] = list(ci)
        except (DatasetError, TrialsError) as exc:
            notes.append(f"no EER confidence interval: {exc}")
    out["min_dcf"] = {}
    for p in P_TARGETS:
        cost, thr = min_dcf(x.scores, x.labels, p_target=p)
        out["min_dcf"][f"{p:g}"] = {"value": cost, "threshold": thr}
    out["min_cllr"] = min_cllr(x.scores, x.labels)
    return out


def mnr_metric(x: MetricInputs, settings: MetricSettings, notes: list[str]) -> dict:
    """Mean normalised rank of each segment's true match among ``mnr_k`` other-singer segments."""
    ranks = normalized_ranks(
        x.embeddings, x.singers, songs=x.groups, k=settings.mnr_k, seed=settings.seed, cross_song=x.groups is not None
    )
    usable = ~np.isnan(ranks)
    if not usable.any():
        raise DatasetError(
            "MNR: no segment has a same-singer match under this condition (every singer has a single "
            "song/recording); evaluate with condition 'any' or add recordings."
        )
    if not usable.all():
        notes.append(f"MNR: {int((~usable).sum())} of {len(ranks)} queries have no same-singer match and were left out.")
    return {"value": float(ranks[usable].mean()), "k": settings.mnr_k, "n_queries": int(usable.sum())}


def retrieval_metrics(x: MetricInputs) -> dict:
    """Recall@k for :data:`RECALL_KS` and mean average precision, same-group items hidden."""
    recall = recall_at_k(x.embeddings, x.singers, ks=RECALL_KS, exclude=x.groups)
    out = {f"recall@{k}": v for k, v in recall.items()}
    out["map"] = mean_average_precision(x.embeddings, x.singers, exclude=x.groups)
    return out


def identification_metric(x: MetricInputs, settings: MetricSettings) -> dict | None:
    """The linear identification probe (folds by recording), or ``None`` with ``probe_folds=0``."""
    if not settings.probe_folds:
        return None
    recordings = [s.path for s in x.segments]
    try:
        return linear_probe(x.embeddings, x.singers, recordings, n_folds=settings.probe_folds, seed=settings.seed)
    except DatasetError as exc:
        raise DatasetError(f"identification probe: {exc} Or leave the probe out (probe_folds=0, --probe-folds 0).") from None


def geometry_metrics(x: MetricInputs, seed: int) -> dict:
    """Alignment of target-trial pairs and uniformity of (at most :data:`UNIFORMITY_MAX_POINTS`) embeddings."""
    row = {i: r for r, i in enumerate(x.ids)}
    target = [t for t in x.trials if t.target]
    a = np.array([row[t.enroll] for t in target], dtype=np.int64)
    b = np.array([row[t.test] for t in target], dtype=np.int64)
    emb = x.embeddings
    subset = np.arange(len(emb))
    if len(subset) > UNIFORMITY_MAX_POINTS:
        subset = np.sort(np.random.default_rng(seed).choice(len(emb), UNIFORMITY_MAX_POINTS, replace=False))
    return {
        "alignment": alignment(emb[a], emb[b]),
        "n_target_pairs": len(target),
        "uniformity": uniformity(emb[subset]),
        "n_uniformity_points": len(subset),
    }
