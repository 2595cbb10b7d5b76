"""Find the audio of a data set and cut it into fixed-length segments.

Discovery turns a folder tree (or a manifest CSV) into :class:`~singerid.records.Recording`
rows; it only lists files and never decodes them. Supported layouts:

``folder``
    ``ROOT/<singer>/[sub/[sub/[sub/]]]file.ext``. The singer is the first folder level; the
    song is the file's path below the singer folder without its extension (``"take1"`` or
    ``"album/take1"``), so two files with the same name in different sub-folders stay apart.
``vocalset``
    ``ROOT/<singer>/<context>/<technique>/file.wav`` (VocalSet's ``FULL/`` folder), with singer
    folders named ``female<N>`` / ``male<N>``, which also give the gender. The song is ``<context>/<piece>``,
    where the piece is the file name without the singer, context and technique words
    (``f1_arpeggios_belt_a`` -> ``arpeggios/a``), so one exercise sung with different
    techniques shares a song id. The context is kept in the ``context`` column.
``nus48e``
    ``ROOT/<singer>/{sing,read}/NN.wav``. The technique is ``sing`` or ``read``; the song is
    the file stem (the song number), so the sung and read versions of a song share a song id.
``m4singer``
    ``ROOT/<Singer>#<Song>/NNNN.wav``; every file of a folder is one phrase of that song, kept in
    the ``part`` column. The gender follows the voice part (Soprano/Alto female, Tenor/Bass male).
``vctk``
    ``ROOT/wav48*/<speaker>/<utterance>[_mic1|_mic2].{wav,flac}`` (``ROOT`` may also be the
    ``wav48*`` folder itself). The speaker is the singer and the utterance id the song. Where
    both microphones exist, only ``mic`` (``"mic1"`` by default) is kept; ``mic="both"`` keeps
    both. Genders are read from ``speaker-info.txt`` when it is there.
``manifest``
    A recording manifest CSV (``path,singer[,song,technique,gender,...]``).

Every path is stored absolute (normalised, symbolic links kept as named). Hidden files and
folders (names starting with ``.``) are not data and are not searched. Audio files that do not
fit the layout are left out with a warning that names them; a layout that matches nothing is
an error. Song ids are unique only within a singer: group by ``(singer, song)``.

Segmenting (:func:`segment_recordings`) cuts every recording into ``seconds``-long crops, one
every ``hop`` seconds from the start, keeps those whose active (non-silent) fraction is at least
``min_active``, and records them as :class:`~singerid.records.Segment` rows (file, offset,
duration); audio is never copied. The trailing part shorter than one segment is dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..audio import SILENCE_DB, WINDOW_SECONDS, active_fraction, audio_info
from ..errors import AudioError, ConfigError, DatasetError
from ..records import Recording, Segment, read_recordings

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = ("wav", "flac", "ogg", "opus", "mp3", "aiff", "aif", "au", "caf", "w64")
"""File extensions (lower case, no dot) that discovery treats as audio; all readable by soundfile."""

UNSUPPORTED_AUDIO_EXTENSIONS: tuple[str, ...] = ("m4a", "aac", "mp4", "wma", "ape", "alac")
"""Audio extensions soundfile cannot decode: found in a folder, they are reported as unreadable
(or, when skipping is asked for, listed as skipped), never passed over silently."""


def unsupported_audio(root: str | os.PathLike) -> list[tuple[str, str]]:
    """``(path, reason)`` for every file under ``root`` with an :data:`UNSUPPORTED_AUDIO_EXTENSIONS` extension."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = sorted(f for f in base.rglob("*") if f.suffix.lower().lstrip(".") in UNSUPPORTED_AUDIO_EXTENSIONS)
    return [(str(f), f"{f}: {f.suffix} audio cannot be decoded here; convert it to WAV or FLAC.") for f in found]

LAYOUTS: tuple[str, ...] = ("folder", "vocalset", "nus48e", "m4singer", "vctk", "manifest")
"""Names accepted by :func:`discover`."""

_SHOWN = 5  # how many example paths an error or warning lists before "... and N more"


