"""Audio loading for training: 4 s crops from long files, and pairs streamed from tar shards.

Baselines measured in the same run: decoding a whole file (against reading only a crop with
``load_audio(offset=, duration=)``), and the per-file crop path of in-memory-free training
(two ``load_audio`` crops per file, as ``SongStore.read_crop`` does) against pairs streamed from
shards (no augmentation, to isolate loading). Files sit in the page cache, so the figures
are CPU cost of parsing and decoding, not disk speed; ``bytes_read_per_pair`` counts the bytes
the process asked the OS for (``/proc/self/io`` rchar), the I/O a cold disk would have to serve.
The 1,000-hour projection scales the measured figures; real vocals compress better than this
synthetic signal (FLAC typically 50-60 % of 16-bit PCM), so its storage figure is an upper bound.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import time_call
from singerid.audio import SAMPLE_RATE, load_audio, peak_normalize, write_audio
from singerid.data.shards import (
    MAX_SHARD_BYTES,
    read_index,
    read_shard,
    write_shards,
)
from singerid.data.signals import sung_melody
from singerid.records import Recording
from singerid.training.augment import AugmentConfig, Augmenter
from singerid.training.shard_stream import ShardPairStream

CROP_S = 4.0
PCM_BYTES_PER_HOUR = 2 * SAMPLE_RATE * 3600


def _rchar() -> int | None:
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _crop_reads(path: Path, seconds: float, repeats: int) -> dict:
    """Whole-file decode (baseline) against 4 s crop reads at seeded random offsets."""
    rng = np.random.default_rng(0)
    offsets = rng.uniform(0.0, seconds - CROP_S, 8)
    whole = time_call(lambda: load_audio(path), repeats, warmup=1)
    crops = time_call(lambda: [load_audio(path, offset=o, duration=CROP_S) for o in offsets], repeats, warmup=1)
    crop_s = crops["median_s"] / len(offsets)
    return {
        "whole_file_ms": 1e3 * whole["median_s"], "crop_ms": 1e3 * crop_s, "speedup_crop_vs_whole": whole["median_s"] / crop_s,
    }


def _write_corpus(folder: Path, n_files: int, seconds: float) -> list[Recording]:
    return [
        Recording(str(write_audio(folder / f"s{i % 8}" / f"f{i}.wav", sung_melody(seconds, seed=i))), f"s{i % 8}", f"f{i}")
        for i in range(n_files)
    ]


def _per_file_pairs(recordings: list[Recording], seconds: float) -> None:
    """The baseline: two crops per file read from the individual files, peak-normalised."""
    rng = np.random.default_rng(1)
    for r in recordings:
        for _ in range(2):
            peak_normalize(load_audio(r.path, offset=float(rng.uniform(0.0, seconds - CROP_S)), duration=CROP_S))


def _shards(folder: Path, recordings: list[Recording], seconds: float, repeats: int) -> dict:
    start = time.perf_counter()
    write_shards(recordings, folder / "shards", max_files_per_shard=8, progress=False)
    write_s = time.perf_counter() - start
    decode = time_call(lambda: [load_audio(r.path) for r in recordings], repeats, warmup=1)["median_s"]
    index = read_index(folder / "shards")
    stream = ShardPairStream(index.shards, Augmenter(AugmentConfig(pitch_p=0.0, noise_p=0.0, gain_p=0.0, mask_p=0.0)),
                             int(CROP_S * SAMPLE_RATE))
    where = dict(rank=0, world=1, worker=0, num_workers=1)
    n = len(recordings)
    metadata = time_call(lambda: list(stream.records(**where)), repeats, warmup=1)["median_s"]
    pairs = time_call(lambda: list(stream.iterate(**where)), repeats, warmup=1)["median_s"]
    whole = time_call(lambda: [rec.read() for s in index.shards for rec in read_shard(s.path)], repeats, warmup=1)["median_s"]
    baseline = time_call(lambda: _per_file_pairs(recordings, seconds), repeats, warmup=1)["median_s"]
    before = _rchar()
    list(stream.iterate(**where))
    after = _rchar()
    audio_hours = n * seconds / 3600.0
    shard_bytes = sum(s.bytes for s in index.shards)
    return {
        "files": n,
        "file_seconds": seconds,
        "write_x_realtime": n * seconds / write_s,
        "write_vs_decode_only": write_s / decode,
        "shard_bytes_per_audio_hour": shard_bytes / audio_hours,
        "shard_bytes_vs_pcm16": shard_bytes / (audio_hours * PCM_BYTES_PER_HOUR),
        "metadata_files_per_s": n / metadata,
        "pairs_per_s_shards": n / pairs,
        "pairs_per_s_per_file_crops": n / baseline,
        "speedup_shard_pairs_vs_per_file_crops": baseline / pairs,
        "whole_files_per_s_shards": n / whole,
        "whole_files_per_s_load_audio": n / decode,
        "bytes_read_per_pair": None if before is None or after is None else (after - before) / n,
    }


def _projection(shards: dict, hours: float = 1000.0, batch: int = 140, steps: int = 100_000) -> dict:
    """What ``hours`` of audio cost in shard storage, writing time and reads for a paper-sized run.

    ``*_measured`` figures use this run's FLAC ratio (a synthetic signal that compresses well);
    ``*_pcm_bound`` figures assume no compression at all, an upper bound for real vocals.
    """
    ratio = shards["shard_bytes_vs_pcm16"]
    per_pair = shards["bytes_read_per_pair"]
    pcm_bytes = hours * PCM_BYTES_PER_HOUR
    return {
        "hours": hours,
        "storage_gb_measured": pcm_bytes * ratio / 1e9,
        "storage_gb_pcm_bound": pcm_bytes / 1e9,
        "shards_at_256_mib": int(np.ceil(pcm_bytes / MAX_SHARD_BYTES)),  # the planner packs by PCM size
        "write_core_hours": hours / shards["write_x_realtime"],
        "read_mb_per_step_measured": None if per_pair is None else batch * per_pair / 1e6,
        "read_mb_per_step_pcm_bound": None if per_pair is None else batch * per_pair / ratio / 1e6,
        "read_tb_per_run_pcm_bound": None if per_pair is None else steps * batch * per_pair / ratio / 1e12,
        "loading_core_s_per_step": batch / shards["pairs_per_s_shards"],
        "assumptions": f"batch {batch}, {steps} steps, one pair per item, no augmentation (Praat pitch shift is extra)",
    }


def run(quick: bool) -> dict:
    long_s, n_files, file_s, repeats = (20.0, 6, 8.0, 2) if quick else (300.0, 48, 60.0, 3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        song = sung_melody(long_s)
        crops = {fmt: _crop_reads(write_audio(folder / f"long.{fmt}", song), long_s, repeats) for fmt in ("wav", "flac")}
        shards = _shards(folder, _write_corpus(folder / "corpus", n_files, file_s), file_s, repeats)
    return {"quick": quick, "long_file_seconds": long_s, "crop_seconds": CROP_S, "crop_reads": crops, "shards": shards,
            "projection_1000h": _projection(shards)}
