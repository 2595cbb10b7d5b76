"""Handcrafted baselines: MFCC statistics (timbre) and F0 statistics (pitch).

Both map a mono clip to one fixed-length vector, to be scored or probed like an embedding.
MFCC mean/std summarise the average spectral envelope; F0 statistics describe only where
and how much the voice moves in pitch, which is what a singer's identity should not be.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...audio import SAMPLE_RATE
from ...errors import AudioError

N_MFCC = 20
"""MFCC coefficients per frame; :func:`mfcc_stats` returns twice as many values (mean, std)."""

F0_FEATURES = ("median", "mean", "std", "p10", "p90", "range", "voiced_fraction")
"""Names of the values :func:`f0_stats` returns, in order (pitch values in MIDI semitones)."""


def _check(audio: np.ndarray, sample_rate: int, source: str) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError(f"{source}: audio has shape {audio.shape}; pass one mono clip of shape (samples,).")
    if audio.size == 0:
        raise AudioError(f"{source}: audio is empty. Pass a clip that contains sound.")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{source}: audio holds NaN or infinite samples. Re-export the file; it is corrupt.")
    if sample_rate <= 0:
        raise AudioError(f"{source}: sample rate must be positive, got {sample_rate}.")
    return audio


def mfcc_stats(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Mean and standard deviation over time of ``n_mfcc`` MFCCs: float32 ``(2 * n_mfcc,)``.

    librosa's defaults (2048-point frames, hop 512, 128 mel bands, log power with an
    80 dB floor, orthonormal DCT-II).
    """
    import librosa

    audio = _check(audio, sample_rate, "mfcc_stats")
    mfcc = librosa.feature.mfcc(y=audio, sr=sample_rate, n_mfcc=n_mfcc)
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]).astype(np.float32)


def f0_stats(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fmin: float = 60.0, fmax: float = 1200.0, time_step: float = 0.01
) -> np.ndarray:
    """Statistics of the voiced F0 track (Praat autocorrelation): float32, see :data:`F0_FEATURES`.

    Pitch values are MIDI semitones (69 = 440 Hz); ``range`` is ``p90 - p10``. A clip with
    no voiced frame has NaN pitch values and a voiced fraction of 0.
    """
    import parselmouth

    audio = _check(audio, sample_rate, "f0_stats")
    pitch = parselmouth.Sound(audio.astype(np.float64), sampling_frequency=sample_rate).to_pitch(
        time_step=time_step, pitch_floor=fmin, pitch_ceiling=fmax
    )
    hz = pitch.selected_array["frequency"]
    voiced = hz[hz > 0]
    fraction = voiced.size / hz.size if hz.size else 0.0
    if voiced.size == 0:
        return np.array([np.nan] * (len(F0_FEATURES) - 1) + [fraction], dtype=np.float32)
    st = 69.0 + 12.0 * np.log2(voiced / 440.0)
    p10, p50, p90 = np.percentile(st, [10, 50, 90])
    return np.array([p50, st.mean(), st.std(), p10, p90, p90 - p10, fraction], dtype=np.float32)


def mfcc_stats_batch(clips: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE, n_mfcc: int = N_MFCC) -> np.ndarray:
    """:func:`mfcc_stats` of every clip, stacked: ``(len(clips), 2 * n_mfcc)``."""
    return np.stack([mfcc_stats(c, sample_rate, n_mfcc) for c in clips]) if len(clips) else np.zeros((0, 2 * n_mfcc), np.float32)


def f0_stats_batch(clips: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE, **kwargs) -> np.ndarray:
    """:func:`f0_stats` of every clip, stacked: ``(len(clips), len(F0_FEATURES))``."""
    if not len(clips):
        return np.zeros((0, len(F0_FEATURES)), np.float32)
    return np.stack([f0_stats(c, sample_rate, **kwargs) for c in clips])
