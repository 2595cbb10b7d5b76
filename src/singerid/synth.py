"""Procedural multi-singer corpus: the built-in default data of the demo and the tests.

Each singer is a source-filter voice with a fixed timbre identity (vocal-tract length,
per-vowel formant offsets, formant levels and bandwidths, singer's formant, glottal open
quotient and tilt, breathiness, high-frequency air, jitter, shimmer, vibrato rate).
Each song is one long file: phrases of sung syllables (consonant + vowel) with rests,
portamento and vibrato, in sections of different techniques, recorded in its own session
(key, tempo, room, channel EQ, background noise, small drifts of the voice).

Identity lives in timbre; pitch does not give the singer away, because every song's key
moves the melody further than the singers' median pitches differ.

Determinism: singer ``i`` depends only on ``(seed, i)``, song ``j`` of singer ``i`` only on
``(seed, i, j)``, so a corpus of N singers is the first N singers of a larger one.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.fft
import scipy.signal

from .audio import SAMPLE_RATE, audio_info, write_audio
from .errors import AudioError, ConfigError
from .fileio import atomic_path

SYNTH_VERSION = 1
"""Bumped whenever the same parameters would render different audio."""

TECHNIQUES = ("straight", "vibrato", "breathy", "belt")
VOWELS = ("a", "e", "i", "o", "u", "@")
_VOICED_CONS = ("m", "n", "l")
_NOISE_CONS = ("s", "sh", "f", "h", "t", "k", "p")

_N_FFT = 1024
_HOP = 256
_FREQS = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
_LOG2F = np.log2(np.maximum(_FREQS, 20.0) / 1000.0)
_WINDOW = scipy.signal.get_window("hann", _N_FFT).astype(np.float32)
_NEPER = np.log(10.0) / 20.0  # dB -> natural-log amplitude
_FLOOR_DB = -120.0

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


def _bell_db(centre: float, gain_db: float, octaves: float) -> np.ndarray:
    return gain_db / (1.0 + ((_LOG2F - np.log2(centre / 1000.0)) / (octaves / 2.0)) ** 2)


def _resonance(centre: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """Magnitude of second-order band-pass resonances (peak 1), one row per centre."""
    f = np.maximum(_FREQS, 1.0)[None, :]
    q = (centre / bandwidth)[:, None]
    return 1.0 / np.sqrt(1.0 + (q * (f / centre[:, None] - centre[:, None] / f)) ** 2)


def _spectra(singer: SingerParams, song: SongParams) -> tuple[np.ndarray, dict]:
    """Log-amplitude (nepers) spectral envelopes of every phone in every technique.

    Rows: for each technique the vowels then the murmurs; then the noise consonants;
    the last row is the floor (silence). Session EQ is included in every row.
    """
    eq = song.eq_tilt_db_oct * _LOG2F + sum(_bell_db(*song.eq_peaks[i : i + 3]) for i in range(0, 9, 3))
    offsets = np.asarray(singer.formant_offsets).reshape(len(VOWELS), 5) + np.asarray(singer.formant_shift)
    notch = _bell_db(singer.notch_hz, -singer.notch_db, 0.5)
    scale = singer.vtl_scale * song.formant_drift
    bw = _BANDWIDTH * singer.bandwidth_scale
    gains = np.asarray(singer.formant_gain_db)
    rows, index = [], {}
    for ti, name in enumerate(TECHNIQUES):
        spec = _TECH[name]
        tilt = (singer.tilt_db_oct + song.tilt_drift_db_oct + spec.tilt_db_oct) * _LOG2F
        extra = singer.singer_formant_db + spec.singer_formant_db
        centres = np.array([singer.singer_formant_hz, singer.air_hz])
        widths = np.array([singer.singer_formant_bw, 0.8 * singer.air_hz])
        hf = np.array([10 ** (extra / 20), 10 ** (singer.air_db / 20)]) @ _resonance(centres, widths)
        phones = [(_VOWEL_F[v] * np.exp(offsets[v]), _VOWEL_A[v]) for v in range(len(VOWELS))]
        phones += [(np.asarray(f, float), np.asarray(a, float)) for f, a in (_MURMUR[c] for c in _VOICED_CONS)]
        for pi, (freqs, levels) in enumerate(phones):
            freqs = freqs * scale * np.array([spec.f1_scale, 1, 1, 1, 1])
            amps = 10 ** ((levels + gains) / 20)
            env = amps @ _resonance(freqs, bw) + hf
            index[(ti, pi)] = len(rows)
            rows.append(20 * np.log10(env) + tilt + notch + eq)
    for c, (centre, octaves, level, _, _) in _NOISE_SHAPE.items():
        index[c] = len(rows)
        rows.append(_bell_db(centre * singer.vtl_scale, 40.0, octaves) - 40.0 + level + eq - 12.0)
    index["floor"] = len(rows)
    rows.append(np.full(_FREQS.shape, _FLOOR_DB))
    return (np.asarray(rows) * _NEPER).astype(np.float32), index


def _keyframes(notes: list[_Note], index: dict) -> tuple[list, list]:
    """(time, row, gain dB) keyframes of the voiced path and of the noise path."""
    floor = index["floor"]
    voice = [(0.0, floor, 0.0)]
    noise = [(0.0, floor, 0.0)]
    n_vowels = len(VOWELS)
    for i, note in enumerate(notes):
        s, e, lv = note.start, note.end, note.level_db
        vrow = index[(note.technique, note.vowel)]
        breath_row = index[(note.technique, n_vowels - 1)]
        if note.phrase_start and (i == 0 or s - notes[i - 1].end > 0.45):
            # An audible in-breath before a phrase that follows a real rest.
            noise += [(s - 0.4, floor, 0.0), (s - 0.3, breath_row, lv - 34)]
            noise += [(s - 0.1, breath_row, lv - 34), (s - 0.04, floor, 0.0)]
        cons = note.consonant
        dc = 0.0
        if cons in _VOICED_CONS:
            dc = 0.07
            crow = index[(note.technique, n_vowels + _VOICED_CONS.index(cons))]
            voice += [(s + 0.01, crow, lv - 10), (s + dc - 0.01, crow, lv - 6)]
        elif cons == "h":
            dc = 0.07
            voice += [(s + 0.01, floor, 0.0), (s + dc - 0.01, floor, 0.0)]
            noise += [(s, floor, 0.0), (s + 0.01, vrow, lv - 14)]
            noise += [(s + dc - 0.01, vrow, lv - 14), (s + dc + 0.01, floor, 0.0)]
        elif cons:
            _, _, level, dc, plosive = _NOISE_SHAPE[cons]
            crow = index[cons]
            voice += [(s + 0.01, floor, 0.0), (s + dc - 0.005, floor, 0.0)]
            if plosive:  # silent closure, then a short burst
                burst = [(s + dc - 0.02, floor, 0.0), (s + dc - 0.015, crow, lv), (s + dc - 0.003, crow, lv - 8)]
                noise += burst + [(s + dc + 0.005, floor, 0.0)]
            else:
                noise += [(s + 0.005, floor, 0.0), (s + 0.02, crow, lv)]
                noise += [(s + dc - 0.015, crow, lv), (s + dc, floor, 0.0)]
        attack = 0.06 if (note.phrase_start or (cons and cons not in _VOICED_CONS)) else 0.03
        onset = lv - (15.0 if attack > 0.05 else 4.0)
        v0 = s + dc
        voice += [(v0, vrow, onset), (v0 + attack, vrow, lv), (max(v0 + attack, e - 0.04), vrow, lv - 1.5)]
        if note.phrase_end:
            voice += [(e + 0.06, vrow, lv - 30.0), (e + 0.1, floor, 0.0)]
    return sorted(voice, key=lambda k: k[0]), sorted(noise, key=lambda k: k[0])


def _interp_log(frames_t: np.ndarray, keys: list, table: np.ndarray) -> np.ndarray:
    """Per-frame log spectra, linearly interpolated between keyframes."""
    times = np.array([k[0] for k in keys])
    rows = np.array([k[1] for k in keys])
    gains = np.array([k[2] for k in keys]) * _NEPER
    a = np.clip(np.searchsorted(times, frames_t, side="right") - 1, 0, len(times) - 1)
    b = np.minimum(a + 1, len(times) - 1)
    span = times[b] - times[a]
    w = np.clip((frames_t - times[a]) / np.maximum(span, 1e-9), 0.0, 1.0)
    w = w.astype(np.float32)[:, None]
    out = table[rows[a]] * (1.0 - w)
    out += table[rows[b]] * w
    out += (gains[a] * (1.0 - w[:, 0]) + gains[b] * w[:, 0]).astype(np.float32)[:, None]
    return out


def _stft(x: np.ndarray, n_frames: int) -> np.ndarray:
    pad = np.zeros((n_frames - 1) * _HOP + _N_FFT, dtype=np.float32)
    pad[_N_FFT // 2 : _N_FFT // 2 + len(x)] = x[: len(pad) - _N_FFT // 2]
    frames = np.lib.stride_tricks.sliding_window_view(pad, _N_FFT)[::_HOP] * _WINDOW
    return scipy.fft.rfft(frames, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    frames = (scipy.fft.irfft(spec, n=_N_FFT, axis=1) * _WINDOW).astype(np.float32)
    n_frames, ratio = len(frames), _N_FFT // _HOP
    blocks = frames.reshape(n_frames, ratio, _HOP)
    out = np.zeros((n_frames + ratio - 1, _HOP), dtype=np.float32)
    norm = np.zeros((n_frames + ratio - 1, _HOP), dtype=np.float32)
    w2 = (_WINDOW**2).reshape(ratio, _HOP)
    for r in range(ratio):
        out[r : r + n_frames] += blocks[:, r]
        norm[r : r + n_frames] += w2[r]
    y = (out / np.maximum(norm, 1e-3)).ravel()
    return y[_N_FFT // 2 : _N_FFT // 2 + length]


def _source(
    f0_frames: np.ndarray,
    oq_frames: np.ndarray,
    breath_frames: np.ndarray,
    skew: float,
    length: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Glottal flow derivative (Rosenberg pulse, band-limited closure) plus pulsed aspiration noise."""
    frame_n = np.arange(len(f0_frames)) * _HOP
    step = np.interp(np.arange(length), frame_n, f0_frames / SAMPLE_RATE)
    phase = np.cumsum(step)  # float64: a minute of cycles must not lose its fraction
    cycle = np.floor(phase)
    frac = (phase - cycle).astype(np.float32)
    te = np.repeat(oq_frames.astype(np.float32), _HOP)[:length]
    tp = te * np.float32(skew)
    opening = frac < tp
    open_phase = frac < te
    half_pi = np.float32(np.pi / 2)
    arg = np.where(opening, frac / tp, (frac - tp) / (2 * (te - tp)))
    amp = np.where(opening, half_pi / tp, -half_pi / (te - tp))
    d = np.where(open_phase, amp * np.sin(np.float32(np.pi) * arg), np.float32(0.0))
    # The closure is a jump in the flow derivative; a two-sample polynomial step
    # correction (polyBLEP) keeps it from aliasing across the whole band.
    n = np.nonzero(open_phase[:-1] & (~open_phase[1:] | (cycle[1:] > cycle[:-1])))[0]
    jump = np.pi / (2 * (te[n] - tp[n]))
    tau = np.clip((te[n] - frac[n]) / step[n + 1], 0.0, 1.0)
    d[n] += 0.5 * jump * (1 - tau) ** 2
    d[n + 1] -= 0.5 * jump * tau**2
    gate = np.where(open_phase, np.float32(1.0), np.float32(0.35))
    gate *= np.repeat(breath_frames.astype(np.float32), _HOP)[:length]
    return d + rng.standard_normal(length, dtype=np.float32) * gate


