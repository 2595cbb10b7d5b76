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


def effective_bandwidth(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Highest frequency (Hz) whose averaged level is within :data:`CONTENT_FLOOR_DB` of the loudest band."""
    from scipy.signal import welch

    x = np.asarray(audio, dtype=np.float64)
    if not np.any(x):
        return 0.0
    freqs, power = welch(x, fs=sample_rate, nperseg=min(4096, len(x)))
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
