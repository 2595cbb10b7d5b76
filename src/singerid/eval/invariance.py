"""Invariance probes: how far does an embedding move under a controlled change of the audio?

A singer embedding should ignore what is not the singer (noise, codec, room, bandwidth,
tempo) and, to a degree, the melody (pitch), while it should follow the vocal tract
(formants). Each entry of :data:`TRANSFORMS` is one seeded change of a 44.1 kHz mono clip:

=================  ============================================================================
pitch±2, pitch±4   formant-preserving pitch shift by ±2 / ±4 semitones (Praat "Change gender":
                   pitch-median ratio ``2**(n/12)``, formant ratio 1, range factor 1)
formant1.1, 0.9    formant shift with the pitch median kept (Praat "Change gender")
duration0.9, 1.1   duration times 0.9 (faster) / 1.1 (slower), pitch and formants kept (Praat
                   "Lengthen (overlap-add)", PSOLA); the only transforms that change the length
noise20/10/0db     white Gaussian noise at 20 / 10 / 0 dB SNR (against the clip's mean power)
bandlimit16k       resampled to 16 kHz and back (soxr): nothing above 8 kHz is left
mp3, ogg           encoded and decoded in memory by libsndfile (MPEG layer III / Vorbis, library
                   defaults); reported as skipped where libsndfile cannot write the format
reverb             convolution with a seeded exponentially decaying noise tail (RT60 0.5 s,
                   direct-to-reverberant ratio 0 dB), level matched to the input
=================  ============================================================================

:func:`invariance_probe` reports, per transform, the cosine similarity between each clip's
original and transformed embedding, and the EER of trials whose test side is transformed
(targets: same singer, different clip) next to the EER of the same trials untransformed.
:func:`invariance_report` runs it on :class:`~singerid.records.Segment` rows through any
system with ``embed(segments)``; :func:`invariance_markdown` renders the result as a table.
"""

from __future__ import annotations

import io
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..audio import SAMPLE_RATE, fit_length, load_audio, resample, write_audio
from ..errors import AudioError, DatasetError, TrialsError
from ..praat import PRAAT_SEEDS, change_gender, praat_min_samples, seed_praat
from ..vectors import l2_normalize
from .metrics import eer

EmbedFn = Callable[[list[np.ndarray]], np.ndarray]
TransformFn = Callable[[np.ndarray, int, np.random.Generator], "np.ndarray | None"]


class TransformUnsupported(Exception):
    """Raised by a transform that this installation cannot run (e.g. a codec libsndfile lacks)."""


@dataclass(frozen=True)
class Transform:
    """A named, seeded audio change: ``apply(audio, sample_rate, rng)`` -> changed audio.

    ``apply`` returns ``None`` for a clip it cannot change (e.g. no voiced frame for a pitch
    shift); ``keeps_length`` says whether the output has the input's length.
    """

    name: str
    description: str
    apply: TransformFn
    keeps_length: bool = True


# ---------------------------------------------------------------------------------------------
# The transforms

PITCH_FLOOR, PITCH_CEILING = 75.0, 600.0
"""Praat pitch search range (Hz) for the Praat-based transforms."""


def _praat_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(PRAAT_SEEDS))


def praat_change_gender(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator, *, pitch_ratio: float = 1.0, formant_ratio: float = 1.0
) -> np.ndarray | None:
    """Praat "Change gender" through :func:`singerid.praat.change_gender` (range factor 1, duration 1)."""
    out = change_gender(
        audio, [(pitch_ratio, 1.0)], _praat_seed(rng), pitch_floor=PITCH_FLOOR, pitch_ceiling=PITCH_CEILING,
        formant_ratio=formant_ratio, sample_rate=sample_rate,
    )  # fmt: skip
    return None if out is None else out[0].audio


def pitch_shift(semitones: float) -> TransformFn:
    """Formant-preserving pitch shift by ``semitones``."""
    return lambda x, sr, rng: praat_change_gender(x, sr, rng, pitch_ratio=2.0 ** (semitones / 12.0))


def formant_shift(ratio: float) -> TransformFn:
    """Formant shift by ``ratio`` with the pitch median kept."""
    return lambda x, sr, rng: praat_change_gender(x, sr, rng, formant_ratio=ratio)


