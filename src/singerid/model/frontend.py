"""Waveform -> log-mel spectrogram, in torch, export-friendly.

Pipeline: centre padding -> STFT (periodic Hann window) -> power -> Slaney mel filterbank
-> ``log(x + log_eps)`` -> normalisation chosen by ``FrontendConfig.mode``:

``"standard"`` (default)
    Each example is standardised by its own mean and standard deviation over all mel bins
    and frames, so an embedding never depends on the rest of the batch. Centre padding is
    zeros (``pad_mode="constant"``, librosa's default).

``"official-compat"``
    Reproduces the authors' released implementation, including its two quirks:
    the mel filterbank is built for a 22,050 Hz signal (same ``n_fft`` and ``n_mels``) but
    applied to the 44.1 kHz STFT, so every band sits at twice its nominal frequency; and the
    log-mel is divided by its maximum over the WHOLE BATCH, so an example's features (and its
    embedding) change with its batch-mates (and, when that maximum is negative, as for a very
    quiet batch, the division also flips their sign). Centre padding reflects the signal
    (``pad_mode="reflect"``), as the original STFT layer did. The 3-channel copy and the
    ImageNet mean/std normalisation that follow in the original are applied by the model
    (:mod:`singerid.model.backbones`), not here.

Four STFT implementations give the same numbers (:meth:`LogMelFrontend.set_stft_backend`):

``"fft"`` (default)
    ``torch.stft`` with complex output: fastest in eager PyTorch and TorchScript.
``"onnx"``
    explicit centre padding, then ``torch.stft`` with real output, which the ONNX exporter
    (opset >= 17) maps to the ONNX ``STFT`` operator.
``"matmul"``
    the DFT factorised into two matrix-product stages (:class:`FactoredDFT`), built only from
    reshapes, slices and ``MatMul``: the ONNX export default, about 4x faster than ONNX Runtime's
    ``STFT`` kernel. Needs ``n_fft`` to be a multiple of ``hop_length``.
``"conv"``
    a strided ``conv1d`` with a fixed windowed DFT basis, for ONNX runtimes that lack the
    ``STFT`` operator (slowest; kept for the simplest possible graph).

The module scripts with ``torch.jit.script``; the ``onnx``, ``matmul`` and ``conv`` paths also trace
(``torch.jit.trace``, ONNX) with dynamic batch size and length. The filterbank is applied band
group by band group over only the STFT bins each group touches, which skips the filterbank's
zeros (same result as the dense product).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..audio import SAMPLE_RATE, check_model_rate
from ..configio import reject_unknown_keys
from ..errors import AudioError, ConfigError

MODES = ("standard", "official-compat")
PAD_MODES = ("constant", "reflect")
STFT_BACKENDS = ("fft", "onnx", "matmul", "conv")
OFFICIAL_MEL_SAMPLE_RATE = 22050
"""The rate the authors' released code (unintentionally) built its mel filterbank for."""

NORM_EPS = 1e-5
"""Added to the per-example variance in standard mode (keeps silence finite)."""


