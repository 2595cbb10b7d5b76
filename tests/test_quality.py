"""Input quality: band-limited, lossy, clipped and quiet clips are measured and flagged, never refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import soxr

from singerid.audio import SAMPLE_RATE, load_audio, write_audio
from singerid.cli import main
from singerid.data.signals import voiced_clip
from singerid.quality import MIN_BANDWIDTH_HZ, assess, effective_bandwidth

CLIP = voiced_clip(220.0, 3.0, brightness=0.8, seed=0)


def _telephone_copy(x: np.ndarray) -> np.ndarray:
    return soxr.resample(soxr.resample(x, SAMPLE_RATE, 8000), 8000, SAMPLE_RATE)


def _mp3_copy(x: np.ndarray, compression: float) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, SAMPLE_RATE, format="MP3", compression_level=compression)
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def test_a_full_band_clip_has_the_whole_band_and_no_warnings():
    q = assess(CLIP)
    assert q.bandwidth_hz == pytest.approx(SAMPLE_RATE / 2) and q.warnings == ()
    assert q.level_dbfs == pytest.approx(20 * np.log10(np.sqrt(np.mean(CLIP.astype(np.float64) ** 2))))


def test_an_8_khz_copy_has_no_content_above_its_nyquist_frequency():
    bandwidth = effective_bandwidth(_telephone_copy(CLIP))
    assert 3500 < bandwidth <= 4000
    assert "no content above" in assess(_telephone_copy(CLIP)).warnings[0]


def test_a_lowpassed_clip_measures_its_cutoff():
    from scipy.signal import butter, sosfiltfilt

    sos = butter(16, 6000, fs=SAMPLE_RATE, output="sos")
    assert effective_bandwidth(sosfiltfilt(sos, CLIP)) == pytest.approx(6000, rel=0.35)


def test_a_low_bit_rate_mp3_is_flagged_and_a_high_rate_one_is_not():
    assert assess(_mp3_copy(CLIP, 0.95)).bandwidth_hz < MIN_BANDWIDTH_HZ
    assert assess(_mp3_copy(CLIP, 0.0)).bandwidth_hz > MIN_BANDWIDTH_HZ


def test_clipping_and_very_low_level_are_flagged():
    clipped = np.clip(4 * CLIP, -1.0, 1.0)
    assert assess(clipped).clipped_fraction == pytest.approx(np.mean(np.abs(clipped) >= 0.999))
    assert any("clipped" in w for w in assess(clipped).warnings)
    assert any("very low level" in w for w in assess(0.001 * CLIP).warnings)


def test_verify_warns_naming_the_file_and_its_bandwidth(model_dir, tmp_path, capsys):
    full = write_audio(tmp_path / "full.wav", CLIP)
    sf.write(tmp_path / "phone.wav", soxr.resample(CLIP, SAMPLE_RATE, 8000), 8000)
    assert main(["verify", str(full), str(tmp_path / "phone.wav"), "--model", str(model_dir), "--threshold", "0.5"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    expected = effective_bandwidth(load_audio(tmp_path / "phone.wav")) / 1000
    assert err == [next(line for line in err if "phone.wav" in line)]
    assert f"no content above {expected:.1f} kHz" in err[0]