def change_duration(factor: float) -> TransformFn:
    """Duration times ``factor`` by Praat's PSOLA "Lengthen (overlap-add)" (pitch and formants kept)."""

    def apply(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray | None:
        import parselmouth
        from parselmouth.praat import call

        if len(x) < praat_min_samples(sr, PITCH_FLOOR):
            return None
        seed_praat(_praat_seed(rng))
        sound = parselmouth.Sound(np.asarray(x, dtype=np.float64), sampling_frequency=sr)
        return call(sound, "Lengthen (overlap-add)", PITCH_FLOOR, PITCH_CEILING, float(factor)).values[0].astype(np.float32)

    return apply


def add_noise_snr(snr_db: float) -> TransformFn:
    """White Gaussian noise at ``snr_db`` below the clip's mean power."""

    def apply(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        power = float(np.mean(np.square(x, dtype=np.float64)))
        noise = rng.standard_normal(len(x)) * np.sqrt(power / 10.0 ** (snr_db / 10.0))
        return (x + noise).astype(np.float32)

    return apply


def band_limit(rate: int) -> TransformFn:
    """Resample to ``rate`` and back, same length."""
    from .baselines.systems import bandlimit

    return lambda x, sr, rng: bandlimit(x, rate, sr)


def codec_roundtrip(fmt: str, subtype: str) -> TransformFn:
    """Encode and decode in memory with libsndfile; :class:`TransformUnsupported` when it cannot."""

    def apply(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        import soundfile as sf

        if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
            raise TransformUnsupported(f"libsndfile {sf.__libsndfile_version__} here cannot write {fmt}/{subtype}")
        buf = io.BytesIO()
        try:
            sf.write(buf, np.asarray(x, dtype=np.float32), sr, format=fmt, subtype=subtype)
            buf.seek(0)
            y, rate = sf.read(buf, dtype="float32")
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise TransformUnsupported(f"libsndfile {sf.__libsndfile_version__} failed on {fmt}/{subtype}: {exc}") from exc
        if rate != sr:
            y = resample(y, rate, sr)
        # Decoders may add or drop a few padding samples; the probe compares equal lengths.
        return fit_length(np.asarray(y, dtype=np.float32).reshape(len(y), -1).mean(axis=1), len(x))

    return apply


def reverb(rt60: float = 0.5, drr_db: float = 0.0) -> TransformFn:
    """Convolution with a unit direct path plus a seeded noise tail decaying 60 dB in ``rt60`` s.

    The tail's energy is ``drr_db`` below the direct path's; the output is cut to the input's
    length and scaled back to its RMS level.
    """

    def apply(x: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        from scipy.signal import fftconvolve

        n_tail = int(round(rt60 * sr))
        t = np.arange(1, n_tail + 1) / sr
        tail = rng.standard_normal(n_tail) * np.exp(-np.log(1000.0) * t / rt60)
        tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
        y = fftconvolve(np.asarray(x, dtype=np.float64), np.concatenate([[1.0], tail]))[: len(x)]
        rms_in, rms_out = np.sqrt(np.mean(np.square(x, dtype=np.float64))), np.sqrt(np.mean(y**2))
        return (y * (rms_in / rms_out if rms_out > 0 else 1.0)).astype(np.float32)

    return apply


def _registry() -> dict[str, Transform]:
    praat = "Praat Change gender"
    items = [
        *(Transform(f"pitch{n:+d}", f"pitch {n:+d} semitones, formants kept ({praat})", pitch_shift(n)) for n in (2, -2, 4, -4)),
        *(Transform(f"formant{r:g}", f"formants x{r:g}, pitch kept ({praat})", formant_shift(r)) for r in (1.1, 0.9)),
        *(
            Transform(
                f"duration{f:g}", f"duration x{f:g}, pitch and formants kept (Praat Lengthen overlap-add)",
                change_duration(f), keeps_length=False,
            )
            for f in (0.9, 1.1)
        ),
        *(Transform(f"noise{s}db", f"white noise at {s} dB SNR", add_noise_snr(s)) for s in (20, 10, 0)),
        Transform("bandlimit16k", "resampled to 16 kHz and back (no content above 8 kHz)", band_limit(16000)),
        Transform("mp3", "MP3 encode/decode (libsndfile, default quality)", codec_roundtrip("MP3", "MPEG_LAYER_III")),
        Transform("ogg", "Ogg Vorbis encode/decode (libsndfile, default quality)", codec_roundtrip("OGG", "VORBIS")),
        Transform("reverb", "synthetic reverb: noise tail RT60 0.5 s, DRR 0 dB", reverb()),
    ]
    return {t.name: t for t in items}


TRANSFORMS: dict[str, Transform] = _registry()
"""Every built-in transform by name, in report order."""


def transform_rng(seed: int, name: str, clip_index: int) -> np.random.Generator:
    """The generator for one transform of one clip: independent of which other transforms run."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), clip_index])


def _resolve(transforms: Sequence[str | Transform] | None) -> list[Transform]:
    if transforms is None:
        return list(TRANSFORMS.values())
    out = []
    for t in transforms:
        if isinstance(t, Transform):
            out.append(t)
        elif t in TRANSFORMS:
            out.append(TRANSFORMS[t])
        else:
            raise DatasetError(f"unknown invariance transform {t!r}; choose from {', '.join(TRANSFORMS)}.")
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise DatasetError(f"invariance transforms named twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}.")
    return out


# ---------------------------------------------------------------------------------------------
# The probe


def _embed_checked(embed: EmbedFn, clips: list[np.ndarray], what: str) -> np.ndarray:
    return l2_normalize(embed(clips), what=f"the embedding function ({what} clips)", rows=len(clips), dtype=np.float64)


def _pair_eer(scores: np.ndarray, same: np.ndarray, mask: np.ndarray) -> float | None:
    try:
        return eer(scores[mask], same[mask])[0]
    except TrialsError:
        return None


def invariance_probe(
    embed: EmbedFn,
    clips: Sequence[np.ndarray],
    singers: Sequence[str],
    transforms: Sequence[str | Transform] | None = None,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
) -> dict:
    """Measure how much ``embed`` moves under each transform; returns a JSON-able dict.

    ``embed(list_of_clips) -> (n, dim)`` must embed each clip on its own (its output for a
    clip may not depend on the other clips in the call). ``clips`` are mono float32 at
    ``sample_rate``; ``singers[i]`` names the singer of ``clips[i]``. For transform ``T``:

    - ``cosine_mean``/``cosine_std``: cosine of ``embed(x)`` and ``embed(T(x))`` over clips;
    - ``eer``: EER of the trials ``(x_i, T(x_j))``, ``i != j``, target when the singers agree;
      ``eer_clean``: the same trials with ``x_j`` untransformed; ``eer_delta = eer - eer_clean``.

    Clips a transform cannot change (e.g. unvoiced for a pitch shift) are listed under
    ``unusable_clips`` and left out of that transform's numbers; a transform this installation
    cannot run is reported with ``skipped`` and its reason.
    """
    clip_list = [np.asarray(c, dtype=np.float32) for c in clips]
    labels = np.asarray([str(s) for s in singers])
    if len(clip_list) != len(labels):
        raise DatasetError(f"{len(clip_list)} clips but {len(labels)} singer labels; pass one per clip.")
    for i, c in enumerate(clip_list):
        if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
            raise AudioError(f"clip {i}: expected a non-empty, finite mono array; got shape {c.shape}.")
    counts = {s: int(np.sum(labels == s)) for s in set(labels)}
    if len(counts) < 2 or max(counts.values()) < 2:
        raise DatasetError(
            f"invariance probe needs at least 2 singers and one singer with 2 or more clips, got {len(counts)} "
            f"singer(s) with at most {max(counts.values(), default=0)} clip(s) each."
        )
    chosen = _resolve(transforms)
    base = _embed_checked(embed, clip_list, "original")
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~np.eye(len(clip_list), dtype=bool)
    clean_scores = base @ base.T
    report: dict = {
        "seed": seed,
        "n_clips": len(clip_list),
        "n_singers": len(counts),
        "sample_rate": sample_rate,
        "clean_eer": _pair_eer(clean_scores, same, off_diagonal),
        "transforms": {},
    }
    for t in chosen:
        entry: dict = {"description": t.description, "keeps_length": t.keeps_length}
        try:
            changed = [t.apply(c, sample_rate, transform_rng(seed, t.name, i)) for i, c in enumerate(clip_list)]
        except TransformUnsupported as exc:
            report["transforms"][t.name] = {**entry, "skipped": str(exc)}
            continue
        ok = [i for i, y in enumerate(changed) if y is not None]
        entry["unusable_clips"] = [i for i, y in enumerate(changed) if y is None]
        if not ok:
            report["transforms"][t.name] = {**entry, "skipped": "no clip could be transformed (e.g. none is voiced)"}
            continue
        for i in ok:
            y = changed[i]
            if t.keeps_length and len(y) != len(clip_list[i]):
                raise AudioError(f"transform {t.name} changed clip {i}'s length from {len(clip_list[i])} to {len(y)}.")
        moved = _embed_checked(embed, [changed[i] for i in ok], t.name)
        cos = np.sum(base[ok] * moved, axis=1)
        mask = off_diagonal[:, ok]
        scores = base @ moved.T
        trans_eer = _pair_eer(scores, same[:, ok], mask)
        clean = _pair_eer(clean_scores[:, ok], same[:, ok], mask)
        report["transforms"][t.name] = {
            **entry,
            "n_clips": len(ok),
            "cosine_mean": float(cos.mean()),
            "cosine_std": float(cos.std()),
            "eer": trans_eer,
            "eer_clean": clean,
            "eer_delta": None if trans_eer is None or clean is None else trans_eer - clean,
        }
    return report


# ---------------------------------------------------------------------------------------------
# Segments and systems


def select_clips(segments: Sequence, *, max_singers: int = 12, clips_per_singer: int = 4, seed: int = 0) -> list:
    """A seeded subset of segments for the probe: up to ``clips_per_singer`` of each of up to
    ``max_singers`` singers that have at least 2 segments (songs spread where possible)."""
    rng = np.random.default_rng(seed)
    by_singer: dict[str, list] = {}
    for s in sorted(segments, key=lambda s: s.id):
        by_singer.setdefault(s.singer, []).append(s)
    eligible = sorted(k for k, v in by_singer.items() if len(v) >= 2)
    if len(eligible) < 2:
        raise DatasetError(
            f"invariance probe needs 2 singers with at least 2 segments each; the segments have {len(eligible)}. "
            "Segment more audio per singer."
        )
    singers = [eligible[i] for i in np.sort(rng.permutation(len(eligible))[:max_singers])]
    out = []
    for name in singers:
        segs = by_singer[name]
        order = rng.permutation(len(segs))
        # Round-robin over songs so the picked clips come from as many songs as there are.
        songs: dict[str, list] = {}
        for i in order:
            songs.setdefault(segs[i].song, []).append(segs[i])
        queues = list(songs.values())
        picked: list = []
        while len(picked) < clips_per_singer and any(queues):
            for q in queues:
                if q and len(picked) < clips_per_singer:
                    picked.append(q.pop(0))
        out += picked
    return out


def system_embedder(system, workdir: str | Path, sample_rate: int = SAMPLE_RATE) -> EmbedFn:
    """An :data:`EmbedFn` for a system that embeds segments: clips are written as float WAVs in
    ``workdir`` and embedded as whole-file segments."""
    from ..records import Segment

    calls = [0]

    def embed(clips: list[np.ndarray]) -> np.ndarray:
        calls[0] += 1
        segs = []
        for i, c in enumerate(clips):
            path = Path(workdir) / f"call{calls[0]:03d}_{i:05d}.wav"
            write_audio(path, c, sample_rate, subtype="FLOAT")
            segs.append(Segment(str(path), singer="?", song="?", offset=0.0, duration=len(c) / sample_rate))
        return system.embed(segs)

    return embed


def invariance_report(
    system,
    segments: Sequence,
    *,
    transforms: Sequence[str | Transform] | None = None,
    max_singers: int = 12,
    clips_per_singer: int = 4,
    seed: int = 0,
) -> dict:
    """Invariance probe of ``system`` (anything with ``name`` and ``embed(segments)``) on a
    seeded subset of ``segments`` (see :func:`select_clips`); JSON-able result.

    Systems that standardise features over the set they embed (the ``mfcc``/``f0`` baselines)
    see originals and transformed clips in separate calls, so a shift common to all clips is
    partly standardised away for them.
    """
    picked = select_clips(segments, max_singers=max_singers, clips_per_singer=clips_per_singer, seed=seed)
    clips = [load_audio(s.path, offset=s.offset, duration=s.duration, max_clipped=None) for s in picked]
    with tempfile.TemporaryDirectory(prefix="singerid-invariance-") as tmp:
        result = invariance_probe(system_embedder(system, tmp), clips, [s.singer for s in picked], transforms, seed)
    result["system"] = getattr(system, "name", "system")
    result["segments"] = [s.id for s in picked]
    return result


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def invariance_markdown(reports: dict | Sequence[dict]) -> str:
    """A markdown table of one or more :func:`invariance_report` results (one row per transform
    and system): cosine mean ± std, EER with and without the transform, and its change."""
    rows = [reports] if isinstance(reports, dict) else list(reports)
    lines = [
        "| system | transform | cosine (mean ± std) | EER transformed | EER clean | ΔEER |",
        "|---|---|---|---|---|---|",
    ]
    notes = []
    for r in rows:
        name = r.get("system", "system")
        for t, e in r["transforms"].items():
            if "skipped" in e:
                lines.append(f"| {name} | {t} | skipped | | | |")
                notes.append(f"- {name} / {t}: skipped ({e['skipped']}).")
                continue
            lines.append(
                f"| {name} | {t} | {_fmt(e['cosine_mean'])} ± {_fmt(e['cosine_std'])} | {_pct(e['eer'])} | "
                f"{_pct(e['eer_clean'])} | {_pct(e['eer_delta'], signed=True)} |"
            )
            if e.get("unusable_clips"):
                notes.append(f"- {name} / {t}: {len(e['unusable_clips'])} clip(s) could not be transformed and were left out.")
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{100 * x:+.1f}%" if signed else f"{100 * x:.1f}%"
