"""Log-mel frontend against librosa (an independent implementation), batch (in)dependence, export."""

from __future__ import annotations

import io
import warnings

import librosa
import numpy as np
import pytest
import torch

from singerid.data.signals import noisy_tone
from singerid.errors import AudioError, ConfigError
from singerid.model.frontend import (
    FactoredDFT,
    FrontendConfig,
    LogMelFrontend,
    dft_basis,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
    periodic_hann,
)

SR = 44100


def signal(seconds: float, seed: int, f0: float = 220.0) -> np.ndarray:
    """Harmonic tone plus noise: energy in every band, so log-mel values are well above log_eps."""
    return noisy_tone(f0, seconds, seed, noise=0.02, n_harmonics=39, peak=0.1, sample_rate=SR).astype(np.float64)


def dense_filterbank(frontend: LogMelFrontend) -> np.ndarray:
    """The frontend's filterbank, read back by applying it to unit power in each STFT bin."""
    n_freqs = frontend.cfg.n_freqs
    eye = torch.eye(n_freqs, dtype=frontend.window.dtype).unsqueeze(0)
    return frontend.mel(eye)[0].numpy()


# --- mel scale and filterbank -------------------------------------------------------------


def test_slaney_mel_scale_known_points() -> None:
    # Linear part: 200/3 Hz per mel; 1 kHz is mel 15; 6.4x the frequency adds 27 mels.
    assert hz_to_mel(200.0) == pytest.approx(3.0)
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)
    hz = np.array([0.0, 300.0, 999.0, 1000.0, 5000.0, 22050.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)), hz, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz, htk=False), rtol=1e-12)


