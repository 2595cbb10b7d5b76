"""``SingerEncoder``: embed clips, files and long recordings; score, verify, enroll, identify.

Embeddings are float32 ``(n, dim)`` arrays, L2-normalised; scores are cosine similarities.
An embedding never depends on what else is in the batch (the frontend normalises per example
and the network runs in eval mode).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .audio import (
    MAX_SECONDS,
    SAMPLE_RATE,
    SILENCE_DB,
    STREAM_SECONDS,
    audio_info,
    check_audio,
    fit_length,
    frame_levels_db,
    load_audio,
    resample,
    stream_windows,
    to_mono,
)
from .data.items import FileAudio, SegmentAudio
from .errors import AudioError, ConfigError
from .model.artifact import Artifact, load_artifact
from .model.backbones import CPU_PIECES, fused_for_inference
from .model.calibration import Calibration, decision_threshold
from .model.hub import resolve_model
from .profiles import UNKNOWN, Gallery, Match, SingerProfile
from .quality import Quality, assess
from .vectors import l2_normalize

AudioLike = Union[np.ndarray, torch.Tensor]
ClipLike = Union[str, os.PathLike, np.ndarray, torch.Tensor]


@dataclass(frozen=True)
class WindowEmbeddings:
    """Per-window embeddings of one recording, with window start/end times in seconds."""

    embeddings: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


@dataclass(frozen=True)
class Measured:
    """One clip as the model saw it: its embedding, its length in seconds and its input quality."""

    embedding: np.ndarray
    seconds: float
    quality: Quality


@dataclass(frozen=True)
class Verification:
    """Outcome of :meth:`SingerEncoder.verify`.

    ``same_singer`` and ``threshold`` are None when there is no threshold to decide with (the
    model carries no calibration and none was given); ``threshold_source`` says where the
    threshold came from (``"calibration"``, ``"given"`` or ``"none"``); ``probability`` is the
    calibrated same-singer probability (None without a calibration).
    """

    score: float
    same_singer: bool | None
    threshold: float | None
    threshold_source: str
    probability: float | None
    seconds: tuple[float, float]
    quality: tuple[Quality, Quality]

    def to_dict(self) -> dict:
        return {
            "score": self.score,
            "same_singer": self.same_singer,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "probability": self.probability,
            "seconds": list(self.seconds),
            "quality": [q.to_dict() for q in self.quality],
        }


@dataclass(frozen=True)
class Identification:
    """Outcome of :meth:`SingerEncoder.identify`: ranked candidates and, apart from them, the verdict.

    ``singer`` is the accepted name, :data:`~singerid.profiles.UNKNOWN` when the best candidate
    does not reach its threshold, or the best candidate in a closed-set search (``threshold``
    None). The threshold is the one for the best candidate, at the durations of the query and
    of that singer's enrolment.
    """

    matches: list[Match]
    singer: str
    threshold: float | None
    threshold_source: str
    seconds: float
    quality: Quality

    def to_dict(self) -> dict:
        return {
            "singer": self.singer,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "matches": [{"name": m.name, "score": m.score} for m in self.matches],
            "seconds": self.seconds,
            "quality": self.quality.to_dict(),
        }


class SingerEncoder:
    """A loaded singer-identity model, ready to embed audio.

    Parameters mirror :func:`load_model`; ``window`` and ``hop`` (seconds) set how audio longer
    than one window is cut (``window`` defaults to the crop length the model was trained with); ``min_seconds`` is the shortest clip accepted, and ``short`` says
    what happens below it: ``"reject"`` (an error) or ``"pad"`` (repeat the clip up to
    ``min_seconds``). Files longer than ``max_seconds`` (None: no cap) are refused before decoding.
    """

    def __init__(
        self,
        artifact: Artifact,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        window: float | None = None,
        hop: float | None = None,
        min_seconds: float = 1.0,
        short: str = "reject",
        max_seconds: float | None = MAX_SECONDS,
    ) -> None:
        if short not in ("reject", "pad"):
            raise ConfigError(f"short={short!r}: use 'reject' or 'pad'.")
        window = artifact.window_seconds if window is None else window
        if window <= 0 or (hop is not None and hop <= 0) or min_seconds <= 0:
            raise ConfigError("window, hop and min_seconds must be positive.")
        self.artifact = artifact
        self.device = torch.device(device)
        self.dtype = dtype
        self.net = fused_for_inference(artifact.net).to(self.device, dtype=dtype)
        self.window, self.hop = window, hop or window
        self.min_seconds, self.short = min_seconds, short
        self.max_seconds = max_seconds
        self.sample_rate = SAMPLE_RATE

    @property
    def batch_independent(self) -> bool:
        """False for official-compat models, whose frontend divides by the batch maximum."""
        return self.artifact.config.frontend.mode != "official-compat"

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.artifact.config.embedding_dim)

    # -- core ---------------------------------------------------------------------------
    @torch.inference_mode()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
        if not self.batch_independent:
            # One window at a time, so an official-compat embedding still ignores its batch-mates.
            return l2_normalize(torch.cat([self.net(row[None]) for row in x]).float().cpu().numpy())
        piece = CPU_PIECES.get(self.artifact.config.backbone) if self.device.type == "cpu" else None
        if piece:
            # Embeddings do not depend on the batch, so pieces give the same result, faster.
            return l2_normalize(torch.cat([self.net(part) for part in x.split(piece)]).float().numpy())
        return l2_normalize(self.net(x).float().cpu().numpy())

    def _prepare(self, audio: np.ndarray, source: str) -> np.ndarray:
        check_audio(audio, source, self.sample_rate, max_clipped=None)
        need = int(round(self.min_seconds * self.sample_rate))
        if len(audio) < need:
            if self.short == "reject":
                raise AudioError(
                    f"{source}: {len(audio) / self.sample_rate:.2f} s is shorter than min_seconds={self.min_seconds} s. "
                    "Use a longer clip, or short='pad' (--pad) to repeat it."
                )
            audio = fit_length(audio, need, pad="repeat")
        return audio

    def _starts(self, n: int) -> np.ndarray:
        """Window start samples for a clip of ``n`` samples; the last window ends at the clip's end."""
        win = int(round(self.window * self.sample_rate))
        if n <= win:
            return np.array([0])
        hop = int(round(self.hop * self.sample_rate))
        starts = list(range(0, n - win + 1, hop))
        if starts[-1] + win < n:
            starts.append(n - win)
        return np.array(starts)

    def _windows(self, audio: np.ndarray, skip_silence: bool) -> tuple[np.ndarray, np.ndarray]:
        """Window start samples and the stacked windows; the last window ends at the clip's end."""
        win = int(round(self.window * self.sample_rate))
        if len(audio) <= win:
            return np.array([0]), audio[None, :]
        starts_arr = self._starts(len(audio))
        stack = np.stack([audio[s : s + win] for s in starts_arr])
        if skip_silence:
            active = np.array([np.mean(frame_levels_db(w, self.sample_rate) > SILENCE_DB) >= 0.5 for w in stack])
            if active.any():
                starts_arr, stack = starts_arr[active], stack[active]
        return starts_arr, stack

    def _clips(self, audio: AudioLike, sample_rate: int) -> list[np.ndarray]:
        """Mono clips at the model's rate from a 1-D clip, ``(samples, channels)`` or ``(batch, samples)``."""
        x = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
        x = x.astype(np.float32, copy=False)
        if x.ndim == 2 and x.shape[1] <= 8 < x.shape[0]:
            x = to_mono(x)
        if x.ndim not in (1, 2):
            raise AudioError(f"audio has shape {x.shape}; expected (samples,), (samples, channels) or (batch, samples).")
        return [resample(c, sample_rate, self.sample_rate) for c in (x[None] if x.ndim == 1 else x)]

    # -- public ---------------------------------------------------------------------------
    def embed(self, audio: AudioLike, sample_rate: int = SAMPLE_RATE, *, skip_silence: bool = False, batch_size: int = 32) -> np.ndarray:
        """Embed a 1-D clip or a ``(batch, samples)`` array of clips -> ``(n, dim)``.

        Clips longer than one window are cut into windows and their normalised embeddings are
        averaged. ``(samples, channels)`` stereo is mixed down; any ``sample_rate`` is resampled.
        Windows of all clips are run together in batches of ``batch_size``.
        """
        clips = [self._prepare(c, f"clip {i}") for i, c in enumerate(self._clips(audio, sample_rate))]
        windows = [self._windows(c, skip_silence)[1] for c in clips]
        owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
        by_length: dict[int, list[int]] = {}
        flat = [w for ws in windows for w in ws]
        for j, w in enumerate(flat):
            by_length.setdefault(len(w), []).append(j)
        emb = np.zeros((len(flat), self.dim), np.float32)
        for idx in by_length.values():
            for k in range(0, len(idx), batch_size):
                chunk = idx[k : k + batch_size]
                emb[chunk] = self._forward(np.stack([flat[j] for j in chunk]))
        out = np.zeros((len(clips), self.dim), np.float32)
        np.add.at(out, owner, emb)
        return l2_normalize(out)

    def embed_windows(
        self, audio: AudioLike, sample_rate: int = SAMPLE_RATE, *, skip_silence: bool = False, batch_size: int = 32, source: str = "audio"
    ) -> WindowEmbeddings:
        """Per-window embeddings of one (long) recording with start/end times in seconds."""
        clips = self._clips(audio, sample_rate)
        if len(clips) != 1:
            raise AudioError(f"{source}: embed_windows takes one clip, got {len(clips)}.")
        x = self._prepare(clips[0], source)
        win = min(len(x), int(round(self.window * self.sample_rate)))
        starts = self._starts(len(x))
        # Windows are cut one batch at a time, so memory holds the recording and one batch, not a copy per window.
        parts, kept = [], []
        for i in range(0, len(starts), batch_size):
            batch_starts = starts[i : i + batch_size]
            batch = np.stack([x[s : s + win] for s in batch_starts])
            if skip_silence:
                active = np.array([np.mean(frame_levels_db(w, self.sample_rate) > SILENCE_DB) >= 0.5 for w in batch])
                batch, batch_starts = batch[active], batch_starts[active]
                if not len(batch):
                    continue
            parts.append(self._forward(batch))
            kept.append(batch_starts)
        if not parts:  # every window silent: use them all, as for a short silent-looking clip
            return self.embed_windows(x, skip_silence=False, batch_size=batch_size, source=source)
        starts = np.concatenate(kept)
        return WindowEmbeddings(np.concatenate(parts), starts / self.sample_rate, (starts + win) / self.sample_rate)

    def embed_file(self, path: str | os.PathLike, *, skip_silence: bool = False) -> np.ndarray:
        """One embedding for a whole file -> ``(dim,)``."""
        if audio_info(path).duration > STREAM_SECONDS:
            return self._embed_streamed(path, skip_silence, batch_size=32)
        audio = load_audio(path, max_clipped=None, max_seconds=self.max_seconds)
        windows = self.embed_windows(audio, skip_silence=skip_silence, source=str(path))
        return l2_normalize(windows.embeddings.mean(0))

    def embed_files(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        skip_silence: bool = False,
        progress: bool = True,
    ) -> np.ndarray:
        """Embed whole files -> ``(len(paths), dim)``; audio is decoded in ``num_workers`` processes."""
        return self._embed_decoded(FileAudio(paths, max_seconds=self.max_seconds), "file", batch_size, num_workers, skip_silence, progress)[0]

    def embed_files_skipping(
        self,
        paths: Sequence[str | os.PathLike],
        *,
        batch_size: int = 32,
        num_workers: int = 0,
        skip_silence: bool = False,
        progress: bool = True,
    ) -> tuple[np.ndarray, dict[str, str]]:
        """Like :meth:`embed_files`, but a file that cannot be used is left out instead of stopping.

        Returns the embeddings of the usable files (in order) and ``{path: reason}`` for the others.
        """
        items = FileAudio(paths, skip=True, max_seconds=self.max_seconds)
        emb, failed = self._embed_decoded(items, "file", batch_size, num_workers, skip_silence, progress)
        keep = [i for i, p in enumerate(items.paths) if p not in failed]
        return emb[keep], failed

    def embed_segments(self, segments: Iterable, *, batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> np.ndarray:
        """Embed crops described by :class:`~singerid.records.Segment` rows -> ``(n, dim)``."""
        return self._embed_decoded(SegmentAudio(list(segments)), "seg", batch_size, num_workers, False, progress)[0]

    def _embed_decoded(
        self, items: Dataset, unit: str, batch_size: int, num_workers: int, skip_silence: bool, progress: bool
    ) -> tuple[np.ndarray, dict[str, str]]:
        """One whole-item embedding (mean of its windows) per ``(name, audio)`` item of ``items``.

        An item whose audio is a string is one that could not be read (the string says why); it
        is recorded and skipped, as is audio that proves unusable here, when ``items.skip`` is set.
        """
        loader = DataLoader(items, batch_size=None, num_workers=num_workers)
        out = np.zeros((len(items), self.dim), np.float32)
        failed: dict[str, str] = {}
        for i, (name, audio) in enumerate(tqdm(loader, total=len(items), desc="embed", unit=unit, disable=not progress)):
            if isinstance(audio, str):
                failed[name] = audio
                continue
            try:
                if audio is None:  # a long file: read from disk window by window here
                    out[i] = self._embed_streamed(name, skip_silence, batch_size)
                    continue
                windows = self.embed_windows(audio.numpy(), skip_silence=skip_silence, batch_size=batch_size, source=name)
            except AudioError as exc:
                if not getattr(items, "skip", False):
                    raise
                failed[name] = str(exc)
                continue
            out[i] = l2_normalize(windows.embeddings.mean(0))
        return out, failed

    def _embed_streamed(self, path: str | os.PathLike, skip_silence: bool, batch_size: int) -> np.ndarray:
        """The whole-file embedding of a long file, read block by block (memory does not grow with its length)."""
        win, hop = int(round(self.window * self.sample_rate)), int(round(self.hop * self.sample_rate))
        windows = stream_windows(path, win, hop, sample_rate=self.sample_rate, max_seconds=self.max_seconds)
        total, active_total, n, n_active = np.zeros(self.dim), np.zeros(self.dim), 0, 0
        while batch := [w for _, w in itertools.islice(windows, batch_size)]:
            emb = self._forward(np.stack(batch))
            total, n = total + emb.sum(0), n + len(emb)
            if skip_silence:
                active = np.array([np.mean(frame_levels_db(w, self.sample_rate) > SILENCE_DB) >= 0.5 for w in batch])
                active_total, n_active = active_total + emb[active].sum(0), n_active + int(active.sum())
        # As in embed_windows: with skip_silence the silent windows are left out unless all are silent.
        return l2_normalize((active_total if n_active else total).astype(np.float32))

    def measure(self, clip: ClipLike, sample_rate: int = SAMPLE_RATE) -> Measured:
        """Embed one clip (a file path or an audio array) and measure its length and input quality."""
        if isinstance(clip, (str, os.PathLike)):
            audio, source = load_audio(clip, max_clipped=None, max_seconds=self.max_seconds), str(clip)
        else:
            clips = self._clips(clip, sample_rate)
            if len(clips) != 1:
                raise AudioError(f"expected one clip, got a batch of {len(clips)}; pass them one at a time.")
            audio, source = clips[0], "clip"
        windows = self.embed_windows(audio, source=source)
        return Measured(l2_normalize(windows.embeddings.mean(0)), len(audio) / self.sample_rate, assess(audio, self.sample_rate))

    def score(self, a: ClipLike, b: ClipLike, sample_rate: int = SAMPLE_RATE) -> float:
        """Cosine similarity of two clips (file paths or audio arrays)."""
        return float(np.dot(self.measure(a, sample_rate).embedding, self.measure(b, sample_rate).embedding))

    @property
    def calibration(self) -> Calibration | None:
        """The artefact's score calibration, or None when it carries none."""
        stored = self.artifact.calibration
        return Calibration.from_dict(stored) if stored.get("logistic") else None

    def threshold(self, which: str = "eer", seconds: tuple[float, float] | None = None) -> float:
        """The calibrated score threshold at operating point ``which`` for two sides of ``seconds``
        (default: the reference length the calibration was fitted at)."""
        cal = self.calibration
        if cal is None:
            thresholds = self.artifact.calibration.get("thresholds", {})
            if which in thresholds:
                return float(thresholds[which])
            raise ConfigError(
                f"{self.artifact.path}: the model carries no calibration. Give a threshold (threshold=... in Python, "
                "--threshold on the command line), or calibrate it with `singerid evaluate --calibrate`."
            )
        try:
            return cal.threshold(which, seconds)
        except ConfigError as exc:
            raise ConfigError(f"{self.artifact.path}: {exc}") from exc

    def decision_threshold(self, threshold: float | None, seconds: tuple[float, float]) -> tuple[float | None, str]:
        """The threshold to decide with for two sides of ``seconds``, and where it comes from:
        ``threshold`` when given, else the calibrated EER threshold, else ``(None, "none")``."""
        try:
            return decision_threshold(self.artifact.calibration, threshold, seconds)
        except ConfigError as exc:
            raise ConfigError(f"{self.artifact.path}: {exc}") from exc

    def verify(self, a: ClipLike, b: ClipLike, threshold: float | None = None, sample_rate: int = SAMPLE_RATE) -> Verification:
        """Same singer? The score, and a decision at ``threshold`` or else at the calibrated EER
        threshold for these two lengths; no decision when there is neither."""
        ma, mb = self.measure(a, sample_rate), self.measure(b, sample_rate)
        s = float(np.dot(ma.embedding, mb.embedding))
        seconds = (ma.seconds, mb.seconds)
        thr, source = self.decision_threshold(threshold, seconds)
        cal = self.calibration
        probability = None if cal is None else float(cal.probability([s], [seconds])[0])
        same = None if thr is None else bool(s >= thr)
        return Verification(s, same, thr, source, probability, seconds, (ma.quality, mb.quality))

    def enroll(self, name: str, clips: Sequence[ClipLike], sample_rate: int = SAMPLE_RATE) -> SingerProfile:
        """A :class:`~singerid.profiles.SingerProfile` from several reference clips."""
        if not clips:
            raise ConfigError(f"enroll {name!r}: give at least one reference clip.")
        measured = [self.measure(c, sample_rate) for c in clips]
        return SingerProfile(name, np.stack([m.embedding for m in measured]), seconds=sum(m.seconds for m in measured))

    def identify(
        self,
        clip: ClipLike,
        gallery: Gallery,
        *,
        open_set: bool = True,
        threshold: float | None = None,
        top: int = 5,
        sample_rate: int = SAMPLE_RATE,
    ) -> Identification:
        """Rank the gallery's singers for ``clip``. Open set: the best candidate is accepted only
        when it reaches the threshold (given, or calibrated for these lengths), else ``"unknown"``."""
        gallery.check_model(self.artifact.fingerprint)
        if top < 1:
            raise ConfigError(f"top={top}: ask for at least one candidate.")
        query = self.measure(clip, sample_rate)
        matches = gallery.rank(query.embedding, top=top)
        if not open_set:
            return Identification(matches, matches[0].name, None, "closed set", query.seconds, query.quality)
        enrolled = gallery.profiles[matches[0].name].seconds or query.seconds
        thr, source = self.decision_threshold(threshold, (query.seconds, enrolled))
        if thr is None:
            raise ConfigError(
                f"{self.artifact.path}: the model carries no calibration, so 'unknown' cannot be decided. Give a threshold "
                "(--threshold), calibrate the model (`singerid evaluate --calibrate`), or search a closed set (--closed-set)."
            )
        singer = matches[0].name if matches[0].score >= thr else UNKNOWN
        return Identification(matches, singer, thr, source, query.seconds, query.quality)


def load_model(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    **options,
) -> SingerEncoder:
    """Load a model as a :class:`SingerEncoder`: a local artefact (folder or ``.pt`` file), a known
    name such as ``"byol"`` (the authors' released models, fetched once and cached), or
    ``"hf:OWNER/REPO[/SUBFOLDER][@REVISION]"`` (see :mod:`singerid.model.hub`).

    ``options`` are :class:`SingerEncoder`'s window/hop/min_seconds/short settings.
    """
    return SingerEncoder(load_artifact(resolve_model(path)), device=device, dtype=dtype, **options)
