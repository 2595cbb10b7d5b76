"""How cost grows with the amount of work: embedding files and scoring trials, each at 3 sizes.

Embedding: ``extract_to_npz`` (what ``singerid embed`` runs: read, window, embed, write
shards, merge) over 16, 64 and 256 synthetic 8 s files with the cpu_small encoder at random
weights. Scoring: ``score_trials`` (what ``singerid evaluate`` runs) over 100k, 300k and 1M
trials drawn from 20k 1000-d embeddings. Each size is timed as the median of 3 runs; the fit
``seconds = intercept + slope * size`` gives the cost per item, and the log-log exponent is
1.0 for linear growth. Quick mode uses tiny sizes (a smoke test, not a measurement).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import linear_fit, time_call
from singerid.audio import SAMPLE_RATE, write_audio
from singerid.data.signals import sung_melody
from singerid.eval.trials import Trial, score_trials
from singerid.extract import extract_to_npz
from singerid.infer import SingerEncoder
from singerid.model.artifact import load_artifact, save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder

FILE_SECONDS = 8.0


def _encoder(folder: Path) -> SingerEncoder:
    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small")
    return SingerEncoder(load_artifact(save_artifact(folder / "model", build_encoder(cfg), cfg)))


def embedding_scaling(sizes: tuple[int, ...], repeats: int) -> dict:
    """Seconds to embed ``n`` files for each ``n`` in ``sizes``, and the linear fit."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        encoder = _encoder(folder)
        files = []
        for i in range(max(sizes)):
            path = folder / "audio" / f"song{i:04d}.wav"
            files.append(write_audio(path, sung_melody(FILE_SECONDS, seed=i), SAMPLE_RATE))
        seconds = []
        for n in sizes:
            out = folder / f"emb{n}.npz"
            stats = time_call(lambda: extract_to_npz(encoder, files[:n], out, progress=False), repeats, warmup=1)
            seconds.append(stats["median_s"])
    fit = linear_fit(list(sizes), seconds)
    fit["audio_s_per_file"] = FILE_SECONDS
    fit["real_time_factor_at_largest"] = seconds[-1] / (sizes[-1] * FILE_SECONDS)
    return fit


def scoring_scaling(sizes: tuple[int, ...], n_emb: int, dim: int, repeats: int, seed: int = 0) -> dict:
    """Seconds to score ``n`` trials for each ``n`` in ``sizes``, and the linear fit."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n_emb, dim), dtype=np.float32)
    ids = [f"seg{i}" for i in range(n_emb)]
    a, b = rng.integers(0, n_emb, max(sizes)), rng.integers(0, n_emb, max(sizes))
    trials = [Trial(ids[i], ids[j], bool(i % 7 == j % 7)) for i, j in zip(a, b)]
    seconds = [time_call(lambda: score_trials(trials[:n], ids, emb), repeats, warmup=1)["median_s"] for n in sizes]
    fit = linear_fit(list(sizes), seconds)
    fit.update({"embeddings": n_emb, "dim": dim, "trials_per_s_at_largest": sizes[-1] / seconds[-1]})
    return fit


def run(quick: bool = False) -> dict:
    if quick:
        return {
            "quick": True,
            "embedding": embedding_scaling((1, 2, 4), repeats=1),
            "scoring": scoring_scaling((1000, 3000, 10000), n_emb=500, dim=64, repeats=1),
        }
    return {
        "quick": False,
        "embedding": embedding_scaling((16, 64, 256), repeats=3),
        "scoring": scoring_scaling((100_000, 300_000, 1_000_000), n_emb=20_000, dim=1000, repeats=3),
    }
