from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from singerid.audio import (
    SAMPLE_RATE,
    audio_info,
    check_audio,
    fit_length,
    frame_levels_db,
    load_audio,
    peak_normalize,
    rms_db,
    write_audio,
)
from singerid.data.signals import harmonic_tone
from singerid.errors import AudioError


def _dominant_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * sr / len(x))


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_load_resamples_to_44k_and_keeps_pitch(tmp_path, rate):
    t = np.arange(rate) / rate
    x = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, x, rate)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SAMPLE_RATE) <= 2
    assert _dominant_frequency(y, SAMPLE_RATE) == pytest.approx(440.0, abs=2.0)


def test_load_at_requested_rate(tmp_path):
    path = write_audio(tmp_path / "a.wav", harmonic_tone(200, 1.0))
    assert abs(len(load_audio(path, sample_rate=16000)) - 16000) <= 1


def test_stereo_is_mixed_to_mono(tmp_path):
    left = harmonic_tone(220, 0.5)
    right = -0.5 * left
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    y = load_audio(path)
    np.testing.assert_allclose(y, 0.25 * left, atol=1e-6)


def test_24bit_flac_round_trip(tmp_path):
    x = harmonic_tone(330, 0.5)
    path = write_audio(tmp_path / "a.flac", x, subtype="PCM_24")
    assert audio_info(path).subtype == "PCM_24"
    np.testing.assert_allclose(load_audio(path), x, atol=2.0**-22)


def test_crop_reads_only_the_requested_span(tmp_path):
    x = np.linspace(-0.5, 0.5, 3 * SAMPLE_RATE, dtype=np.float32)
    path = write_audio(tmp_path / "ramp.wav", x, subtype="FLOAT")
    y = load_audio(path, offset=1.0, duration=0.5, check=False)
    np.testing.assert_array_equal(y, x[SAMPLE_RATE : SAMPLE_RATE + SAMPLE_RATE // 2])


def test_missing_empty_corrupt_files_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav.*0 bytes"):
        load_audio(empty)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 4)
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(corrupt)


def test_offset_outside_file(tmp_path):
    path = write_audio(tmp_path / "a.wav", harmonic_tone(200, 1.0))
    with pytest.raises(AudioError, match="outside the file"):
        load_audio(path, offset=2.0)


def test_check_audio_rejects_silence_nan_short_and_clipping():
    with pytest.raises(AudioError, match="silent"):
        check_audio(np.zeros(SAMPLE_RATE, np.float32), "x.wav")
    nan = harmonic_tone(200, 0.5)
    nan[10] = np.nan
    with pytest.raises(AudioError, match="NaN"):
        check_audio(nan, "x.wav")
    with pytest.raises(AudioError, match="shorter"):
        check_audio(harmonic_tone(200, 0.5), "x.wav", min_seconds=1.0)
    clipped = np.clip(4 * harmonic_tone(200, 0.5), -1, 1)
    with pytest.raises(AudioError, match="clipped"):
        check_audio(clipped, "x.wav")
    assert check_audio(clipped, "x.wav", max_clipped=None) is clipped


def test_silent_file_is_an_error_not_a_substitute(tmp_path):
    path = write_audio(tmp_path / "quiet.wav", np.zeros(SAMPLE_RATE, np.float32))
    with pytest.raises(AudioError, match="quiet.wav.*silent"):
        load_audio(path)


def test_levels_hand_computed():
    # A full-scale square wave has RMS 1 -> 0 dBFS; amplitude 0.1 -> -20 dBFS.
    x = np.where(np.arange(1000) % 2 == 0, 0.1, -0.1)
    assert rms_db(x) == pytest.approx(-20.0)
    levels = frame_levels_db(np.concatenate([x, np.zeros(1000)]), sample_rate=20000, frame_seconds=0.05)
    assert levels[0] == pytest.approx(-20.0) and levels[1] == -np.inf


def test_peak_normalize_and_fit_length():
    x = np.array([0.1, -0.4, 0.2], np.float32)
    np.testing.assert_allclose(peak_normalize(x), [0.25, -1.0, 0.5])
    np.testing.assert_array_equal(fit_length(x, 5), np.array([0.1, -0.4, 0.2, 0, 0], np.float32))
    np.testing.assert_array_equal(fit_length(x, 7, pad="repeat"), x[[0, 1, 2, 0, 1, 2, 0]])
    np.testing.assert_array_equal(fit_length(x, 2), x[:2])


def test_write_audio_leaves_no_partial_file_on_error(tmp_path):
    with pytest.raises(AudioError, match="cannot write"):
        write_audio(tmp_path / "a.xyz", np.zeros(10, np.float32))
    assert list(tmp_path.iterdir()) == []