def discover(root: str | os.PathLike, layout: str = "folder", **options) -> list[Recording]:
    """List the recordings under ``root`` laid out as ``layout`` (one of :data:`LAYOUTS`).

    ``options`` go to the layout's function (e.g. ``max_depth`` for ``folder``, ``mic`` for
    ``vctk``). For ``manifest``, ``root`` is the CSV file.
    """
    adapters: dict[str, Callable[..., list[Recording]]] = {
        "folder": discover_folder,
        "vocalset": discover_vocalset,
        "nus48e": discover_nus48e,
        "m4singer": discover_m4singer,
        "vctk": discover_vctk,
        "manifest": load_manifest,
    }
    if layout not in adapters:
        raise ConfigError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}.")
    return adapters[layout](root, **options)


def discover_folder(
    root: str | os.PathLike, max_depth: int = 3, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Recording]:
    """Recordings of a folder-per-singer tree ``root/<singer>/...``.

    Files may sit up to ``max_depth`` sub-folders below their singer folder; deeper files and
    files directly in ``root`` are left out with a warning. A singer folder without audio is
    an error (remove it or add its audio).
    """
    if max_depth < 0:
        raise ConfigError(f"max_depth must be >= 0, got {max_depth}.")
    base, files = _scan(root, extensions)
    usable = [parts for parts in files if 2 <= len(parts) <= max_depth + 2]
    _warn_left_out(base, [p for p in files if len(p) == 1], "lie directly in the root, outside any singer folder")
    _warn_left_out(
        base,
        [p for p in files if len(p) > max_depth + 2],
        f"lie more than {max_depth} sub-folders below their singer folder (raise max_depth to include them)",
    )
    if not usable:
        raise DatasetError(f"{base}: no audio inside singer folders. Expected ROOT/<singer>/<file>.")
    with_audio = {parts[0] for parts in usable}
    empty = sorted(
        d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name not in with_audio
    )
    if empty:
        raise DatasetError(
            f"{base}: {len(empty)} singer folder(s) hold no usable audio: {_listing(empty)}. "
            f"Add their audio ({_ext_list(extensions)}) or move those folders out of {base}."
        )
    return [
        Recording(path=_abs(base, parts), singer=parts[0], song="/".join((*parts[1:-1], Path(parts[-1]).stem)))
        for parts in usable
    ]


def discover_vocalset(root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Recording]:
    """Recordings of VocalSet: ``root/<singer>/<context>/<technique>/<file>``."""

    def parse(parts: tuple[str, ...]) -> dict | None:
        gender = re.fullmatch(r"(female|male)\d+", parts[0], flags=re.IGNORECASE)
        if len(parts) != 4 or not gender:
            return None
        singer, context, technique, name = parts
        known = {*context.lower().split("_"), *technique.lower().split("_")}
        words = Path(name).stem.split("_")
        if re.fullmatch(r"[fm]\d+", words[0], flags=re.IGNORECASE):
            words = words[1:]
        piece = "_".join(w for w in words if w.lower() not in known) or Path(name).stem
        return dict(
            singer=singer,
            song=f"{context}/{piece}",
            technique=technique,
            gender=gender.group(1).lower(),
            extra={"context": context},
        )

    expected = (
        "<singer>/<context>/<technique>/<file>, singers named female<N> or male<N>, "
        "ROOT the folder holding them (VocalSet's FULL/)"
    )
    return _discover_layout(root, extensions, parse, "vocalset", expected)


def discover_nus48e(root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Recording]:
    """Recordings of NUS-48E: ``root/<singer>/{sing,read}/<song number>.wav``."""

    def parse(parts: tuple[str, ...]) -> dict | None:
        if len(parts) != 3 or parts[1].lower() not in ("sing", "read"):
            return None
        return dict(singer=parts[0], song=Path(parts[2]).stem, technique=parts[1].lower())

    return _discover_layout(root, extensions, parse, "nus48e", "<singer>/sing/<NN>.wav and <singer>/read/<NN>.wav")


_VOICE_PART_GENDER = {"soprano": "female", "alto": "female", "tenor": "male", "bass": "male"}


