"""Augmentations: pitch/formant accuracy of both pitch paths, exact and statistical checks, seeding."""

from __future__ import annotations

import pickle

import numpy as np
import parselmouth
import pytest
import scipy.signal

from singerid.data.signals import pulse_voice
from singerid.errors import AudioError, ConfigError
from singerid.training.augment import AugmentConfig, Augmenter, ViewParams, bank_factors

SR = 44100
ONLY_PITCH = dict(pitch_p=1.0, noise_p=0.0, gain_p=0.0, mask_p=0.0)
NOTHING = dict(pitch_p=0.0, noise_p=0.0, gain_p=0.0, mask_p=0.0)


def f0_values(x: np.ndarray) -> np.ndarray:
    pitch = parselmouth.Sound(x.astype(np.float64), SR).to_pitch(pitch_floor=60, pitch_ceiling=600)
    f0 = pitch.selected_array["frequency"]
    return f0[f0 > 0]


def f0_and_formants(x: np.ndarray) -> tuple[float, float, float]:
    """Median F0, and median F1/F2 over voiced frames."""
    sound = parselmouth.Sound(x.astype(np.float64), SR)
    pitch = sound.to_pitch(pitch_floor=60, pitch_ceiling=600)
    formant = sound.to_formant_burg(max_number_of_formants=5, maximum_formant=5000)
    times = [t for t, f in zip(pitch.ts(), pitch.selected_array["frequency"]) if f > 0]
    f1 = np.nanmedian([formant.get_value_at_time(1, t) for t in times])
    f2 = np.nanmedian([formant.get_value_at_time(2, t) for t in times])
    return float(np.median(f0_values(x))), float(f1), float(f2)


def assert_shift(original: np.ndarray, shifted: np.ndarray, ratio: float) -> None:
    f0, f1, f2 = f0_and_formants(original)
    g0, g1, g2 = f0_and_formants(shifted)
    assert g0 / f0 == pytest.approx(ratio, rel=0.03)
    assert g1 == pytest.approx(f1, rel=0.05)
    assert g2 == pytest.approx(f2, rel=0.05)


@pytest.fixture(scope="module")
def song() -> np.ndarray:
    return pulse_voice(120.0, 2.2)


# --- pitch and formants -----------------------------------------------------------------


@pytest.mark.parametrize("ratio", [1.25, 1 / 1.25])
def test_praat_path_moves_f0_keeps_formants(song: np.ndarray, ratio: float) -> None:
    aug = Augmenter(AugmentConfig(**ONLY_PITCH))
    result = aug.apply("s", song, SR, SR, ViewParams(pitch=(ratio, 1.0)))
    assert result.pitch == "shifted" and result.pitch_ratio == ratio
    assert len(result.audio) == SR
    assert_shift(song[SR : 2 * SR], result.audio, ratio)


def test_bank_path_moves_f0_keeps_formants(song: np.ndarray) -> None:
    cfg = AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=4, pitch_range_ratio=(1.0, 1.0))
    aug = Augmenter(cfg)
    ratios = [r for r, _ in bank_factors("s", cfg)]
    assert min(ratios) < 0.95 and max(ratios) > 1.05  # both directions are exercised
    for k, ratio in enumerate(ratios):
        result = aug.apply("s", song, SR, SR, ViewParams(variant=k))
        assert result.pitch_ratio == pytest.approx(ratio)
        assert len(result.audio) == SR
        assert_shift(song[SR : 2 * SR], result.audio, ratio)
    assert aug.stats.banks_built == 1


def test_naive_resampling_would_fail_the_formant_check(song: np.ndarray) -> None:
    crop = song[SR : 2 * SR]
    naive = scipy.signal.resample(song[SR : SR + int(1.25 * SR)], SR).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_shift(crop, naive, 1.25)


