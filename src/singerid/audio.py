"""Audio at the edge of the library: load, mix to mono, resample, check, crop, write.

Everything past this module sees float32 mono audio at :data:`SAMPLE_RATE` (or at a rate
the caller asked for explicitly). Problems are raised as :class:`~singerid.errors.AudioError`
with the file name and a fix; nothing is ever replaced by silence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioError, ConfigError
from .fileio import atomic_path

SAMPLE_RATE = 44100
"""The library's working sample rate (full band, as in the paper)."""

WINDOW_SECONDS = 4.0
"""Default crop, window and segment length in seconds (the paper's 4 s crops). A trained model
stores its own crop length in its artefact, and inference uses that."""

SILENCE_DB = -60.0
"""RMS level (dBFS) below which a clip or frame counts as silent."""

MAX_SECONDS = 3 * 3600.0
"""Longest recording read whole by default (3 hours); longer files are refused with a clear error
rather than exhausting memory. Pass ``max_seconds`` (``--max-seconds``) to change it."""


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says, without decoding the audio."""

    path: Path
    sample_rate: int
    channels: int
    frames: int
    subtype: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def check_model_rate(rate: int, setting: str) -> None:
    """Refuse a config ``setting`` that states a model rate other than :data:`SAMPLE_RATE`."""
    if rate != SAMPLE_RATE:
        raise ConfigError(
            f"{setting}={rate!r}: singerid models run at {SAMPLE_RATE} Hz and audio is resampled to it when loaded; "
            "remove this setting."
        )


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Read the header of ``path``; raise :class:`AudioError` if it is missing or unreadable."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: file not found. Check the path (relative paths start at {Path.cwd()}).")
    if p.is_dir():
        raise AudioError(f"{p}: is a folder, not an audio file. Pass the files inside it.")
    if p.stat().st_size == 0:
        raise AudioError(f"{p}: file is empty (0 bytes). Re-export or re-copy it.")
    try:
        info = sf.info(str(p))
    except Exception as exc:  # soundfile raises several types for corrupt headers
        raise AudioError(
            f"{p}: cannot read audio ({exc}). Convert it to WAV or FLAC (e.g. `ffmpeg -i in out.wav`)."
        ) from exc
    if info.frames <= 0:
        raise AudioError(f"{p}: holds no audio frames. Re-export it.")
    return AudioInfo(p, int(info.samplerate), int(info.channels), int(info.frames), str(info.subtype))


def to_mono(audio: np.ndarray) -> np.ndarray:
    """Average the channels of ``(frames, channels)`` audio; 1-D input is returned as is."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2:
        raise AudioError(f"audio has shape {audio.shape}; expected (frames,) or (frames, channels).")
    # A matrix product is ~20x faster than mean(axis=1) on interleaved (frames, channels) data.
    return audio @ np.full(audio.shape[1], 1.0 / audio.shape[1], dtype=np.float32)


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample 1-D or ``(frames, channels)`` audio with soxr (high quality); float32 out."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out:
        return audio
    if rate_in <= 0 or rate_out <= 0:
        raise AudioError(f"sample rates must be positive, got {rate_in} -> {rate_out}.")
    return soxr.resample(audio, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def rms_db(audio: np.ndarray) -> float:
    """RMS level of ``audio`` in dBFS (``-inf`` for digital silence)."""
    audio = np.asarray(audio, dtype=np.float64)
    if audio.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(audio**2)))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def frame_levels_db(audio: np.ndarray, sample_rate: int, frame_seconds: float = 0.05) -> np.ndarray:
    """RMS level in dBFS of consecutive non-overlapping frames (the last partial frame included)."""
    n = max(1, int(round(frame_seconds * sample_rate)))
    audio = np.asarray(audio, dtype=np.float64)
    pad = (-len(audio)) % n
    frames = np.pad(audio, (0, pad)).reshape(-1, n)
    counts = np.full(len(frames), n, dtype=np.float64)
    if pad:
        counts[-1] = n - pad
    power = (frames**2).sum(axis=1) / counts
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(power)


def active_fraction(audio: np.ndarray, sample_rate: int, threshold_db: float = SILENCE_DB) -> float:
    """Fraction of 50 ms frames whose level is above ``threshold_db``."""
    levels = frame_levels_db(audio, sample_rate)
    return float(np.mean(levels > threshold_db)) if levels.size else 0.0


def clipped_fraction(audio: np.ndarray, ceiling: float = 0.999) -> float:
    """Fraction of samples at or beyond ``ceiling`` in magnitude."""
    audio = np.asarray(audio)
    return float(np.mean(np.abs(audio) >= ceiling)) if audio.size else 0.0


