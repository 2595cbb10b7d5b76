"""Accuracy guard of the faster inference paths: how far a path's embeddings move from fp32.

A path (int8, bf16, ...) is a function ``waveform (batch, samples) -> embeddings (batch, dim)``.
:func:`accuracy_guard` runs it and the fp32 reference on held-out clips of the built-in corpus
and reports the cosine between the two embeddings of every clip (the worst clip counts) and the
change of the equal error rate over all clip pairs of those clips (same singer or not). The path
passes when the worst cosine is at least :data:`MIN_COSINE` and the EER moves by at most
:data:`MAX_EER_CHANGE`.

The clips come from :mod:`singerid.data.synth`, rendered in memory and seeded: the held-out
clips (:func:`guard_clips`) and the calibration clips of static quantization
(:func:`calibration_clips`) are sung by different singers, so a path is never judged on the
audio it was calibrated with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from ..audio import SAMPLE_RATE
from ..data.synth import sample_singer, sing_song
from ..eval.metrics import eer
from ..vectors import l2_normalize

MIN_COSINE = 0.995
"""Lowest accepted cosine between a path's embedding and fp32's, on every held-out clip."""
MAX_EER_CHANGE = 0.005
"""Largest accepted |EER(path) - EER(fp32)| on the held-out trials (0.005 = half a point)."""
GUARD_SEED = 20
"""Corpus seed of the held-out and calibration clips."""
GUARD_SINGERS, GUARD_SONGS, CLIPS_PER_SONG = 8, 2, 2
"""Held-out clips: this many singers x songs each x clips cut from each song."""
CALIBRATION_SINGER_OFFSET = 1000
"""Calibration clips are sung by corpus singers from this index on, none of them a held-out singer."""
CALIBRATION_CLIPS = 16

Embedder = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GuardResult:
    """What :func:`accuracy_guard` measured for one path against fp32."""

    precision: str
    min_cosine: float
    eer_fp32: float
    eer: float
    clips: int
    trials: int
    passed: bool

    @property
    def eer_change(self) -> float:
        return self.eer - self.eer_fp32

    def to_dict(self) -> dict:
        return {**asdict(self), "eer_change": self.eer_change, "min_cosine_required": MIN_COSINE,
                "max_eer_change": MAX_EER_CHANGE}

    def summary(self) -> str:
        """One line: the measurements beside the limits they are judged by."""
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"accuracy guard {verdict} for {self.precision}: min cosine to fp32 {self.min_cosine:.5f} "
            f"(>= {MIN_COSINE}), EER {100 * self.eer_fp32:.2f}% -> {100 * self.eer:.2f}% "
            f"(change {100 * self.eer_change:+.2f} points, limit {100 * MAX_EER_CHANGE:.1f}) "
            f"on {self.clips} held-out clips, {self.trials} trials"
        )


def _cut(singer_indices: range, songs: int, per_song: int, seconds: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_song`` consecutive clips of ``seconds`` from each of ``songs`` songs of each singer."""
    length = int(round(seconds * SAMPLE_RATE))
    clips, labels = [], []
    for i in singer_indices:
        singer = sample_singer(seed, i)
        for j in range(songs):
            audio, _, _ = sing_song(singer, seed, j, seconds * per_song + 1.0)
            # Skip the first half second: songs may start with a rest.
            start = SAMPLE_RATE // 2
            for k in range(per_song):
                clips.append(audio[start + k * length : start + (k + 1) * length])
                labels.append(i)
    return np.stack(clips).astype(np.float32), np.asarray(labels)


def guard_clips(seconds: float, seed: int = GUARD_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Held-out clips ``(n, samples)`` of ``seconds`` each, and their singer labels ``(n,)``."""
    return _cut(range(GUARD_SINGERS), GUARD_SONGS, CLIPS_PER_SONG, seconds, seed)


def calibration_clips(seconds: float, n: int = CALIBRATION_CLIPS, seed: int = GUARD_SEED) -> np.ndarray:
    """``n`` clips ``(n, samples)`` for static quantization, from singers the guard never uses."""
    singers = range(CALIBRATION_SINGER_OFFSET, CALIBRATION_SINGER_OFFSET + (n + 1) // 2)
    return _cut(singers, 1, 2, seconds, seed)[0][:n]


def _pair_scores(emb: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine score and same-singer label of every unordered pair of rows."""
    a, b = np.triu_indices(len(emb), k=1)
    return np.einsum("ij,ij->i", emb[a], emb[b]), labels[a] == labels[b]


def accuracy_guard(
    reference: Embedder,
    candidate: Embedder,
    clips: np.ndarray,
    labels: np.ndarray,
    precision: str,
    batch: int = 8,
) -> GuardResult:
    """Compare ``candidate`` with the fp32 ``reference`` on ``clips`` (sung by ``labels``).

    Both run ``batch`` clips per call; their outputs are L2-normalised here, so an unnormalised
    path is judged by direction only, like every singerid score.
    """

    def run(fn: Embedder) -> np.ndarray:
        parts = [np.asarray(fn(clips[i : i + batch]), dtype=np.float64) for i in range(0, len(clips), batch)]
        return l2_normalize(np.concatenate(parts), dtype=np.float64)

    ref, got = run(reference), run(candidate)
    cosine = np.einsum("ij,ij->i", ref, got)
    # A NaN cosine (a path that returns NaN) must fail, so the worst clip is taken NaN-first.
    worst = float(np.min(cosine)) if np.all(np.isfinite(cosine)) else float("nan")
    s_ref, y = _pair_scores(ref, labels)
    s_got, _ = _pair_scores(got, labels)
    eer_ref = eer(s_ref, y)[0]
    eer_got = eer(np.nan_to_num(s_got, nan=-1.0), y)[0]
    passed = bool(worst >= MIN_COSINE and abs(eer_got - eer_ref) <= MAX_EER_CHANGE)
    return GuardResult(precision, worst, eer_ref, eer_got, len(clips), len(y), passed)