@dataclass
class FrontendConfig:
    """Settings of :class:`LogMelFrontend`; defaults are the paper's values.

    ``f_max=None`` means the Nyquist frequency of the filterbank's rate. ``pad_mode=None``
    picks the mode's own padding (``"constant"`` for standard, ``"reflect"`` for
    official-compat); see :attr:`effective_pad_mode`.
    """

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    log_eps: float = 1e-8
    mode: str = "standard"
    pad_mode: str | None = None

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"FrontendConfig.{name}={value!r}: must be a positive integer.")
        check_model_rate(self.sample_rate, "model.frontend.sample_rate")
        if self.mode not in MODES:
            raise ConfigError(f"FrontendConfig.mode={self.mode!r}: choose one of {', '.join(MODES)}.")
        if self.pad_mode is not None and self.pad_mode not in PAD_MODES:
            raise ConfigError(
                f"FrontendConfig.pad_mode={self.pad_mode!r}: choose one of {', '.join(PAD_MODES)} (or null)."
            )
        for name in ("f_min", "f_max", "log_eps"):
            value = getattr(self, name)
            allowed = (int, float, type(None)) if name == "f_max" else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed):
                raise ConfigError(f"FrontendConfig.{name}={value!r}: must be a number.")
        if not self.log_eps > 0:
            raise ConfigError(f"FrontendConfig.log_eps={self.log_eps!r}: must be > 0.")
        nyquist = self.mel_sample_rate / 2
        f_max = self.effective_f_max
        if not 0 <= self.f_min < f_max <= nyquist:
            raise ConfigError(
                f"FrontendConfig f_min={self.f_min}, f_max={self.f_max}: need 0 <= f_min < f_max <= {nyquist:g} Hz "
                f"(Nyquist of the filterbank's rate {self.mel_sample_rate} Hz)."
            )

    @property
    def mel_sample_rate(self) -> int:
        """Rate the mel filterbank is designed for (22,050 Hz in official-compat mode)."""
        return OFFICIAL_MEL_SAMPLE_RATE if self.mode == "official-compat" else self.sample_rate

    @property
    def effective_f_max(self) -> float:
        """Upper edge of the filterbank in Hz (Nyquist of :attr:`mel_sample_rate` when unset)."""
        return float(self.f_max) if self.f_max is not None else self.mel_sample_rate / 2

    @property
    def effective_pad_mode(self) -> str:
        """Centre-padding mode actually used: ``"constant"`` (zeros) or ``"reflect"``."""
        if self.pad_mode is not None:
            return self.pad_mode
        return "reflect" if self.mode == "official-compat" else "constant"

    @property
    def n_freqs(self) -> int:
        """Number of STFT bins, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def num_frames(self, num_samples: int) -> int:
        """Frames produced for a waveform of ``num_samples`` samples (centre padding)."""
        return 1 + num_samples // self.hop_length

    def to_dict(self) -> dict:
        """Plain JSON-able dict of the fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontendConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError` naming them."""
        data = reject_unknown_keys(cls, data, "frontend config")
        return cls(**data)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale (librosa's default, ``htk=False``): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    log_step = math.log(6.4) / 27.0
    linear = hz / f_sp
    logarithmic = min_log_hz / f_sp + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / log_step
    return np.where(hz >= min_log_hz, logarithmic, linear)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    log_step = math.log(6.4) / 27.0
    linear = mel * f_sp
    logarithmic = min_log_hz * np.exp(log_step * (np.maximum(mel, min_log_mel) - min_log_mel))
    return np.where(mel >= min_log_mel, logarithmic, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """Triangular Slaney-scale mel filters with area normalisation, shape ``(n_mels, n_fft // 2 + 1)``.

    Filter ``m`` rises linearly from mel point ``m`` to ``m + 1`` and falls to ``m + 2``, where the
    ``n_mels + 2`` points are equally spaced on the mel scale between ``f_min`` and ``f_max``;
    each filter is scaled by ``2 / (upper edge - lower edge in Hz)`` (``norm='slaney'``).
    Raises :class:`ConfigError` if a filter covers no STFT bin (too many mels for ``n_fft``).
    """
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bin_hz[None, :] - lower) / (centre - lower)
    falling = (upper - bin_hz[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= 2.0 / (upper - lower)
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if empty.size:
        raise ConfigError(
            f"mel filterbank (sr={sample_rate}, n_fft={n_fft}, n_mels={n_mels}): filter(s) {empty.tolist()[:5]} "
            "cover no STFT bin. Use fewer mel bands or a larger n_fft."
        )
    return weights


def dft_basis(n_fft: int, window: np.ndarray) -> np.ndarray:
    """Windowed real-DFT basis for a conv1d STFT, shape ``(2 * (n_fft // 2 + 1), 1, n_fft)``.

    Rows ``[0, F)`` give the real part ``sum w[n] x[n] cos(2 pi k n / N)``, rows ``[F, 2F)`` the
    imaginary part ``-sum w[n] x[n] sin(2 pi k n / N)`` (``torch.stft``'s sign convention).
    """
    n_freqs = n_fft // 2 + 1
    # Reduce k*n modulo N in integers so the phase stays exact for large N.
    phase = 2.0 * np.pi * (np.outer(np.arange(n_freqs), np.arange(n_fft)) % n_fft) / n_fft
    basis = np.concatenate([np.cos(phase), -np.sin(phase)], axis=0) * window[None, :]
    return basis[:, None, :]


@dataclass(frozen=True)
class FactoredDFT:
    """The real DFT of length ``n = rows * cols`` as two matrix-product stages (Cooley-Tukey).

    A frame is laid out as ``(rows, cols)`` with sample ``t = c + cols * r`` at ``[r, c]``.
    Stage 1 transforms every column over ``r`` (length ``rows``): ``first`` is
    ``(2 * rows, rows)``, real parts above imaginary ones. Stage 2 applies, for each stage-1
    bin ``q``, the twiddle ``exp(-2 pi i q c / n)`` and the length-``cols`` DFT over ``c`` in one
    real matrix ``second[q]`` of shape ``(2 * cols, 2 * out_bins)`` (input real parts above
    imaginary ones; output real parts left of imaginary ones). Output bin ``s`` of column-block
    ``q`` is DFT bin ``k = q + rows * s``; only ``s < out_bins`` are kept, enough for
    ``k <= n / 2``. ``window`` is the analysis window laid out the same way, ``(rows, cols)``.
    """

    rows: int
    cols: int
    out_bins: int
    window: np.ndarray
    first: np.ndarray
    second: np.ndarray

    @classmethod
    def build(cls, n_fft: int, window: np.ndarray, rows: int | None = None) -> FactoredDFT:
        """Factor ``n_fft`` as ``rows * cols``; by default ``rows`` is the smallest divisor
        ``>= sqrt(n_fft)``, near where the two stages' multiplications, about
        ``2 * n_fft * (rows + cols)`` per frame, are fewest."""
        if rows is None:
            rows = next(d for d in range(math.isqrt(n_fft - 1) + 1, n_fft + 1) if n_fft % d == 0)
        if n_fft % rows:
            raise ConfigError(f"factored DFT: rows={rows} does not divide n_fft={n_fft}.")
        cols = n_fft // rows
        out_bins = (n_fft // 2) // rows + 1
        r, c, s = np.arange(rows), np.arange(cols), np.arange(out_bins)
        phase1 = 2.0 * np.pi * (np.outer(r, r) % rows) / rows
        first = np.concatenate([np.cos(phase1), -np.sin(phase1)], axis=0)
        # exp(-2 pi i (q c / n + c s / cols)) for every (q, c, s); integer reductions keep it exact.
        turns = (np.arange(rows)[:, None, None] * c[None, :, None] + rows * (np.outer(c, s) % cols)[None]) % n_fft
        phase2 = 2.0 * np.pi * turns / n_fft
        cos, sin = np.cos(phase2), -np.sin(phase2)
        # (a + ib)(cos + i sin) = (a cos - b sin) + i (a sin + b cos)
        second = np.concatenate(
            [np.concatenate([cos, sin], axis=2), np.concatenate([-sin, cos], axis=2)], axis=1
        )
        return cls(rows, cols, out_bins, window.reshape(rows, cols), first, second)


def periodic_hann(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` in float64 (``torch.hann_window(n, periodic=True)``)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def split_filterbank(fb: np.ndarray, rows_per_band: int = 16) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Cut a mel filterbank into row groups, each kept only over the STFT bins it touches.

    Returns the groups' weights flattened into one array and, per group, ``(offset, rows,
    first_bin, n_bins)``. Applying the groups one by one gives the dense product while skipping
    the zeros (about 8x fewer multiplications for 128 Slaney bands).
    """
    chunks, bands, offset = [], [], 0
    for start in range(0, fb.shape[0], rows_per_band):
        block = fb[start : start + rows_per_band]
        touched = np.flatnonzero(block.max(axis=0) > 0)
        first, last = int(touched[0]), int(touched[-1]) + 1
        chunks.append(block[:, first:last].ravel())
        bands.append((offset, block.shape[0], first, last - first))
        offset += block.shape[0] * (last - first)
    return np.concatenate(chunks), bands


class LogMelFrontend(nn.Module):
    """Waveform ``(B, T)`` float32 at ``cfg.sample_rate`` -> features ``(B, n_mels, frames)``.

    ``frames = 1 + T // hop_length``. See the module docstring for the two modes. The filterbank,
    window and DFT basis are non-persistent buffers, rebuilt from the config and never stored in
    state dicts. ``dtype`` sets the buffers' precision (float64 reproduces librosa to ~1e-12).
    """

    def __init__(
        self,
        cfg: FrontendConfig | None = None,
        stft_backend: str = "fft",
        dtype: torch.dtype = torch.float32,
        chunk_size: int = 4,
    ) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else FrontendConfig()
        if chunk_size < 1:
            raise ConfigError(f"LogMelFrontend chunk_size={chunk_size}: must be >= 1.")
        self.n_fft = self.cfg.n_fft
        self.n_freqs = self.cfg.n_freqs
        self.hop_length = self.cfg.hop_length
        self.log_eps = float(self.cfg.log_eps)
        self.pad_mode = self.cfg.effective_pad_mode
        self.standardise = self.cfg.mode == "standard"
        self.norm_eps = NORM_EPS
        # On CPU the FFT path runs a few clips at a time: the spectra then stay small enough to be
        # cached and reused by the allocator instead of being page-faulted in for every batch.
        self.chunk_size = int(chunk_size)
        fb = mel_filterbank(self.cfg.mel_sample_rate, self.n_fft, self.cfg.n_mels, self.cfg.f_min, self.cfg.effective_f_max)
        flat, self.bands = split_filterbank(fb)
        self.register_buffer("mel_weights", torch.tensor(flat, dtype=dtype), persistent=False)
        self.register_buffer("window", torch.tensor(periodic_hann(self.n_fft), dtype=dtype), persistent=False)
        self.register_buffer("dft", torch.zeros(0, dtype=dtype), persistent=False)
        for name in ("factored_window", "factored_first", "factored_second"):
            self.register_buffer(name, torch.zeros(0, dtype=dtype), persistent=False)
        self.stft_backend = "fft"
        self.set_stft_backend(stft_backend)

    def set_stft_backend(self, backend: str) -> LogMelFrontend:
        """Use ``"fft"`` (``torch.stft``), ``"onnx"`` (real-output ``torch.stft``, exported as the
        ONNX STFT operator), ``"matmul"`` (the factorised DFT, exported as matrix products) or
        ``"conv"`` (DFT as conv1d)."""
        if backend not in STFT_BACKENDS:
            raise ConfigError(f"stft backend {backend!r}: choose one of {', '.join(STFT_BACKENDS)}.")
        if backend == "matmul" and self.n_fft % self.hop_length:
            raise ConfigError(
                f"stft backend 'matmul' needs n_fft ({self.n_fft}) to be a multiple of hop_length "
                f"({self.hop_length}); use the 'onnx' or 'conv' backend (export with --onnx-stft onnx) for this frontend."
            )
        self.stft_backend = backend
        dtype, device = self.window.dtype, self.window.device
        # The DFT matrices (17 MB for conv at n_fft=2048) are only kept while their backend is in use.
        if backend == "conv" and self.dft.numel() == 0:
            self.dft = torch.tensor(dft_basis(self.n_fft, periodic_hann(self.n_fft)), dtype=dtype, device=device)
        elif backend != "conv":
            self.dft = torch.zeros(0, dtype=dtype, device=device)
        if backend == "matmul" and self.factored_first.numel() == 0:
            plan = FactoredDFT.build(self.n_fft, periodic_hann(self.n_fft))
            self.factored_window = torch.tensor(plan.window, dtype=dtype, device=device)
            self.factored_first = torch.tensor(plan.first, dtype=dtype, device=device)
            self.factored_second = torch.tensor(plan.second, dtype=dtype, device=device)
        elif backend != "matmul":
            for name in ("factored_window", "factored_first", "factored_second"):
                setattr(self, name, torch.zeros(0, dtype=dtype, device=device))
        return self

    def _centre_padded(self, wave: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> ``(B, T + n_fft)``: half a frame of padding on each side (``pad_mode``)."""
        half = self.n_fft // 2
        return nn.functional.pad(wave.unsqueeze(1), [half, half], mode=self.pad_mode).squeeze(1)

    @torch.jit.unused
    def _real_stft(self, wave):  # noqa: ANN001, ANN202 - TorchScript cannot resolve postponed annotations here
        """Real and imaginary STFT parts from ``torch.stft(return_complex=False)`` on a padded signal,
        the only form the ONNX exporter turns into its ``STFT`` operator (never scripted)."""
        padded = self._centre_padded(wave)
        with warnings.catch_warnings():
            # Real output is deprecated in eager PyTorch but is what the exporter understands.
            warnings.filterwarnings("ignore", message=".*return_complex=False.*")
            spec = torch.stft(
                padded, self.n_fft, hop_length=self.hop_length, window=self.window, center=False, return_complex=False
            )
        return spec[..., 0], spec[..., 1]

    @torch.jit.unused
    def _factored_power(self, wave):  # noqa: ANN001, ANN202 - TorchScript cannot resolve postponed annotations here
        """|STFT|^2 through :class:`FactoredDFT`: frames are cut from hop-sized blocks and both DFT
        stages are batched matrix products, which ONNX Runtime runs far faster than its ``STFT``."""
        batch = wave.shape[0]
        hop = self.hop_length
        rows, cols = self.factored_window.shape
        per_frame = self.n_fft // hop
        frames_n = wave.shape[1] // hop + 1
        padded = self._centre_padded(wave)
        blocks = padded[:, : (frames_n + per_frame - 1) * hop].reshape(batch, -1, hop)
        frames = torch.cat([blocks[:, i : i + frames_n] for i in range(per_frame)], dim=2)
        x = frames.reshape(-1, rows, cols) * self.factored_window
        y = torch.matmul(self.factored_first, x)  # (M, 2 rows, cols): real parts, then imaginary
        # Per stage-1 bin q: its real and imaginary parts side by side, so stage 2 is one matmul per q.
        y = y.reshape(-1, 2, rows, cols).permute(2, 0, 1, 3).reshape(rows, -1, 2 * cols)
        z = torch.matmul(y, self.factored_second)  # (rows, M, 2 out_bins)
        out = self.factored_second.shape[2] // 2
        power = torch.addcmul(z[..., :out] * z[..., :out], z[..., out:], z[..., out:])
        # Bin k = q + rows * s sits at [q, frame, s]: order it as (frame, s, q), flatten, keep k <= n_fft / 2.
        power = power.permute(1, 2, 0).reshape(batch, frames_n, out * rows)[:, :, : self.n_freqs]
        return power.transpose(1, 2)

    def power_spectrogram(self, wave: torch.Tensor) -> torch.Tensor:
        """|STFT|^2 with centre padding, ``(B, n_fft // 2 + 1, frames)``."""
        if not torch.jit.is_tracing():
            if wave.dim() != 2:
                raise AudioError(f"frontend input: expected a (batch, samples) waveform, got shape {list(wave.shape)}.")
            if self.pad_mode == "reflect" and wave.shape[1] <= self.n_fft // 2:
                raise AudioError(
                    f"frontend input: {wave.shape[1]} samples is too short for reflect padding; "
                    f"pass more than {self.n_fft // 2} samples."
                )
        if self.stft_backend == "matmul":
            return self._factored_power(wave)
        if self.stft_backend == "conv":
            spec = nn.functional.conv1d(self._centre_padded(wave).unsqueeze(1), self.dft, stride=self.hop_length)
            real, imag = spec[:, : self.n_freqs], spec[:, self.n_freqs :]
        elif self.stft_backend == "onnx":
            real, imag = self._real_stft(wave)
        else:
            spec = torch.stft(
                wave,
                self.n_fft,
                hop_length=self.hop_length,
                window=self.window,
                center=True,
                pad_mode=self.pad_mode,
                return_complex=True,
            )
            real, imag = torch.real(spec), torch.imag(spec)
        # addcmul on the strided real/imag views is several times faster than pow + add.
        return torch.addcmul(real * real, imag, imag)

    def mel(self, power: torch.Tensor) -> torch.Tensor:
        """Apply the mel filterbank to a power spectrogram: ``(B, F, frames)`` -> ``(B, n_mels, frames)``."""
        parts = [
            torch.matmul(self.mel_weights[offset : offset + rows * width].view(rows, width), power[:, first : first + width])
            for offset, rows, first, width in self.bands
        ]
        return torch.cat(parts, dim=1)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``log(mel power + log_eps)`` before any normalisation, ``(B, n_mels, frames)``."""
        if self.stft_backend != "fft" or torch.jit.is_tracing() or wave.device.type != "cpu" or wave.shape[0] <= self.chunk_size:
            return torch.log(self.mel(self.power_spectrogram(wave)) + self.log_eps)
        parts = [torch.log(self.mel(self.power_spectrogram(part)) + self.log_eps) for part in wave.split(self.chunk_size)]
        return torch.cat(parts)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel features, ``(B, n_mels, frames)``."""
        x = self.log_mel(wave)
        if self.standardise:
            mean = x.mean(dim=(1, 2), keepdim=True)
            var = (x - mean).pow(2).mean(dim=(1, 2), keepdim=True)
            return (x - mean) / torch.sqrt(var + self.norm_eps)
        # official-compat: the original divides by the maximum over the whole batch.
        return x / x.max()
