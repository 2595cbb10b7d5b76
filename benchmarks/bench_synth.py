"""Speed of the synthetic corpus: real-time factor of rendering one song on one core.

Baselines measured in the same run, on the same length of audio: drawing that many
Gaussian samples with numpy (the cheapest possible "synthesis"), and writing the song
to disk as 16-bit WAV (what every generated song costs anyway).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.common import time_call
from singerid.audio import SAMPLE_RATE, write_audio
from singerid.data.synth import sample_singer, sing_song


def run(quick: bool) -> dict:
    seconds = 4.0 if quick else 40.0
    repeats = 2 if quick else 5
    singer = sample_singer(0, 0)
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as tmp:
        audio, _, _ = sing_song(singer, 0, 0, seconds)
        synth = time_call(lambda: sing_song(singer, 0, 0, seconds), repeats=repeats, warmup=1)
        rng = np.random.default_rng(0)
        noise = time_call(lambda: rng.standard_normal(len(audio), dtype=np.float32), repeats=repeats, warmup=1)
        write = time_call(lambda: write_audio(Path(tmp) / "song.wav", audio), repeats=repeats, warmup=1)
    return {
        "song_seconds": seconds,
        "sample_rate": SAMPLE_RATE,
        "threads": 1,
        "synth": synth,
        "real_time_factor": seconds / synth["median_s"],
        "baseline_noise": noise,
        "baseline_write_wav": write,
        "synth_over_noise": synth["median_s"] / noise["median_s"],
        "synth_over_write_wav": synth["median_s"] / write["median_s"],
    }
