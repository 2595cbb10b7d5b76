"""Rendering of one song: phone spectra, keyframes, glottal source, STFT filtering, noise and reverb."""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal

from ...audio import SAMPLE_RATE
from ...errors import AudioError
from .params import (
    _BANDWIDTH,
    _MURMUR,
    _NOISE_SHAPE,
    _TECH,
    _VOICED_CONS,
    _VOWEL_A,
    _VOWEL_F,
    TECHNIQUES,
    VOWELS,
    Section,
    SingerParams,
    SongParams,
    _compose,
    _draw_song,
    _Note,
    _song_rng,
)

SYNTH_VERSION = 1
"""Bumped whenever the same parameters would render different audio."""

_N_FFT = 1024
_HOP = 256
_FREQS = np.fft.rfftfreq(_N_FFT, 1.0 / SAMPLE_RATE)
_LOG2F = np.log2(np.maximum(_FREQS, 20.0) / 1000.0)
_WINDOW = scipy.signal.get_window("hann", _N_FFT).astype(np.float32)
_NEPER = np.log(10.0) / 20.0  # dB -> natural-log amplitude
_FLOOR_DB = -120.0


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