@pytest.mark.parametrize(
    ("sr", "n_fft", "n_mels", "f_min", "f_max"),
    [(44100, 2048, 128, 0.0, None), (22050, 2048, 128, 0.0, None), (44100, 1024, 64, 50.0, 16000.0)],
)
def test_filterbank_matches_librosa(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> None:
    ours = mel_filterbank(sr, n_fft, n_mels, f_min, f_max)
    ref = librosa.filters.mel(
        sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max, htk=False, norm="slaney", dtype=np.float64
    )
    assert ours.shape == (n_mels, n_fft // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-14)


def test_banded_filterbank_equals_dense() -> None:
    frontend = LogMelFrontend(dtype=torch.float64)
    np.testing.assert_allclose(dense_filterbank(frontend), mel_filterbank(SR, 2048, 128), rtol=0, atol=1e-15)


def test_official_filterbank_is_librosa_at_22050() -> None:
    frontend = LogMelFrontend(FrontendConfig(mode="official-compat"), dtype=torch.float64)
    ref = librosa.filters.mel(sr=22050, n_fft=2048, n_mels=128, dtype=np.float64)
    np.testing.assert_allclose(dense_filterbank(frontend), ref, rtol=1e-10, atol=1e-14)
    # Applied to 44.1 kHz bins, the top band's centre lands near 2 x its nominal frequency.
    centre_bin = int(np.argmax(ref[-1]))
    assert centre_bin * SR / 2048 > 1.9 * mel_to_hz(hz_to_mel(11025.0) * 128 / 129)


def test_filterbank_with_empty_band_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fewer mel bands"):
        mel_filterbank(SR, 256, 128)


# --- STFT and log-mel against librosa ------------------------------------------------------


def test_log_mel_matches_librosa_float64() -> None:
    y = signal(1.0, seed=0)
    ref = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128, power=2.0, center=True, pad_mode="constant", dtype=np.float64
    )
    ours = LogMelFrontend(dtype=torch.float64).log_mel(torch.from_numpy(y)[None])[0].numpy()
    assert ours.shape == ref.shape == (128, 1 + y.size // 512)
    np.testing.assert_allclose(ours, np.log(ref + 1e-8), rtol=0, atol=1e-9)


def test_log_mel_matches_librosa_float32() -> None:
    y = signal(1.0, seed=1).astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=SR, n_fft=2048, hop_length=512, n_mels=128, power=2.0, pad_mode="constant")
    ours = LogMelFrontend().log_mel(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(ours, np.log(ref + 1e-8), rtol=0, atol=1e-4)


def test_official_log_mel_matches_librosa_pipeline() -> None:
    # The original: 22,050 Hz filterbank on the 44.1 kHz STFT with reflect padding.
    y = signal(0.5, seed=2)
    ref = librosa.feature.melspectrogram(
        y=y, sr=22050, n_fft=2048, hop_length=512, n_mels=128, pad_mode="reflect", dtype=np.float64
    )
    frontend = LogMelFrontend(FrontendConfig(mode="official-compat"), dtype=torch.float64)
    ours = frontend.log_mel(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(ours, np.log(ref + 1e-8), rtol=0, atol=1e-9)


@pytest.mark.parametrize("backend", ["conv", "onnx", "matmul"])
def test_export_stft_backends_equal_torch_stft(backend: str) -> None:
    y = torch.from_numpy(np.stack([signal(0.3, seed=3), signal(0.3, seed=4, f0=330.0)]))
    for pad_mode in ("constant", "reflect"):
        cfg = FrontendConfig(n_fft=512, hop_length=128, n_mels=40, pad_mode=pad_mode)
        frontend = LogMelFrontend(cfg, dtype=torch.float64)
        fft = frontend.power_spectrogram(y)
        other = frontend.set_stft_backend(backend).power_spectrogram(y)
        assert frontend.stft_backend == backend
        assert other.shape == fft.shape
        torch.testing.assert_close(other, fft, rtol=1e-9, atol=1e-9 * float(fft.max()))


def test_dft_basis_against_numpy_fft() -> None:
    n_fft = 16
    window = periodic_hann(n_fft)
    frame = np.random.default_rng(5).standard_normal(n_fft)
    basis = dft_basis(n_fft, window)[:, 0, :]
    spectrum = np.fft.rfft(frame * window)
    np.testing.assert_allclose(basis @ frame, np.concatenate([spectrum.real, spectrum.imag]), atol=1e-12)
    torch_hann = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).numpy()
    np.testing.assert_allclose(periodic_hann(n_fft), torch_hann, atol=1e-15)


def test_unknown_stft_backend_is_rejected() -> None:
    with pytest.raises(ConfigError, match="fft, onnx, matmul, conv"):
        LogMelFrontend().set_stft_backend("wavelet")


def factored_power(plan: FactoredDFT, frames: np.ndarray) -> np.ndarray:
    """|DFT|^2 of ``frames`` (n, n_fft) through the plan's matrices, written out with einsum."""
    x = frames.reshape(len(frames), plan.rows, plan.cols) * plan.window
    y = np.einsum("ar,mrc->mac", plan.first, x)
    y = np.concatenate([y[:, : plan.rows], y[:, plan.rows :]], axis=2)  # per q: real parts, then imaginary
    z = np.einsum("mqc,qcs->mqs", y, plan.second)
    power = z[..., : plan.out_bins] ** 2 + z[..., plan.out_bins :] ** 2
    return power.transpose(0, 2, 1).reshape(len(frames), -1)[:, : plan.rows * plan.cols // 2 + 1]


@pytest.mark.parametrize(("n_fft", "rows"), [(2048, None), (2048, 32), (600, None), (17, None), (12, 1)])
def test_factored_dft_power_against_numpy_rfft(n_fft: int, rows: int | None) -> None:
    window = periodic_hann(n_fft)
    plan = FactoredDFT.build(n_fft, window, rows=rows)
    assert plan.rows * plan.cols == n_fft
    frames = np.random.default_rng(n_fft).standard_normal((5, n_fft))
    want = np.abs(np.fft.rfft(frames * window)) ** 2
    np.testing.assert_allclose(factored_power(plan, frames), want, rtol=0, atol=1e-10 * want.max())


def test_factored_dft_default_split() -> None:
    # Smallest divisor >= sqrt(n): 64 x 32 for 2048; a prime length degenerates to one direct DFT.
    plan = FactoredDFT.build(2048, periodic_hann(2048))
    assert (plan.rows, plan.cols, plan.out_bins) == (64, 32, 17)
    assert FactoredDFT.build(600, periodic_hann(600)).rows == 25
    assert FactoredDFT.build(17, periodic_hann(17)).cols == 1
    with pytest.raises(ConfigError, match="does not divide"):
        FactoredDFT.build(2048, periodic_hann(2048), rows=48)


def test_matmul_backend_needs_hop_dividing_n_fft() -> None:
    with pytest.raises(ConfigError, match="multiple of hop_length"):
        LogMelFrontend(FrontendConfig(n_fft=2048, hop_length=300), stft_backend="matmul")


# --- normalisation and batch (in)dependence -----------------------------------------------


def test_standard_mode_standardises_each_example() -> None:
    y = torch.from_numpy(np.stack([signal(0.5, seed=6), 0.01 * signal(0.5, seed=7)])).float()
    frontend = LogMelFrontend()
    raw = frontend.log_mel(y).double()
    mean = raw.mean(dim=(1, 2), keepdim=True)
    std = raw.std(dim=(1, 2), unbiased=False, keepdim=True)
    expected = (raw - mean) / torch.sqrt(std**2 + 1e-5)
    out = frontend(y).double()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.mean(dim=(1, 2)), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-5)


def test_standard_mode_is_batch_invariant() -> None:
    clips = np.stack([signal(0.5, seed=10 + i, f0=150.0 + 40 * i) * (0.2 + i) for i in range(7)]).astype(np.float32)
    frontend = LogMelFrontend(chunk_size=3)  # 7 clips cross two chunk boundaries
    batch = frontend(torch.from_numpy(clips))
    for i in (0, 4, 6):
        alone = frontend(torch.from_numpy(clips[i : i + 1]))
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-5)


def test_official_mode_depends_on_the_batch() -> None:
    quiet = signal(0.5, seed=20).astype(np.float32) * 0.01
    loud = signal(0.5, seed=21).astype(np.float32)
    frontend = LogMelFrontend(FrontendConfig(mode="official-compat"))
    alone = frontend(torch.from_numpy(quiet[None]))[0]
    together = frontend(torch.from_numpy(np.stack([quiet, loud])))[0]
    raw = frontend.log_mel(torch.from_numpy(np.stack([quiet, loud])))
    torch.testing.assert_close(together, raw[0] / raw.max())
    torch.testing.assert_close(alone, raw[0] / raw[0].max())
    assert (together - alone).abs().max() > 0.01


def test_frames_and_shapes() -> None:
    cfg = FrontendConfig()
    for n in (1025, 22050, 22051, 176400):
        out = LogMelFrontend(cfg)(torch.zeros(2, n) + 0.01)
        assert out.shape == (2, 128, cfg.num_frames(n)) == (2, 128, 1 + n // 512)


def test_silence_stays_finite() -> None:
    # Constant log-mel: only float rounding is left after subtracting the mean, and NORM_EPS keeps it small.
    out = LogMelFrontend()(torch.zeros(1, 4096))
    assert torch.isfinite(out).all() and out.abs().max() < 1e-2


def test_bad_input_shapes() -> None:
    with pytest.raises(AudioError, match="batch, samples"):
        LogMelFrontend()(torch.zeros(4096))
    with pytest.raises(AudioError, match="too short for reflect"):
        LogMelFrontend(FrontendConfig(mode="official-compat"))(torch.zeros(1, 1000))


# --- configuration --------------------------------------------------------------------------


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = FrontendConfig(n_mels=64, f_min=30.0, f_max=10000.0, mode="official-compat")
    data = cfg.to_dict()
    assert FrontendConfig.from_dict(data) == cfg
    assert data["f_max"] == 10000.0 and data["mode"] == "official-compat"
    with pytest.raises(ConfigError, match="n_mel, zz"):
        FrontendConfig.from_dict({**data, "n_mel": 3, "zz": 1})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_fft": 0},
        {"hop_length": 2.5},
        {"mode": "fast"},
        {"pad_mode": "edge"},
        {"f_max": 30000.0},
        {"f_min": 9000.0, "f_max": 8000.0},
        {"log_eps": 0.0},
        {"f_min": "low"},
        {"f_min": None},
        {"log_eps": None},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        FrontendConfig(**kwargs)


def test_pad_mode_and_rates_per_mode() -> None:
    assert FrontendConfig().effective_pad_mode == "constant"
    assert FrontendConfig(mode="official-compat").effective_pad_mode == "reflect"
    assert FrontendConfig(mode="official-compat", pad_mode="constant").effective_pad_mode == "constant"
    assert FrontendConfig(mode="official-compat").effective_f_max == 11025.0
    assert FrontendConfig().effective_f_max == 22050.0


def test_buffers_stay_out_of_state_dict() -> None:
    assert LogMelFrontend().state_dict() == {}


# --- export -----------------------------------------------------------------------------------


def test_torchscript_matches_eager() -> None:
    frontend = LogMelFrontend(chunk_size=2)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is marked deprecated
        torch.jit.save(torch.jit.script(frontend), buffer)
        buffer.seek(0)
        loaded = torch.jit.load(buffer)
    x = torch.from_numpy(np.stack([signal(0.3, seed=30 + i) for i in range(5)])).float()
    torch.testing.assert_close(loaded(x), frontend(x), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "matmul", "conv"])
@pytest.mark.parametrize("mode", ["standard", "official-compat"])
def test_onnx_export_matches_eager(mode: str, backend: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    cfg = FrontendConfig(mode=mode)
    exported = LogMelFrontend(cfg, stft_backend=backend).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            exported,
            (torch.zeros(2, 22050),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["waveform"],
            output_names=["features"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "features": {0: "batch", 2: "frames"}},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    # Batch size and length differ from the ones used at export time.
    x = np.stack([signal(0.7, seed=40 + i, f0=200.0 + 50 * i) for i in range(3)]).astype(np.float32)
    (onnx_out,) = session.run(None, {"waveform": x})
    eager = LogMelFrontend(cfg)(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == eager.shape == (3, 128, 1 + x.shape[1] // 512)
    assert np.abs(onnx_out - eager).max() <= 1e-4 * np.abs(eager).max()
