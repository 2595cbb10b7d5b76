"""Voices, songs and scores of the synthetic corpus: parameter tables, seeded draws, note composition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...errors import ConfigError

TECHNIQUES = ("straight", "vibrato", "breathy", "belt")
VOWELS = ("a", "e", "i", "o", "u", "@")
_VOICED_CONS = ("m", "n", "l")
_NOISE_CONS = ("s", "sh", "f", "h", "t", "k", "p")

# Reference formants (Hz) and levels (dB) of each vowel, before the singer's scaling.
_VOWEL_F = np.array(
    [
        [800, 1250, 2600, 3400, 4300],
        [500, 1850, 2600, 3450, 4300],
        [320, 2300, 3000, 3600, 4400],
        [520, 900, 2600, 3400, 4300],
        [350, 800, 2500, 3300, 4300],
        [550, 1500, 2550, 3450, 4300],
    ],
    dtype=np.float64,
)
_VOWEL_A = np.array(
    [
        [0, -4, -16, -20, -26],
        [0, -10, -14, -20, -26],
        [0, -16, -14, -18, -26],
        [0, -4, -22, -26, -30],
        [0, -10, -26, -30, -34],
        [0, -8, -16, -20, -26],
    ],
    dtype=np.float64,
)
_BANDWIDTH = np.array([80.0, 90.0, 120.0, 150.0, 200.0])
# Nasals and the lateral: (formants, levels) of a low, dull murmur.
_MURMUR = {
    "m": ([250, 1100, 2300, 3300, 4200], [0, -20, -26, -30, -34]),
    "n": ([250, 1500, 2500, 3400, 4300], [0, -18, -24, -30, -34]),
    "l": ([380, 1200, 2600, 3400, 4300], [0, -10, -20, -26, -32]),
}
# Noise consonants: (centre Hz, bandwidth in octaves, level dB, duration s, plosive?).
_NOISE_SHAPE = {
    "s": (7000.0, 1.2, -2.0, 0.09, False),
    "sh": (3500.0, 1.2, 0.0, 0.09, False),
    "f": (5000.0, 3.5, -12.0, 0.08, False),
    "t": (4500.0, 1.5, -2.0, 0.06, True),
    "k": (2200.0, 1.0, 0.0, 0.07, True),
    "p": (800.0, 3.0, -6.0, 0.06, True),
}


class Technique(NamedTuple):
    """How a singing technique changes the voice (added to the singer's own values)."""

    vibrato: float  # scale of the singer's vibrato extent
    open_quotient: float
    breath_db: float
    tilt_db_oct: float
    level_db: float
    tessitura: float  # semitones
    f1_scale: float
    singer_formant_db: float


_TECH = {
    "straight": Technique(0.08, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "vibrato": Technique(1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0),
    "breathy": Technique(0.4, 0.08, 8.0, -1.0, -3.0, -1.0, 0.98, -4.0),
    "belt": Technique(0.6, -0.08, -4.0, 1.0, 3.0, 2.0, 1.06, 4.0),
}
_MAJOR = np.array([0, 2, 4, 5, 7, 9, 11])
_MINOR = np.array([0, 2, 3, 5, 7, 8, 10])


@dataclass(frozen=True)
class SingerParams:
    """A singer's timbre identity; it depends only on ``(seed, index)``."""

    index: int
    name: str
    median_midi: float
    vtl_scale: float  # formant frequency factor (shorter vocal tract -> larger)
    formant_shift: tuple  # per-formant log-frequency offsets shared by all vowels
    formant_offsets: tuple  # (vowel, formant) log-frequency offsets, flattened
    formant_gain_db: tuple  # per-formant level offsets
    bandwidth_scale: float
    open_quotient: float
    skew: float  # opening phase / open phase of the glottal pulse
    tilt_db_oct: float
    breath_db: float
    jitter: float
    shimmer_db: float
    vibrato_rate: float
    vibrato_extent: float  # semitones
    portamento: float  # seconds
    singer_formant_hz: float
    singer_formant_db: float
    singer_formant_bw: float
    air_hz: float
    air_db: float
    notch_hz: float  # a fixed anti-resonance (hypopharynx), independent of the vowel
    notch_db: float


@dataclass(frozen=True)
class SongParams:
    """A song's session: key, tempo, room, channel, noise, and drifts of the voice."""

    index: int
    name: str
    seconds: float
    key: int  # semitones from the singer's median pitch
    minor: bool
    tempo_bpm: float
    rt60: float
    reverb_wet: float
    eq_tilt_db_oct: float
    eq_peaks: tuple  # (Hz, dB, octaves) x 3, flattened
    noise_snr_db: float
    noise_slope_db_oct: float
    peak_dbfs: float
    vibrato_rate_drift: float
    vibrato_extent_drift: float
    breath_drift_db: float
    tilt_drift_db_oct: float
    oq_drift: float
    formant_drift: float


@dataclass(frozen=True)
class Section:
    """A stretch ``[start, end)`` seconds of a song sung in one technique."""

    start: float
    end: float
    technique: str


def _rng(seed: int, *path: int) -> np.random.Generator:
    if seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}.")
    # The tag keeps singer and song streams apart: SeedSequence pads short keys with zeros.
    return np.random.default_rng(np.random.SeedSequence([seed, *path]))


def sample_singer(seed: int, index: int) -> SingerParams:
    """Draw singer ``index`` of the corpus with ``seed`` (independent of corpus size)."""
    rng = _rng(seed, 1, index)
    u = rng.uniform
    return SingerParams(
        index=index,
        name=f"singer{index:03d}",
        median_midi=float(u(56.0, 62.0)),
        vtl_scale=float(np.exp(u(-0.2, 0.2))),
        formant_shift=tuple(np.round(rng.normal(0.0, 0.08, 5), 5).tolist()),
        formant_offsets=tuple(np.round(rng.normal(0.0, 0.1, (len(VOWELS), 5)), 5).ravel().tolist()),
        formant_gain_db=tuple(np.round(rng.normal(0.0, 5.0, 5), 3).tolist()),
        bandwidth_scale=float(np.exp(u(-0.5, 0.5))),
        open_quotient=float(u(0.45, 0.72)),
        skew=float(u(0.55, 0.8)),
        tilt_db_oct=float(u(-5.0, 2.0)),
        breath_db=float(u(-45.0, -15.0)),
        jitter=float(u(0.002, 0.012)),
        shimmer_db=float(u(0.2, 1.5)),
        vibrato_rate=float(u(4.5, 7.0)),
        vibrato_extent=float(u(0.25, 0.9)),
        portamento=float(u(0.03, 0.14)),
        singer_formant_hz=float(u(2500.0, 3400.0)),
        singer_formant_db=float(u(-35.0, -5.0)),
        singer_formant_bw=float(u(300.0, 700.0)),
        air_hz=float(u(9000.0, 15000.0)),
        air_db=float(u(-50.0, -22.0)),
        notch_hz=float(u(3800.0, 6500.0)),
        notch_db=float(u(0.0, 24.0)),
    )


def sample_song(singer: SingerParams, seed: int, song_index: int, seconds: float = 40.0) -> SongParams:
    """Draw the session of song ``song_index`` of ``singer`` (depends on ``(seed, singer, song)``)."""
    rng = _song_rng(singer, seed, song_index)
    return _draw_song(rng, song_index, seconds)


def _song_rng(singer: SingerParams, seed: int, song_index: int) -> np.random.Generator:
    return _rng(seed, 2, singer.index, song_index)


def _draw_song(rng: np.random.Generator, song_index: int, seconds: float) -> SongParams:
    if not seconds >= 1.0:
        raise ConfigError(f"a song must be at least 1 s long, got {seconds} s.")
    u = rng.uniform
    peaks = [(float(np.exp(u(np.log(150.0), np.log(12000.0)))), float(rng.normal(0, 3.0)), float(u(0.5, 2.0)))
             for _ in range(3)]
    return SongParams(
        index=song_index,
        name=f"song{song_index:02d}",
        seconds=float(seconds),
        key=int(rng.integers(-5, 6)),
        minor=bool(rng.random() < 0.4),
        tempo_bpm=float(u(80.0, 160.0)),
        rt60=float(u(0.15, 1.0)),
        reverb_wet=float(u(0.03, 0.3)),
        eq_tilt_db_oct=float(u(-1.2, 1.2)),
        eq_peaks=tuple(round(v, 4) for p in peaks for v in p),
        noise_snr_db=float(u(32.0, 48.0)),
        noise_slope_db_oct=float(u(-4.5, -1.5)),
        peak_dbfs=float(u(-6.0, -1.0)),
        vibrato_rate_drift=float(np.exp(rng.normal(0, 0.03))),
        vibrato_extent_drift=float(np.exp(rng.normal(0, 0.1))),
        breath_drift_db=float(rng.normal(0, 2.0)),
        tilt_drift_db_oct=float(rng.normal(0, 0.4)),
        oq_drift=float(rng.normal(0, 0.02)),
        formant_drift=float(np.exp(rng.normal(0, 0.01))),
    )


class _Note(NamedTuple):
    start: float
    end: float
    midi: float
    level_db: float
    vowel: int
    consonant: str
    technique: int
    phrase_start: bool
    phrase_end: bool


def _compose(singer: SingerParams, song: SongParams, rng: np.random.Generator) -> tuple[list[_Note], list[Section]]:
    """The score: phrases of notes with syllables, grouped into technique sections."""
    beat = 60.0 / song.tempo_bpm
    tonic = singer.median_midi + song.key
    scale = _MINOR if song.minor else _MAJOR
    phrases: list[list[tuple[float, float, float, int, str, float]]] = []
    t = float(rng.uniform(0.2, 0.6))
    while t < song.seconds - 0.3:
        n = int(rng.integers(3, 9))
        degree = int(rng.integers(-1, 4))
        notes = []
        for k in range(n):
            dur = float(rng.choice([0.5, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0])) * beat * (1.5 if k == n - 1 else 1.0)
            semis = 12 * (degree // 7) + scale[degree % 7]
            cons = "" if rng.random() < 0.5 else str(rng.choice(_VOICED_CONS + _NOISE_CONS))
            level = 3.0 * np.sin(np.pi * (k + 0.5) / n) + rng.normal(0.0, 1.5)
            intonation = float(rng.normal(0.0, 0.08))
            notes.append((t, t + dur, semis + intonation, int(rng.integers(len(VOWELS))), cons, float(level)))
            t += dur
            if t > 4.5 + notes[0][0]:
                break
            degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -3, 7))
        phrases.append(notes)
        t += float(rng.choice([0.25, 0.5, 0.5, 1.0])) * beat + float(rng.uniform(0.1, 0.25))
    n_sections = int(np.clip(round(song.seconds / 8.0), 1, len(phrases)))
    n_sections = max(n_sections, min(3, len(phrases)))
    groups = np.array_split(np.arange(len(phrases)), n_sections)
    techs = list(rng.permutation(len(TECHNIQUES))[: min(3, n_sections)])
    while len(techs) < n_sections:
        techs.append(int(rng.choice([x for x in range(len(TECHNIQUES)) if x != techs[-1]])))
    notes_out: list[_Note] = []
    sections: list[Section] = []
    for g, (group, tech) in enumerate(zip(groups, techs)):
        spec = _TECH[TECHNIQUES[tech]]
        start = 0.0 if g == 0 else phrases[group[0]][0][0]
        end = song.seconds if g == n_sections - 1 else phrases[groups[g + 1][0]][0][0]
        sections.append(Section(round(start, 4), round(min(end, song.seconds), 4), TECHNIQUES[tech]))
        for p in group:
            for k, (s, e, semis, vowel, cons, level) in enumerate(phrases[p]):
                pitch = tonic + spec.tessitura + semis
                last = k == len(phrases[p]) - 1
                notes_out.append(_Note(s, e, pitch, level + spec.level_db, vowel, cons, tech, k == 0, last))
    return notes_out, sections