def discover_m4singer(root: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Recording]:
    """Recordings of M4Singer: ``root/<Singer>#<Song>/<NNNN>.wav`` (one file per phrase)."""

    def parse(parts: tuple[str, ...]) -> dict | None:
        if len(parts) != 2 or "#" not in parts[0]:
            return None
        singer, song = parts[0].split("#", 1)
        if not singer or not song:
            return None
        part = re.match(r"[a-z]+", singer, flags=re.IGNORECASE)
        gender = _VOICE_PART_GENDER.get(part.group(0).lower(), "") if part else ""
        return dict(singer=singer, song=song, gender=gender, extra={"part": Path(parts[1]).stem})

    return _discover_layout(root, extensions, parse, "m4singer", "<Singer>#<Song>/<NNNN>.wav")


def discover_vctk(
    root: str | os.PathLike, mic: str = "mic1", extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[Recording]:
    """Recordings of VCTK: ``root/wav48*/<speaker>/<utterance>[_mic1|_mic2].<ext>``.

    ``mic`` picks the microphone where an utterance has both (``"mic1"``, ``"mic2"`` or
    ``"both"``); an utterance recorded with one microphone only is kept either way.
    """
    if mic not in ("mic1", "mic2", "both"):
        raise ConfigError(f"mic must be 'mic1', 'mic2' or 'both', got {mic!r}.")
    base = Path(os.path.abspath(root))
    inside = base.name.startswith("wav48")
    if not inside and base.is_dir():
        tops = sorted(d.name for d in base.iterdir() if d.is_dir() and d.name.startswith("wav48"))
        if len(tops) > 1:
            raise DatasetError(
                f"{base}: holds several VCTK audio folders ({', '.join(tops)}); "
                f"point ROOT at the one to use, e.g. {base / tops[-1]}."
            )
    genders = _vctk_genders(base.parent if inside else base)

    def parse(parts: tuple[str, ...]) -> dict | None:
        if inside:
            parts = ("wav48", *parts)
        if len(parts) != 3 or not parts[0].startswith("wav48"):
            return None
        stem = Path(parts[2]).stem
        found = re.fullmatch(r"(.+)_(mic[12])", stem)
        utterance, which = (found.group(1), found.group(2)) if found else (stem, "")
        return dict(singer=parts[1], song=utterance, gender=genders.get(parts[1], ""), extra={"mic": which})

    recordings = _discover_layout(root, extensions, parse, "vctk", "wav48*/<speaker>/<utterance>_mic1.flac")
    if mic == "both":
        return recordings
    mics = defaultdict(set)
    for r in recordings:
        mics[(r.singer, r.song)].add(r.extra["mic"])
    return [r for r in recordings if r.extra["mic"] in ("", mic) or mic not in mics[(r.singer, r.song)]]


def _vctk_genders(folder: Path) -> dict[str, str]:
    """Speaker -> gender from VCTK's ``speaker-info.txt`` (empty when the file is absent)."""
    info = folder / "speaker-info.txt"
    if not info.is_file():
        return {}
    genders = {}
    for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
        words = line.split()
        if len(words) < 3 or words[0].upper() == "ID":
            continue
        # VCTK 0.80 lists speakers as "225" for folder "p225"; 0.92 writes "p225".
        speaker = f"p{words[0]}" if words[0].isdigit() else words[0]
        genders[speaker] = {"F": "female", "M": "male"}.get(words[2].upper(), "")
    return genders


def load_manifest(path: str | os.PathLike) -> list[Recording]:
    """Read a recording manifest CSV (``path,singer[,song,technique,gender,...]``).

    Relative audio paths are relative to the manifest's folder; returned paths are absolute.
    Rows without a singer and files listed twice are errors.
    """
    recordings = [dataclasses.replace(r, path=os.path.abspath(r.path)) for r in read_recordings(path)]
    nameless = [i + 2 for i, r in enumerate(recordings) if not r.singer.strip()]
    if nameless:
        lines = _listing([str(i) for i in nameless])
        raise DatasetError(f"{path}: row(s) {lines} have no singer. Fill in the singer column.")
    twice = sorted(p for p, n in Counter(r.path for r in recordings).items() if n > 1)
    if twice:
        raise DatasetError(
            f"{path}: {len(twice)} file(s) are listed more than once: {_listing(twice)}. Keep one row per file."
        )
    return recordings


def _discover_layout(
    root: str | os.PathLike,
    extensions: Sequence[str],
    parse: Callable[[tuple[str, ...]], dict | None],
    layout: str,
    expected: str,
) -> list[Recording]:
    """Recordings from every audio file under ``root`` that ``parse`` recognises."""
    base, files = _scan(root, extensions)
    recordings, unmatched = [], []
    for parts in files:
        values = parse(parts)
        if values is None:
            unmatched.append(parts)
        else:
            recordings.append(Recording(path=_abs(base, parts), **values))
    if not recordings:
        raise DatasetError(
            f"{base}: no audio file fits the {layout} layout ({expected}); found e.g. "
            f"{_listing(['/'.join(p) for p in unmatched])}. Point ROOT at the right folder or pick another --layout."
        )
    _warn_left_out(base, unmatched, f"do not fit the {layout} layout ({expected})")
    return recordings


def _scan(root: str | os.PathLike, extensions: Sequence[str]) -> tuple[Path, list[tuple[str, ...]]]:
    """Every non-hidden audio file under ``root`` as path parts relative to it, sorted.

    Symbolic links to folders are followed; a folder reached twice is searched once.
    """
    base = Path(os.path.abspath(root))
    if not base.is_dir():
        raise DatasetError(
            f"{base}: not a folder. Pass the data set's root folder (a manifest CSV is read with layout 'manifest')."
        )
    wanted = {e.lower().lstrip(".") for e in extensions}
    found, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(base).parts
        found += [
            (*rel, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower().lstrip(".") in wanted
        ]
    if not found:
        raise DatasetError(
            f"{base}: no audio files found (searched for {_ext_list(extensions)}). "
            "Check the folder, or convert the audio to one of these formats."
        )
    return base, sorted(found)


def _abs(base: Path, parts: tuple[str, ...]) -> str:
    return str(base.joinpath(*parts))


def _warn_left_out(base: Path, left_out: list[tuple[str, ...]], why: str) -> None:
    if left_out:
        names = _listing(["/".join(p) for p in left_out])
        log.warning("%s: left out %d audio file(s) that %s: %s", base, len(left_out), why, names)


def _ext_list(extensions: Sequence[str]) -> str:
    return ", ".join(f".{e.lower().lstrip('.')}" for e in extensions)


def _listing(items: Sequence[str]) -> str:
    """``a, b, c`` (the first few items, then how many more)."""
    shown = ", ".join(items[:_SHOWN])
    return shown if len(items) <= _SHOWN else f"{shown} ... and {len(items) - _SHOWN} more"


@dataclass
class SegmentResult:
    """Segments kept by :func:`segment_recordings` and what was dropped, and why."""

    segments: list[Segment]
    files: int
    silent: int = 0
    too_short: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: segments kept, silent segments dropped, short and unreadable files."""
        singers = len({s.singer for s in self.segments})
        return (
            f"{len(self.segments)} segments of {singers} singers from {self.files} files; dropped "
            f"{self.silent} silent segments, {len(self.too_short)} files shorter than one segment, "
            f"{len(self.unreadable)} unreadable files"
        )


def segment_recordings(
    recordings: Iterable[Recording],
    seconds: float = WINDOW_SECONDS,
    hop: float | None = None,
    min_active: float = 0.5,
    silence_db: float = SILENCE_DB,
    on_error: str = "raise",
    progress: bool = True,
) -> SegmentResult:
    """Cut recordings into ``seconds``-long segments, one every ``hop`` seconds (default: no overlap).

    A segment is kept when at least ``min_active`` of its 50 ms frames are louder than
    ``silence_db``; the trailing part shorter than a segment is dropped. Offsets and durations
    are exact multiples of the file's sample period. Unreadable files are an error listing them
    all; with ``on_error="skip"`` they are left out, logged and listed in the result. A singer
    left without any segment is an error.
    """
    if seconds <= 0:
        raise ConfigError(f"segment length must be positive, got {seconds} s.")
    hop = seconds if hop is None else hop
    if hop <= 0:
        raise ConfigError(f"segment hop must be positive, got {hop} s.")
    if not 0.0 <= min_active <= 1.0:
        raise ConfigError(f"min_active is a fraction in [0, 1], got {min_active}.")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    recordings = list(recordings)
    if not recordings:
        raise DatasetError("no recordings to segment. Check the manifest or folder you passed.")
    unreadable = []
    infos = {}
    for r in recordings:  # headers first: a broken file fails fast, before any decoding
        try:
            infos[r.path] = audio_info(r.path)
        except AudioError as exc:
            unreadable.append((r.path, str(exc)))
    _handle_unreadable(unreadable, on_error)
    result = SegmentResult(segments=[], files=len(recordings), unreadable=list(unreadable))
    for r in tqdm(recordings, desc="segmenting", unit="file", disable=not progress):
        if r.path not in infos:
            continue
        info = infos[r.path]
        length = int(round(seconds * info.sample_rate))
        starts = range(0, info.frames - length + 1, max(1, int(round(hop * info.sample_rate))))
        if not starts:
            result.too_short.append(r.path)
            continue
        try:
            levels = _active_fractions(r.path, starts, length, info.sample_rate, silence_db)
        except AudioError as exc:
            result.unreadable.append((r.path, str(exc)))
            continue
        for start, active in zip(starts, levels):
            if active < min_active:
                result.silent += 1
                continue
            offset, duration = start / info.sample_rate, length / info.sample_rate
            result.segments.append(Segment(r.path, r.singer, r.song, offset, duration, r.technique, r.gender))
    _handle_unreadable(result.unreadable[len(unreadable):], on_error)
    _check_every_singer(recordings, result)
    return result


def _active_fractions(path: str, starts: range, length: int, sample_rate: int, silence_db: float) -> list[float]:
    """Active fraction of each crop ``[start, start + length)`` of ``path``, read crop by crop."""
    try:
        fh = sf.SoundFile(path)
    except Exception as exc:  # soundfile raises several types for corrupt files
        raise AudioError(f"{path}: cannot open audio ({exc}). Convert it to WAV or FLAC.") from exc
    fractions = []
    with fh:
        for start in starts:
            try:
                fh.seek(start)
                data = fh.read(length, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(
                    f"{path}: decoding failed near {start / sample_rate:.2f} s ({exc}). "
                    "The file is corrupt or truncated; re-export it."
                ) from exc
            if len(data) < length:
                raise AudioError(
                    f"{path}: truncated: the header promises {(start + length) / sample_rate:.2f} s or more "
                    f"but the data ends at {(start + len(data)) / sample_rate:.2f} s. Re-export or re-copy it."
                )
            # Same mix as audio.to_mono; a matrix product is ~20x faster than mean(axis=1) here.
            crop = data @ np.full(data.shape[1], 1.0 / data.shape[1], dtype=np.float32)
            if not np.all(np.isfinite(crop)):
                raise AudioError(
                    f"{path}: NaN or infinite samples near {start / sample_rate:.2f} s. "
                    "Re-export the file; it is corrupt."
                )
            fractions.append(active_fraction(crop, sample_rate, silence_db))
    return fractions


def _handle_unreadable(unreadable: list[tuple[str, str]], on_error: str) -> None:
    """Raise for unreadable files, or (``on_error="skip"``) log them; never pass them over silently."""
    if not unreadable:
        return
    reasons = "; ".join(reason for _, reason in unreadable[:_SHOWN])
    more = f" ... and {len(unreadable) - _SHOWN} more" if len(unreadable) > _SHOWN else ""
    if on_error == "raise":
        raise DatasetError(
            f"{len(unreadable)} unreadable audio file(s); fix or remove them, or skip them explicitly "
            f"(--skip-unreadable / on_error='skip'): {reasons}{more}"
        )
    log.warning("skipped %d unreadable audio file(s): %s%s", len(unreadable), reasons, more)


def _check_every_singer(recordings: list[Recording], result: SegmentResult) -> None:
    """Raise if some singer kept no segment, saying what happened to each one's files."""
    kept = {s.singer for s in result.segments}
    short = set(result.too_short)
    broken = {p for p, _ in result.unreadable}
    lost = defaultdict(Counter)
    for r in recordings:
        if r.singer not in kept:
            lost[r.singer]["too short" if r.path in short else "unreadable" if r.path in broken else "silent"] += 1
    if lost:
        details = [f"{s} ({', '.join(f'{n} {why}' for why, n in sorted(c.items()))})" for s, c in sorted(lost.items())]
        raise DatasetError(
            f"{len(lost)} singer(s) have no usable audio: {_listing(details)}. "
            "Remove them from the data, or use shorter segments (--seconds) or a lower --min-active."
        )
