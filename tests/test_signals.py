"""The shared seeded test signals have the properties the tests and benchmarks rely on."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.audio import SAMPLE_RATE
from singerid.data.signals import (
    formant_voice,
    harmonic_tone,
    noisy_tone,
    pulse_voice,
    sung_melody,
    voiced_clip,
)


def _spectrum(x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / sample_rate), mag


def test_harmonic_tone_has_its_partials_at_multiples_of_f0_with_1_over_k_amplitudes():
    freqs, mag = _spectrum(harmonic_tone(200.0, 1.0, n_harmonics=3))
    peaks = [mag[np.argmin(np.abs(freqs - 200.0 * k))] for k in (1, 2, 3)]
    assert peaks[1] / peaks[0] == pytest.approx(1 / 2, rel=0.01)
    assert peaks[2] / peaks[0] == pytest.approx(1 / 3, rel=0.01)
    assert mag[np.argmin(np.abs(freqs - 800.0))] < 1e-3 * peaks[0]


def test_harmonics_above_nyquist_are_left_out():
    # At 8 kHz only the fundamental of a 3 kHz tone lies below Nyquist: a pure sine at peak 0.5.
    sine = np.sin(2 * np.pi * 3000.0 * np.arange(4000) / 8000)
    expected = 0.5 * sine / np.abs(sine).max()
    assert np.allclose(harmonic_tone(3000.0, 0.5, sample_rate=8000, n_harmonics=4), expected, atol=1e-6)


def test_a_batch_of_tones_equals_one_tone_per_row_each_at_its_peak():
    batch = harmonic_tone(np.array([110.0, 330.0]), 0.2, peak=0.3)
    assert batch.shape == (2, int(0.2 * SAMPLE_RATE)) and batch.dtype == np.float32
    assert np.array_equal(batch[1], harmonic_tone(330.0, 0.2, peak=0.3))
    assert np.allclose(np.abs(batch).max(axis=1), 0.3)


def test_noise_is_seeded_and_has_the_asked_deviation():
    a, b, c = noisy_tone(220.0, 1.0, 1, noise=0.05), noisy_tone(220.0, 1.0, 1, noise=0.05), noisy_tone(220.0, 1.0, 2, noise=0.05)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.std(a - harmonic_tone(220.0, 1.0)) == pytest.approx(0.05, rel=0.02)


def test_pulse_voice_resonates_at_its_formants():
    freqs, mag = _spectrum(pulse_voice(100.0, 1.0, formants=((1500.0, 60.0),)))
    band = (freqs > 300) & (freqs < 6000)
    assert freqs[band][np.argmax(mag[band])] == pytest.approx(1500.0, abs=100.0)


def test_formant_voice_and_voiced_clip_are_peak_normalised_and_seeded():
    x = formant_voice(200.0, (600.0, 1800.0), 0.3, np.random.default_rng(0))
    assert np.abs(x).max() == pytest.approx(0.5) and np.array_equal(
        x, formant_voice(200.0, (600.0, 1800.0), 0.3, np.random.default_rng(0))
    )
    y = voiced_clip(200.0, 0.3, brightness=1.0, seed=0)
    assert np.abs(y).max() == pytest.approx(0.5) and np.array_equal(y, voiced_clip(200.0, 0.3, brightness=1.0, seed=0))


def test_sung_melody_rests_on_every_seventh_note_and_depends_on_its_seed():
    x = sung_melody(4.0, seed=3)
    note = SAMPLE_RATE // 2
    assert not np.any(x[6 * note : 7 * note]) and np.any(x[5 * note : 6 * note])
    assert not np.array_equal(x, sung_melody(4.0, seed=4))