def _tracks(
    notes: list[_Note], singer: SingerParams, song: SongParams, frames_t: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame pitch (Hz), open quotient and aspiration level."""
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    midi = np.array([n.midi for n in notes])
    legato = np.array([not n.phrase_start for n in notes])
    prev = np.concatenate([[midi[0]], midi[:-1]])
    techs = [_TECH[TECHNIQUES[n.technique]] for n in notes]
    idx = np.clip(np.searchsorted(starts, frames_t, side="right") - 1, 0, len(notes) - 1)
    since = frames_t - starts[idx]
    glide = np.clip(since / singer.portamento, 0.0, 1.0)
    glide = glide * glide * (3 - 2 * glide)
    pitch = np.where(legato[idx], prev[idx] + (midi[idx] - prev[idx]) * glide, midi[idx])
    extent = singer.vibrato_extent * song.vibrato_extent_drift * np.array([t.vibrato for t in techs])
    ramp = np.clip((since - 0.15) / 0.3, 0.0, 1.0) * (frames_t < ends[idx]) * ((ends - starts)[idx] > 0.35)
    dt = _HOP / SAMPLE_RATE
    # The vibrato rate wanders slowly (AR(1), 2 s memory, 3 % deviation) around the singer's own.
    pole = np.exp(-dt / 2.0)
    wander = scipy.signal.lfilter([1 - pole], [1, -pole], rng.standard_normal(len(frames_t)))
    rate = singer.vibrato_rate * song.vibrato_rate_drift * (1 + 0.03 * wander / np.sqrt((1 - pole) / (1 + pole)))
    vib = extent[idx] * ramp * np.sin(2 * np.pi * np.cumsum(rate) * dt + rng.uniform(0, 2 * np.pi))
    jitter = 12 * np.log2(1 + singer.jitter * rng.standard_normal(len(frames_t)))
    f0 = 440.0 * 2 ** ((pitch + vib + jitter - 69.0) / 12.0)
    oq = np.clip(singer.open_quotient + song.oq_drift + np.array([t.open_quotient for t in techs])[idx], 0.3, 0.92)
    breath_db = singer.breath_db + song.breath_drift_db + np.array([t.breath_db for t in techs])[idx]
    return f0, oq, 10 ** (breath_db / 20)


def _reverb(y: np.ndarray, song: SongParams, rng: np.random.Generator) -> np.ndarray:
    n = int(song.rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    ir = rng.standard_normal(n) * np.exp(-6.91 * t / song.rt60)
    # Rooms absorb highs faster than lows: a one-pole low-pass on the tail.
    ir = scipy.signal.lfilter([0.35], [1.0, -0.65], ir)
    ir *= song.reverb_wet / np.sqrt(np.sum(ir**2))
    delay = int(0.015 * SAMPLE_RATE)
    wet = scipy.signal.oaconvolve(y, ir.astype(np.float32))[: len(y) - delay]
    out = y.copy()
    out[delay:] += wet
    return out


def sing_song(
    singer: SingerParams, seed: int, song_index: int, seconds: float = 40.0
) -> tuple[np.ndarray, list[Section], SongParams]:
    """Render song ``song_index`` of ``singer``: float32 mono audio at 44.1 kHz, its sections, its session."""
    rng = _song_rng(singer, seed, song_index)
    song = _draw_song(rng, song_index, seconds)
    notes, sections = _compose(singer, song, rng)
    length = int(round(seconds * SAMPLE_RATE))
    n_frames = length // _HOP + 1
    frames_t = np.arange(n_frames) * (_HOP / SAMPLE_RATE)
    f0, oq, breath = _tracks(notes, singer, song, frames_t, rng)
    table, index = _spectra(singer, song)
    voice_keys, noise_keys = _keyframes(notes, index)
    src = _source(f0, oq, breath, singer.skew, length, rng)
    spec = _stft(src, n_frames)
    log_voice = _interp_log(frames_t, voice_keys, table)
    log_voice += (singer.shimmer_db * _NEPER * rng.standard_normal(n_frames)).astype(np.float32)[:, None]
    spec *= np.exp(log_voice, out=log_voice)
    del log_voice
    voice_power = float(np.vdot(spec, spec).real) / spec.size
    noise = _stft(rng.standard_normal(length, dtype=np.float32), n_frames)
    # White noise in these frames has power sum(w^2) per bin; the voice's keyframe levels
    # assume a unit harmonic amplitude, which has (sum(w)/2)^2 per bin.
    win_gain = float(np.sum(_WINDOW) / 2 / np.sqrt(np.sum(_WINDOW**2)))
    bg_shape = 10 ** (song.noise_slope_db_oct * _LOG2F / 20)
    bg = bg_shape * np.sqrt(voice_power * 10 ** (-song.noise_snr_db / 10) / (np.sum(_WINDOW**2) * np.mean(bg_shape**2)))
    noise_env = _interp_log(frames_t, noise_keys, table)
    np.exp(noise_env, out=noise_env)
    noise_env *= np.float32(win_gain)
    noise_env += bg.astype(np.float32)
    noise *= noise_env
    spec += noise
    del noise, noise_env
    y = _reverb(_istft(spec, length), song, rng)
    fade = int(0.01 * SAMPLE_RATE)
    y[:fade] *= np.linspace(0.0, 1.0, fade, dtype=np.float32)
    y[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    peak = float(np.max(np.abs(y)))
    if not np.isfinite(peak) or peak == 0.0:
        raise AudioError(f"{singer.name}/{song.name}: rendering gave no usable audio (peak {peak}); report this seed.")
    return (y * (10 ** (song.peak_dbfs / 20) / peak)).astype(np.float32), sections, song


def _params_row(prefix: str, params) -> dict:
    row = {}
    for f, value in zip(fields(params), astuple(params)):
        if f.name in ("index", "name"):
            continue
        if isinstance(value, tuple):
            value = " ".join(f"{v:.6g}" for v in value)
        elif isinstance(value, float):
            value = f"{value:.6g}"
        row[f.name if f.name.startswith(f"{prefix}_") else f"{prefix}_{f.name}"] = str(value)
    return row


def _song_row(singer: SingerParams, song: SongParams, seed: int) -> dict:
    row = {
        "path": f"{singer.name}/{song.name}.wav",
        "singer": singer.name,
        "song": song.name,
        "technique": "",
        "duration": f"{song.seconds:.6g}",
        "sample_rate": str(SAMPLE_RATE),
        "seed": str(seed),
        "synth_version": str(SYNTH_VERSION),
    }
    row.update(_params_row("singer", singer))
    row.update(_params_row("song", song))
    return row


def _render_job(job: tuple) -> tuple[dict, list[Section]]:
    out_dir, seed, i, j, seconds = job
    singer = sample_singer(seed, i)
    audio, sections, song = sing_song(singer, seed, j, seconds)
    row = _song_row(singer, song, seed)
    write_audio(Path(out_dir) / row["path"], audio, SAMPLE_RATE)
    return row, sections


def _is_current(out_dir: Path, row: dict, old_rows: dict) -> bool:
    old = old_rows.get(row["path"])
    if old != row:
        return False
    try:
        info = audio_info(out_dir / row["path"])
    except AudioError:
        return False
    return info.sample_rate == SAMPLE_RATE and info.frames == int(round(float(row["duration"]) * SAMPLE_RATE))


def _read_old_rows(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh) if "path" in r}


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def generate_corpus(
    out_dir: str | os.PathLike,
    n_singers: int,
    n_songs: int,
    song_seconds: float = 40.0,
    seed: int = 0,
    first_singer: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
) -> Path:
    """Write ``out_dir/<singer>/<song>.wav`` (16-bit mono 44.1 kHz), ``metadata.csv`` and ``sections.csv``.

    Singers ``first_singer .. first_singer + n_singers - 1`` with ``n_songs`` songs each;
    ``metadata.csv`` lists exactly these songs. Songs already on disk whose row in an
    existing ``metadata.csv`` matches are kept, so a re-run with the same arguments is
    cheap, and an interrupted run resumes where it stopped. ``n_jobs`` worker processes
    render songs in parallel (the files do not depend on it). Returns ``metadata.csv``'s path.
    """
    from tqdm import tqdm

    if n_singers < 1 or n_songs < 1:
        raise ConfigError(f"need at least one singer and one song, got {n_singers} singers x {n_songs} songs.")
    if first_singer < 0 or n_jobs < 1:
        raise ConfigError(f"first_singer must be >= 0 and n_jobs >= 1 (got {first_singer}, {n_jobs}).")
    if not song_seconds >= 1.0:
        raise ConfigError(f"song_seconds must be at least 1 s, got {song_seconds}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder. Choose another --out folder.")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "metadata.csv"
    old_rows = _read_old_rows(meta_path)
    results: dict[tuple[int, int], tuple[dict, list[Section]]] = {}
    todo = []
    for i in range(first_singer, first_singer + n_singers):
        singer = sample_singer(seed, i)
        for j in range(n_songs):
            rng = _song_rng(singer, seed, j)
            song = _draw_song(rng, j, song_seconds)
            row = _song_row(singer, song, seed)
            if _is_current(out, row, old_rows):
                results[(i, j)] = (row, _compose(singer, song, rng)[1])
            else:
                todo.append((str(out), seed, i, j, float(song_seconds)))
    try:
        with tqdm(total=len(todo), desc=f"synth -> {out}", unit="song", disable=not progress) as bar:
            if n_jobs == 1 or len(todo) <= 1:
                for job in todo:
                    results[(job[2], job[3])] = _render_job(job)
                    bar.update()
            else:
                # Spawned workers: forking a parent that already runs torch threads can deadlock.
                with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                    for job, result in zip(todo, pool.map(_render_job, todo)):
                        results[(job[2], job[3])] = result
                        bar.update()
    finally:
        # Also on interruption: the songs finished so far are listed, so a re-run skips them.
        if results:
            _write_manifests(out, results)
    return meta_path


def _write_manifests(out: Path, results: dict) -> None:
    rows, section_rows = [], []
    for key in sorted(results):
        row, sections = results[key]
        rows.append(row)
        section_rows += [
            {"path": row["path"], "start": f"{s.start:.4f}", "end": f"{s.end:.4f}", "technique": s.technique}
            for s in sections
        ]
    _write_csv(out / "sections.csv", ["path", "start", "end", "technique"], section_rows)
    _write_csv(out / "metadata.csv", list(rows[0]), rows)
