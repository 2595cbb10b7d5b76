"""Praat (through parselmouth), seeded: formant-preserving pitch changes ("Change gender") and
the shortest clip its pitch analysis takes. Used by training's augmentations and evaluation's
invariance probes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import parselmouth
from parselmouth.praat import call, run

from .audio import SAMPLE_RATE
from .errors import AudioError

PRAAT_SEEDS = 2**31
"""Praat's random generator is seeded with integers below this."""


@dataclass(frozen=True)
class PitchShift:
    """What :func:`change_gender` did: the output and the factors actually used."""

    audio: np.ndarray
    ratio: float
    range_ratio: float
    range_reset: bool
    """True when the range factor was dropped (set to 1) to keep the lowest F0 plausible."""


def praat_min_samples(sample_rate: int, pitch_floor: float) -> int:
    """Shortest clip Praat's pitch analysis accepts: three periods of the pitch floor."""
    return int(np.ceil(3.0 * sample_rate / pitch_floor)) + 1


def seed_praat(seed: int) -> None:
    """Seed Praat's own generator (its overlap-add draws random numbers)."""
    run(f"random_initializeWithSeedUnsafelyButPredictably ({seed % PRAAT_SEEDS})")


def change_gender(
    x: np.ndarray,
    ratios: Sequence[tuple[float, float]],
    seed: int,
    *,
    pitch_floor: float,
    pitch_ceiling: float,
    formant_ratio: float = 1.0,
    sample_rate: int = SAMPLE_RATE,
) -> list[PitchShift] | None:
    """Formant-preserving pitch shifts of ``x`` with Praat's "Change gender", one per ``(ratio, range)``.

    The pitch is analysed once (as Praat does inside "Change gender": time step
    ``0.8 / floor``); the new pitch median is ``ratio`` times the measured median; formants
    are scaled by ``formant_ratio`` (1: unchanged); duration factor 1, so the output
    has the input's length and timing. Returns ``None`` when ``x`` has no voiced frame or is
    too short to analyse. A range factor that would push the lowest F0 below half the pitch
    floor is dropped (set to 1). Praat's overlap-add draws random numbers, so its generator
    is seeded (``seed + i`` for the ``i``-th output) to make the result reproducible.
    """
    n = len(x)
    if n < praat_min_samples(sample_rate, pitch_floor):
        return None
    sound = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=sample_rate)
    pitch = sound.to_pitch(time_step=0.8 / pitch_floor, pitch_floor=pitch_floor, pitch_ceiling=pitch_ceiling)
    f0 = pitch.selected_array["frequency"]
    voiced = f0[f0 > 0]
    if voiced.size == 0:
        return None
    median = float(call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz"))
    lowest = float(voiced.min())
    out = []
    for i, (ratio, spread) in enumerate(ratios):
        new_median = ratio * median
        reset = new_median + (ratio * lowest - new_median) * spread < 0.5 * pitch_floor
        used_spread = 1.0 if reset else spread
        seed_praat(seed + i)
        shifted = call([sound, pitch], "Change gender", formant_ratio, new_median, used_spread, 1.0)
        y = shifted.values[0]
        if len(y) != n:
            raise AudioError(
                f"Praat 'Change gender' returned {len(y)} samples for {n}; the pitch bank would lose "
                "alignment. Check the parselmouth version (tested with 0.4.x)."
            )
        out.append(PitchShift(y.astype(np.float32), ratio, used_spread, bool(reset)))
    return out