def test_range_factor_scales_excursions_around_the_median() -> None:
    third = SR
    x = pulse_voice(np.repeat([100.0, 130.0, 160.0], third), 3.0)
    out = Augmenter(AugmentConfig(**ONLY_PITCH)).apply("s", x, 0, len(x), ViewParams(pitch=(1.0, 1.5))).audio
    low, high = np.median(f0_values(out[: third // 2])), np.median(f0_values(out[-third // 2 :]))
    assert low == pytest.approx(130 - 1.5 * 30, rel=0.03)
    assert high == pytest.approx(130 + 1.5 * 30, rel=0.03)


def test_range_factor_dropped_when_it_would_push_f0_below_the_floor() -> None:
    x = pulse_voice(np.repeat([80.0, 300.0], [13230, SR - 13230]), 1.0)
    aug = Augmenter(AugmentConfig(**ONLY_PITCH))
    # median 300 -> 230.8; lowest 80 -> 61.5 -> 230.8 - 1.5 * 169.3 < 0: keep the range as it is
    result = aug.apply("glide", x, 0, len(x), ViewParams(pitch=(1 / 1.3, 1.5)))
    assert result.pitch == "shifted" and result.range_ratio == 1.0 and aug.stats.range_reset == 1
    assert np.median(f0_values(result.audio[-SR // 2 :])) == pytest.approx(300 / 1.3, rel=0.03)
    assert np.median(f0_values(result.audio[: SR // 5])) == pytest.approx(80 / 1.3, rel=0.03)


def test_bank_keeps_length_and_alignment() -> None:
    n = 2 * SR + 777
    x = pulse_voice(130.0, n / SR)
    gap = slice(SR // 2, SR)
    x[gap] = 0.0
    aug = Augmenter(AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=2))
    aug.precompute({"gap": x})
    bank = aug.bank("gap", x)
    assert bank.audio.shape == (2, n)
    for variant in bank.audio:
        level = np.sqrt(np.mean(variant[SR // 2 + 2000 : SR - 2000] ** 2))
        assert level < 1e-3 * np.sqrt(np.mean(variant[SR + 2000 :] ** 2))
        assert np.sqrt(np.mean(variant[SR // 2 - 2000 : SR // 2] ** 2)) > 0.01  # voice up to the gap
        assert np.sqrt(np.mean(variant[SR : SR + 2000] ** 2)) > 0.01  # and right after it


# --- noise, gain, mask ------------------------------------------------------------------


def test_gain_is_exactly_the_drawn_gain(song: np.ndarray) -> None:
    aug = Augmenter(AugmentConfig(**{**NOTHING, "gain_p": 1.0}))
    gains = []
    for seed in range(50):
        result = aug.view_with_params("s", song, 100, 4000, np.random.default_rng(seed))
        gains.append(result.params.gain_db)
        expected = song[100:4100] * np.float32(10 ** (result.params.gain_db / 20))
        np.testing.assert_array_equal(result.audio, expected)
    assert -6.0 <= min(gains) < -5.0 and -1.0 < max(gains) <= 0.0


def test_noise_has_the_drawn_std() -> None:
    silence = np.zeros(SR, dtype=np.float32)
    aug = Augmenter(AugmentConfig(**{**NOTHING, "noise_p": 1.0}))
    stds = []
    for seed in range(40):
        result = aug.view_with_params("z", silence, 0, SR, np.random.default_rng(seed))
        stds.append(result.params.noise_std)
        assert np.std(result.audio) == pytest.approx(result.params.noise_std, rel=0.02)
        assert abs(np.mean(result.audio)) < 0.02 * result.params.noise_std
    assert 0.001 <= min(stds) < 0.01 and 0.04 < max(stds) <= 0.05


def test_mask_zeroes_one_span_of_at_most_an_eighth() -> None:
    x = np.linspace(0.1, 0.9, 8000, dtype=np.float32)
    aug = Augmenter(AugmentConfig(**{**NOTHING, "mask_p": 1.0}))
    spans = []
    for seed in range(100):
        result = aug.view_with_params("x", x, 0, 8000, np.random.default_rng(seed))
        start, length = result.params.mask
        spans.append(length)
        zeros = np.flatnonzero(result.audio == 0)
        np.testing.assert_array_equal(zeros, np.arange(start, start + length))
        keep = np.ones(8000, bool)
        keep[zeros] = False
        np.testing.assert_array_equal(result.audio[keep], x[keep])
    assert 1 <= min(spans) and max(spans) <= 1000 and max(spans) > 900


def test_probabilities_and_inversions() -> None:
    aug = Augmenter(AugmentConfig())
    rng = np.random.default_rng(0)
    draws = [aug.draw(rng, 176400) for _ in range(2000)]
    for name in ("pitch", "noise_std", "gain_db", "mask"):
        assert np.mean([getattr(d, name) is not None for d in draws]) == pytest.approx(0.5, abs=0.05)
    ratios = np.array([d.pitch[0] for d in draws if d.pitch])
    spreads = np.array([d.pitch[1] for d in draws if d.pitch])
    assert np.mean(ratios < 1) == pytest.approx(0.5, abs=0.07)
    assert np.mean(spreads < 1) == pytest.approx(0.5, abs=0.07)
    assert ratios.min() >= 1 / 1.3 and ratios.max() <= 1.3
    assert spreads.min() >= 1 / 1.5 and spreads.max() <= 1.5


# --- seeding, lengths, unvoiced input, caching, errors ----------------------------------


@pytest.mark.parametrize("mode", ["praat", "bank"])
def test_same_seed_same_view_different_seed_different(song: np.ndarray, mode: str) -> None:
    cfg = AugmentConfig(pitch_p=1.0, noise_p=1.0, gain_p=1.0, mask_p=1.0, pitch_mode=mode, bank_variants=2)
    a, b = Augmenter(cfg), Augmenter(cfg)
    x = a.view("s", song, 5000, SR, np.random.default_rng(1))
    np.testing.assert_array_equal(x, b.view("s", song, 5000, SR, np.random.default_rng(1)))
    assert not np.array_equal(x, a.view("s", song, 5000, SR, np.random.default_rng(2)))


@pytest.mark.parametrize("mode", ["praat", "bank"])
@pytest.mark.parametrize("length", [SR - 1, 2000, 12345])
def test_length_preserved(song: np.ndarray, mode: str, length: int) -> None:
    aug = Augmenter(AugmentConfig(pitch_p=1.0, noise_p=1.0, gain_p=1.0, mask_p=1.0, pitch_mode=mode, bank_variants=1))
    out = aug.view("s", song, 3, length, np.random.default_rng(0))
    assert out.shape == (length,) and out.dtype == np.float32


@pytest.mark.parametrize("mode", ["praat", "bank"])
def test_unvoiced_material_is_returned_unchanged_and_counted(mode: str) -> None:
    rng = np.random.default_rng(0)
    songs = {"silent": np.zeros(SR, np.float32), "hiss": (0.1 * rng.standard_normal(SR)).astype(np.float32)}
    aug = Augmenter(AugmentConfig(**ONLY_PITCH, pitch_mode=mode, bank_variants=2))
    for key, x in songs.items():
        result = aug.view_with_params(key, x, 1000, 30000, np.random.default_rng(3))
        assert result.pitch == "unvoiced"
        np.testing.assert_array_equal(result.audio, x[1000:31000])
    assert aug.stats.pitch_unvoiced == 2 and aug.stats.pitch_shifted == 0


def test_crop_too_short_for_pitch_analysis_is_counted(song: np.ndarray) -> None:
    aug = Augmenter(AugmentConfig(**ONLY_PITCH))
    result = aug.view_with_params("s", song, 0, 1000, np.random.default_rng(0))
    assert result.pitch == "unvoiced" and aug.stats.pitch_unvoiced == 1
    np.testing.assert_array_equal(result.audio, song[:1000])


def test_disk_cache_is_shared_and_keyed_by_content(tmp_path, song: np.ndarray) -> None:
    cfg = AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=2, bank_dir=str(tmp_path))
    first = Augmenter(cfg)
    assert first.precompute({"s": song}) == 1
    second = Augmenter(cfg)
    second.precompute({"s": song})
    assert (first.stats.banks_built, second.stats.banks_built, second.stats.banks_loaded) == (1, 0, 1)
    np.testing.assert_array_equal(np.asarray(first.bank("s", song).audio), np.asarray(second.bank("s", song).audio))
    assert second.bank("s", song).ratios == first.bank("s", song).ratios
    # other audio under the same key is a different bank, never the stale one
    third = Augmenter(cfg)
    third.precompute({"s": song[::-1].copy()})
    assert third.stats.banks_built == 1 and len(list(tmp_path.glob("*.npy"))) == 2


def test_pickled_augmenter_reopens_disk_banks(tmp_path, song: np.ndarray) -> None:
    cfg = AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=1, bank_dir=str(tmp_path))
    aug = Augmenter(cfg)
    aug.precompute({"s": song})
    copy = pickle.loads(pickle.dumps(aug))
    assert len(pickle.dumps(aug)) < song.nbytes // 10  # the bank itself does not travel
    a = copy.view("s", song, 10, 5000, np.random.default_rng(0))
    np.testing.assert_array_equal(a, aug.view("s", song, 10, 5000, np.random.default_rng(0)))
    assert (copy.stats.banks_built, copy.stats.banks_loaded) == (1, 1)


def test_float16_bank_halves_memory(song: np.ndarray) -> None:
    banks = {}
    for dtype in ("float32", "float16"):
        aug = Augmenter(AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=2, bank_dtype=dtype))
        banks[dtype] = aug.bank("s", song).audio
    assert banks["float16"].nbytes * 2 == banks["float32"].nbytes
    np.testing.assert_allclose(banks["float16"], banks["float32"], atol=1e-3)


def test_bad_input_raises_clear_errors(song: np.ndarray) -> None:
    aug = Augmenter(AugmentConfig(**NOTHING))
    rng = np.random.default_rng(0)
    with pytest.raises(AudioError, match="does not fit"):
        aug.view("s", song, len(song) - 10, 100, rng)
    with pytest.raises(AudioError, match="1-D"):
        aug.view("s", np.stack([song, song]), 0, 100, rng)
    with pytest.raises(ConfigError, match="pitch_mode"):
        AugmentConfig(pitch_mode="fast")
    with pytest.raises(ConfigError, match="probability"):
        AugmentConfig(noise_p=1.5)
    with pytest.raises(ConfigError, match="pitch_ratio"):
        AugmentConfig(pitch_ratio=(1.3, 1.0))
    assert aug.precompute({"s": song}) == 0 and aug.stats.banks_built == 0  # praat mode: nothing to build
    bank_aug = Augmenter(AugmentConfig(**ONLY_PITCH, pitch_mode="bank", bank_variants=1))
    bank_aug.precompute({"s": song})
    with pytest.raises(AudioError, match="unique keys"):
        bank_aug.view("s", song[:-5], 0, 100, rng)


def test_eq_response_is_the_tilt_plus_the_bells() -> None:
    from singerid.training.augment import eq_response_db

    freqs = np.array([500.0, 1000.0, 2000.0, 4000.0])
    np.testing.assert_allclose(eq_response_db(freqs, 1.5, []), [-1.5, 0.0, 1.5, 3.0], atol=1e-12)
    # A bell reaches its gain at its centre and half of it half a width away (in octaves).
    bell = eq_response_db(np.array([2000.0, 4000.0, 1000.0]), 0.0, [(2000.0, 6.0, 2.0)])
    np.testing.assert_allclose(bell, [6.0, 3.0, 3.0], atol=1e-12)


def test_eq_scales_a_tone_by_the_response_at_its_frequency() -> None:
    from singerid.training.augment import apply_eq, eq_response_db

    t = np.arange(176_400) / SR
    bands = [(800.0, 5.0, 1.0), (3000.0, -4.0, 0.7)]
    for f in (250.0, 1000.0, 3000.0):  # whole numbers of cycles: no leakage between FFT bins
        tone = np.sin(2 * np.pi * f * t).astype(np.float32)
        out = apply_eq(tone, -1.0, bands)
        expected = 10 ** (eq_response_db(np.array([f]), -1.0, bands)[0] / 20)
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.sqrt(2 * np.mean(out.astype(np.float64) ** 2)), expected, rtol=2e-3)


def test_eq_is_drawn_last_and_only_when_enabled() -> None:
    plain = Augmenter(AugmentConfig(pitch_p=0.0))
    with_eq = Augmenter(AugmentConfig(pitch_p=0.0, eq_p=1.0))
    for seed in range(5):
        a, b = plain.draw(np.random.default_rng(seed), 44_100), with_eq.draw(np.random.default_rng(seed), 44_100)
        assert a.eq is None and b.eq is not None
        assert a == ViewParams(**{**b.__dict__, "eq": None})
        tilt, bells = b.eq
        assert abs(tilt) <= 1.5 and len(bells) == 3
        assert all(150.0 <= c <= 12_000.0 and 0.5 <= w <= 2.0 for c, _, w in bells)
    with pytest.raises(ConfigError, match="eq_p"):
        AugmentConfig(eq_p=1.5)
