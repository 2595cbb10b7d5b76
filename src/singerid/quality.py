"""Input quality: effective bandwidth, clipping and level of a clip.

Models are trained on 44.1 kHz audio whose content reaches far above 8 kHz. A telephone-band
copy (8 kHz sampling) or a low-bit-rate lossy file has no content above a few kHz, and its
embedding moves away from the singer's. Such audio is still embedded, never refused, but every
result carries this measure and the command line warns about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE

MIN_BANDWIDTH_HZ = 11025.0
"""Below this effective bandwidth (half the band of 44.1 kHz training audio) a clip is flagged."""
CONTENT_FLOOR_DB = 90.0
"""A frequency carries content when its level is within this many dB of the clip's loudest band;
far above the quantisation noise of 16-bit audio, far below a real recording's noise floor."""
CLIPPED_FRACTION = 0.001
"""Share of samples at full scale above which a clip is flagged as clipped."""
LOW_LEVEL_DBFS = -45.0
"""RMS level (dB re full scale) below which a clip is flagged as very quiet."""


@dataclass(frozen=True)
class Quality:
    """What a clip offers the model: effective bandwidth (Hz), clipped share, RMS level (dBFS) and
    the plain-language warnings they raise (empty when the clip is fine)."""

    bandwidth_hz: float
    clipped_fraction: float
    level_dbfs: float
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        return {
            "bandwidth_hz": self.bandwidth_hz,
            "clipped_fraction": self.clipped_fraction,
            "level_dbfs": self.level_dbfs,
            "warnings": list(self.warnings),
        }


WELCH_SEGMENT = 4096
"""Samples per segment of the averaged spectrum (Welch's method, half-overlapping Hann windows)."""


def welch_psd(x: np.ndarray, sample_rate: int, nperseg: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One-sided power spectral density by Welch's method, as ``scipy.signal.welch`` with its
    defaults (periodic Hann window, half overlap, mean removed per segment, density scaling).

    Written out with numpy so that the inference path does not import ``scipy.signal`` (which pulls
    in ``scipy.stats``, a large share of a one-off command's start-up). Segments are transformed
    ``block`` at a time, so memory stays bounded for long recordings.
    """
    x = np.asarray(x, dtype=np.float64)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(nperseg) / nperseg)
    step = nperseg - nperseg // 2
    starts = np.arange(0, len(x) - nperseg + 1, step)
    total = np.zeros(nperseg // 2 + 1)
    for first in range(0, len(starts), block):
        segs = np.lib.stride_tricks.sliding_window_view(x, nperseg)[starts[first : first + block]]
        segs = (segs - segs.mean(axis=1, keepdims=True)) * window
        total += np.sum(np.abs(np.fft.rfft(segs, axis=1)) ** 2, axis=0)
    power = total / (len(starts) * sample_rate * np.sum(window**2))
    power[1 : None if nperseg % 2 else -1] *= 2
    return np.fft.rfftfreq(nperseg, 1 / sample_rate), power


def effective_bandwidth(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Highest frequency (Hz) whose averaged level is within :data:`CONTENT_FLOOR_DB` of the loudest band."""
    x = np.asarray(audio, dtype=np.float64)
    if not np.any(x):
        return 0.0
    freqs, power = welch_psd(x, sample_rate, min(WELCH_SEGMENT, len(x)))
    level = 10 * np.log10(np.maximum(power, 1e-300))
    content = np.nonzero(level >= level.max() - CONTENT_FLOOR_DB)[0]
    return float(freqs[content[-1]])


def assess(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Quality:
    """Measure a mono clip and list what is wrong with it for a singer-identity model."""
    x = np.asarray(audio, dtype=np.float64)
    bandwidth = effective_bandwidth(x, sample_rate)
    clipped = float(np.mean(np.abs(x) >= 0.999)) if len(x) else 0.0
    rms = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    level = 20 * np.log10(rms) if rms > 0 else -np.inf
    warnings = []
    if bandwidth < MIN_BANDWIDTH_HZ:
        warnings.append(
            f"no content above {bandwidth / 1000:.1f} kHz (a low-sample-rate or low-bit-rate copy?): "
            "scores are less reliable; use a full-band original if there is one"
        )
    if clipped > CLIPPED_FRACTION:
        warnings.append(f"{100 * clipped:.1f} % of samples are clipped")
    if level < LOW_LEVEL_DBFS:
        warnings.append(f"very low level ({level:.0f} dBFS)")
    return Quality(bandwidth, clipped, float(level), tuple(warnings))
