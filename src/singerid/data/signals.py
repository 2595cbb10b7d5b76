"""Seeded synthetic signals for tests, benchmarks and examples.

Simpler and faster than the built-in corpus (``data.synth``), and analytic where a check needs a
known answer: a harmonic tone has a known f0 and spectrum, a pulse train through resonators has
known formants. Every function is deterministic given its arguments (noise takes a seed).
"""

from __future__ import annotations

import numpy as np
import scipy.signal

from ..audio import SAMPLE_RATE

VOWEL_FORMANTS = ((700.0, 80.0), (1200.0, 90.0), (2600.0, 120.0))
"""(centre Hz, bandwidth Hz) of an open vowel, the default resonances of :func:`pulse_voice`."""


def _times(seconds: float, sample_rate: int) -> np.ndarray:
    return np.arange(int(round(seconds * sample_rate))) / sample_rate


def _peak(x: np.ndarray, peak: float) -> np.ndarray:
    """Scale each row (or the signal) to ``peak`` absolute amplitude."""
    return (peak * x / np.max(np.abs(x), axis=-1, keepdims=True)).astype(np.float32)


def harmonic_tone(
    f0: float | np.ndarray,
    seconds: float,
    *,
    sample_rate: int = SAMPLE_RATE,
    n_harmonics: int = 10,
    peak: float = 0.5,
) -> np.ndarray:
    """Harmonics ``1..n_harmonics`` of ``f0`` with 1/k amplitudes (those below Nyquist), scaled to ``peak``.

    ``f0`` may be an array of shape ``(n,)``: the result is then ``(n, samples)``, one tone per row.
    """
    t = _times(seconds, sample_rate)
    f0 = np.asarray(f0, dtype=np.float64)[..., None]
    x = np.zeros(f0.shape[:-1] + t.shape)
    for k in range(1, n_harmonics + 1):
        below_nyquist = f0 * k < sample_rate / 2
        x += np.where(below_nyquist, np.sin(2 * np.pi * f0 * k * t) / k, 0.0)
    return _peak(x, peak)


def noisy_tone(
    f0: float | np.ndarray,
    seconds: float,
    seed: int,
    *,
    noise: float = 0.01,
    sample_rate: int = SAMPLE_RATE,
    n_harmonics: int = 10,
    peak: float = 0.5,
) -> np.ndarray:
    """:func:`harmonic_tone` plus white noise of standard deviation ``noise``: energy in every band."""
    tone = harmonic_tone(f0, seconds, sample_rate=sample_rate, n_harmonics=n_harmonics, peak=peak)
    rng = np.random.default_rng(seed)
    return (tone + noise * rng.standard_normal(tone.shape)).astype(np.float32)


def voiced_clip(f0: float, seconds: float, brightness: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voice-like clip: harmonics of ``f0`` up to 8 kHz with spectral slope ``k**-brightness``
    (a stand-in for a singer's timbre), 5.5 Hz vibrato and a little noise; peak 0.5."""
    rng = np.random.default_rng(seed)
    t = _times(seconds, sample_rate)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / sample_rate
    x = np.zeros(len(t))
    for k in range(1, int(8000 / f0)):
        x += np.sin(k * phase) * k ** (-brightness)
    x += 0.01 * rng.standard_normal(len(t))
    return _peak(x, 0.5)


def formant_voice(
    f0: float, formants: tuple[float, ...], seconds: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Harmonics of ``f0`` up to 12 kHz with light vibrato, shaped by resonances at ``formants`` (Hz);
    harmonic phases drawn from ``rng``; peak 0.5."""
    t = _times(seconds, sample_rate)
    phase = 2 * np.pi * f0 * np.cumsum(1 + 0.01 * np.sin(2 * np.pi * 5.0 * t)) / sample_rate
    step, harmonic = np.exp(1j * phase), np.ones(len(t), complex)
    x = 0.003 * rng.standard_normal(len(t))
    for k in range(1, int(12000 / f0)):
        harmonic *= step  # exp(i k phase), without calling sin for every harmonic
        gain = sum(1.0 / (1.0 + ((k * f0 - fc) / 150.0) ** 2) for fc in formants) / np.sqrt(k)
        x += gain * (harmonic * np.exp(1j * rng.uniform(0, 2 * np.pi))).imag
    return _peak(x, 0.5)


def pulse_voice(
    f0: float | np.ndarray,
    seconds: float,
    *,
    formants: tuple[tuple[float, float], ...] = VOWEL_FORMANTS,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """A glottal-like pulse train at ``f0`` (Hz, scalar or one value per sample) through two-pole
    resonators at ``formants`` ((centre, bandwidth) pairs), with lip radiation; peak 0.5."""
    n = int(round(seconds * sample_rate))
    phase = np.cumsum(np.broadcast_to(np.asarray(f0, dtype=np.float64), (n,)) / sample_rate)
    pulses = np.zeros(n)
    pulses[np.nonzero(np.diff(np.floor(phase)) > 0)[0] + 1] = 1.0
    y = scipy.signal.lfilter([1.0], [1.0, -0.97], pulses)
    for freq, bandwidth in formants:
        r, theta = np.exp(-np.pi * bandwidth / sample_rate), 2 * np.pi * freq / sample_rate
        y = scipy.signal.lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], y)
    return _peak(np.diff(y, prepend=0.0), 0.5)


def sung_melody(seconds: float, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Seeded notes of 0.5 s between 110 and 330 Hz with vibrato, sung on one vowel, with a rest
    every seventh note: enough like singing for pitch shifting, silence handling and I/O timing."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    note = int(0.5 * sample_rate)
    f0 = np.repeat(rng.uniform(110.0, 330.0, n // note + 1), note)[:n]
    f0 = f0 * (1.0 + 0.01 * np.sin(2 * np.pi * 5.5 * np.arange(n) / sample_rate))
    y = pulse_voice(f0, seconds, formants=((650.0, 80.0), (1100.0, 90.0), (2700.0, 130.0)), sample_rate=sample_rate)
    y[(np.arange(n) // note) % 7 == 6] = 0.0
    return y