def check_audio(
    audio: np.ndarray,
    source: str,
    sample_rate: int = SAMPLE_RATE,
    *,
    min_seconds: float = 0.0,
    silence_db: float = SILENCE_DB,
    max_clipped: float | None = 0.01,
) -> np.ndarray:
    """Validate a mono clip and return it; raise :class:`AudioError` naming ``source``.

    Rejects empty, non-finite, shorter-than-``min_seconds``, silent (RMS under
    ``silence_db``) and heavily clipped (more than ``max_clipped`` of samples at full
    scale; ``None`` disables the check) audio.
    """
    audio = np.asarray(audio)
    if audio.size == 0:
        raise AudioError(f"{source}: audio is empty. Check the file or the crop you asked for.")
    if not np.all(np.isfinite(audio)):
        bad = int(np.sum(~np.isfinite(audio)))
        raise AudioError(f"{source}: {bad} samples are NaN or infinite. Re-export the file; it is corrupt.")
    seconds = audio.shape[-1] / sample_rate
    if seconds < min_seconds:
        raise AudioError(
            f"{source}: {seconds:.2f} s is shorter than the {min_seconds:.2f} s needed. "
            "Use a longer clip, or allow padding (pad='repeat' or pad='zeros')."
        )
    level = rms_db(audio)
    if level < silence_db:
        raise AudioError(
            f"{source}: audio is silent (RMS {level:.1f} dBFS < {silence_db:.0f} dBFS). "
            "Check the file, or pass a crop that contains singing."
        )
    if max_clipped is not None:
        frac = clipped_fraction(audio)
        if frac > max_clipped:
            raise AudioError(
                f"{source}: {100 * frac:.1f}% of samples are clipped at full scale (limit "
                f"{100 * max_clipped:.1f}%). Use an unclipped source, or raise the limit (max_clipped)."
            )
    return audio


def load_audio(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    min_seconds: float = 0.0,
    check: bool = True,
    max_clipped: float | None = 0.01,
    max_seconds: float | None = MAX_SECONDS,
) -> np.ndarray:
    """Load ``path`` as float32 mono at ``sample_rate``.

    ``offset`` and ``duration`` (seconds) read only that crop from disk, without decoding
    the rest of the file. With ``check`` the clip is validated by :func:`check_audio`. A read
    longer than ``max_seconds`` (None: no cap) raises :class:`AudioError` before decoding.
    """
    info = audio_info(path)
    length = info.duration - offset if duration is None else min(duration, info.duration - offset)
    if max_seconds is not None and length > max_seconds:
        raise AudioError(
            f"{info.path}: {length / 60:.1f} min is longer than the {max_seconds / 60:.1f} min cap; "
            "raise the cap (--max-seconds / max_seconds) or cut the file into parts."
        )
    start = int(round(offset * info.sample_rate))
    if start < 0 or start >= info.frames:
        raise AudioError(
            f"{info.path}: offset {offset:.2f} s is outside the file ({info.duration:.2f} s long)."
        )
    frames = -1 if duration is None else max(1, int(round(duration * info.sample_rate)))
    try:
        data, rate = sf.read(str(info.path), start=start, frames=frames, dtype="float32", always_2d=True)
    except MemoryError:
        raise AudioError(
            f"{info.path}: out of memory decoding {info.duration / 60:.1f} min of audio; "
            "lower --max-seconds, cut the file into parts, or use a machine with more memory."
        ) from None
    except Exception as exc:
        raise AudioError(f"{info.path}: decoding failed ({exc}). The file is corrupt or truncated; re-export it.") from exc
    audio = resample(to_mono(data), rate, sample_rate)
    if check:
        check_audio(audio, str(info.path), sample_rate, min_seconds=min_seconds, max_clipped=max_clipped)
    return audio


def peak_normalize(audio: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Scale ``audio`` so its largest magnitude is ``peak`` (silence is returned unchanged)."""
    audio = np.asarray(audio, dtype=np.float32)
    top = float(np.max(np.abs(audio))) if audio.size else 0.0
    return audio if top == 0.0 else (audio * (peak / top)).astype(np.float32)


def fit_length(audio: np.ndarray, length: int, pad: str = "zeros") -> np.ndarray:
    """Cut ``audio`` to ``length`` samples, or pad it: ``"zeros"`` or ``"repeat"`` (loop the clip)."""
    audio = np.asarray(audio, dtype=np.float32)
    if len(audio) >= length:
        return audio[:length]
    if pad == "zeros":
        return np.pad(audio, (0, length - len(audio)))
    if pad == "repeat":
        if len(audio) == 0:
            raise AudioError("cannot repeat-pad an empty clip.")
        return np.tile(audio, -(-length // len(audio)))[:length]
    raise AudioError(f"unknown pad policy {pad!r}; use 'zeros' or 'repeat'.")


def training_crop(audio: np.ndarray, length: int) -> np.ndarray:
    """A model input of exactly ``length`` samples: cut or repeat-padded, then peak-normalised
    (how training and validation crops are prepared)."""
    return peak_normalize(fit_length(audio, length, pad="repeat"))


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Atomically write mono or ``(frames, channels)`` audio; returns the path written."""
    fmt = _format_for(Path(path))
    with atomic_path(path) as tmp:
        # Lossy containers choose their own subtype; PCM subtypes only apply to WAV/FLAC.
        sf.write(str(tmp), np.asarray(audio), sample_rate, subtype=subtype if fmt in ("WAV", "FLAC") else None, format=fmt)
    return Path(path)


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    formats = {"wav": "WAV", "flac": "FLAC", "ogg": "OGG", "mp3": "MP3"}
    if ext not in formats:
        raise AudioError(f"{path}: cannot write '.{ext}' files; use .wav, .flac, .ogg or .mp3.")
    return formats[ext]
