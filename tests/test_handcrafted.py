from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
import scipy.signal

from singerid.audio import SAMPLE_RATE
from singerid.data.signals import harmonic_tone, noisy_tone
from singerid.errors import AudioError
from singerid.eval.baselines.handcrafted import (
    F0_FEATURES,
    N_MFCC,
    f0_stats,
    f0_stats_batch,
    mfcc_stats,
    mfcc_stats_batch,
)

MEDIAN, MEAN, STD, P10, P90, RANGE, VOICED = range(len(F0_FEATURES))


def test_f0_of_a_steady_tone_is_its_midi_note():
    stats = f0_stats(harmonic_tone(220.0, 1.0))  # 220 Hz is MIDI 57 (A3)
    assert stats[MEDIAN] == pytest.approx(57.0, abs=0.05)
    assert stats[MEAN] == pytest.approx(57.0, abs=0.05)
    assert stats[STD] < 0.05
    assert stats[VOICED] > 0.85


def test_f0_percentiles_of_two_notes():
    # 220 Hz then 330 Hz: MIDI 57 and 57 + 12 * log2(1.5) = 64.02.
    audio = np.concatenate([harmonic_tone(220.0, 1.0), harmonic_tone(330.0, 1.0)])
    stats = f0_stats(audio)
    assert stats[P10] == pytest.approx(57.0, abs=0.1)
    assert stats[P90] == pytest.approx(64.02, abs=0.1)
    assert stats[RANGE] == pytest.approx(7.02, abs=0.2)
    assert stats[STD] == pytest.approx(3.51, abs=0.3)


def test_f0_voiced_fraction_and_silence():
    audio = np.concatenate([harmonic_tone(220.0, 1.0), np.zeros(SAMPLE_RATE, np.float32)])
    assert f0_stats(audio)[VOICED] == pytest.approx(0.5, abs=0.06)
    silent = f0_stats(np.zeros(SAMPLE_RATE, np.float32))
    assert silent[VOICED] == 0.0
    assert np.all(np.isnan(silent[:VOICED]))


def _reference_mfcc_stats(audio: np.ndarray, sr: int, n_mfcc: int = N_MFCC) -> np.ndarray:
    """The MFCC recipe written out in numpy (only the mel filterbank comes from librosa)."""
    n_fft, hop = 2048, 512
    x = np.pad(audio.astype(np.float64), n_fft // 2)
    n_frames = 1 + (len(x) - n_fft) // hop
    window = scipy.signal.get_window("hann", n_fft)
    frames = np.stack([x[i * hop : i * hop + n_fft] for i in range(n_frames)]) * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=128).T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    mfcc = scipy.fft.dct(db, type=2, norm="ortho", axis=1)[:, :n_mfcc]
    return np.concatenate([mfcc.mean(axis=0), mfcc.std(axis=0)])


def test_mfcc_stats_match_a_numpy_implementation():
    audio = noisy_tone(220.0, 1.0, seed=0)
    ours = mfcc_stats(audio)
    assert ours.shape == (2 * N_MFCC,) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, _reference_mfcc_stats(audio, SAMPLE_RATE), rtol=2e-3, atol=2e-2)


def test_mfcc_gain_moves_only_c0_mean():
    # A gain g adds 20 log10(g) dB to every mel band; the orthonormal DCT puts
    # sqrt(128) times that into c0 and nothing into the other coefficients.
    audio = noisy_tone(220.0, 1.0, seed=0)
    diff = mfcc_stats(2.0 * audio) - mfcc_stats(audio)
    assert diff[0] == pytest.approx(20 * np.log10(2.0) * np.sqrt(128), rel=1e-3)
    np.testing.assert_allclose(diff[1:], 0.0, atol=5e-3)


def test_batches_stack_single_results():
    clips = [noisy_tone(f, 0.5, seed=i) for i, f in enumerate((180.0, 260.0, 410.0))]
    mfcc = mfcc_stats_batch(clips)
    f0 = f0_stats_batch(clips)
    assert mfcc.shape == (3, 2 * N_MFCC) and f0.shape == (3, len(F0_FEATURES))
    np.testing.assert_array_equal(mfcc[1], mfcc_stats(clips[1]))
    np.testing.assert_array_equal(f0[2], f0_stats(clips[2]))
    assert np.argsort(f0[:, MEDIAN]).tolist() == [0, 1, 2]
    assert mfcc_stats_batch([]).shape == (0, 2 * N_MFCC)
    assert f0_stats_batch([]).shape == (0, len(F0_FEATURES))


@pytest.mark.parametrize(
    "bad", [np.zeros(0, np.float32), np.zeros((2, 100), np.float32), np.array([0.0, np.nan, 0.1], np.float32)]
)
def test_bad_audio_is_rejected(bad):
    with pytest.raises(AudioError):
        mfcc_stats(bad)
    with pytest.raises(AudioError):
        f0_stats(bad)
