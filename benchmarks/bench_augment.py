"""Augmentation speed per core: each transform alone and the two-view chain, per-clip Praat vs pitch bank.

The baseline is the reference path (Praat "Change gender" on every crop); the bank path
renders pitch-shifted copies of the whole song once and crops them. Both are timed in the
same run on the same synthetic sung signal, single-threaded (Praat and numpy's elementwise
ops use one core here). The bank's one-off build cost is reported separately. The per-core
figures use CPU time per view (``process_time``); wall-clock medians are reported too and
grow when other work shares the machine.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from benchmarks.common import time_call
from singerid.audio import SAMPLE_RATE
from singerid.data.signals import sung_melody
from singerid.training.augment import (
    AugmentConfig,
    Augmenter,
    ViewParams,
    add_noise,
    apply_gain,
    apply_time_mask,
)


def _views_timer(aug: Augmenter, song: np.ndarray, length: int, views_per_call: int):
    """A callable making ``views_per_call`` views at fresh random starts (seeded, advancing)."""
    state = {"seed": 0}

    def call() -> None:
        rng = np.random.default_rng(state["seed"])
        state["seed"] += 1
        for _ in range(views_per_call):
            aug.view("song", song, int(rng.integers(0, len(song) - length)), length, rng)

    return call


def _timed(fn, repeats: int) -> dict:
    """``time_call`` statistics plus CPU seconds per call (less sensitive to other load on the machine)."""
    cpu = time.process_time()
    stats = time_call(fn, repeats, warmup=1)
    stats["cpu_s_per_call"] = (time.process_time() - cpu) / (repeats + 1)
    return stats


def _ms(stats: dict, per: int = 1, key: str = "median_s") -> float:
    return 1e3 * stats[key] / per


def run(quick: bool) -> dict:
    clip_s, song_s, variants, repeats = (1.0, 4.0, 2, 3) if quick else (4.0, 40.0, 8, 25)
    length = int(clip_s * SAMPLE_RATE)
    song = sung_melody(song_s)
    with tempfile.TemporaryDirectory() as bank_dir:
        return _measure(song, length, variants, repeats, bank_dir) | {
            "quick": quick,
            "clip_seconds": clip_s,
            "song_seconds": song_s,
            "bank_variants": variants,
        }


def _measure(song: np.ndarray, length: int, variants: int, repeats: int, bank_dir: str) -> dict:
    crop = song[SAMPLE_RATE : SAMPLE_RATE + length].copy()
    forced = dict(pitch_p=1.0, noise_p=1.0, gain_p=1.0, mask_p=1.0)
    praat = Augmenter(AugmentConfig(**forced))
    bank = Augmenter(AugmentConfig(**forced, pitch_mode="bank", bank_variants=variants, bank_dir=bank_dir))
    start, cpu = time.perf_counter(), time.process_time()
    bank.precompute({"song": song})
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu

    single = {
        "noise": _timed(lambda: add_noise(crop, 0.01, 1), repeats),
        "gain": _timed(lambda: apply_gain(crop, -3.0), repeats),
        "time_mask": _timed(lambda: apply_time_mask(crop, 1000, length // 8), repeats),
        "pitch_praat": _timed(
            lambda: praat.apply("song", song, SAMPLE_RATE, length, ViewParams(pitch=(1.2, 1.3), praat_seed=1)),
            repeats,
        ),
        "pitch_bank": _timed(
            lambda: bank.apply("song", song, SAMPLE_RATE, length, ViewParams(variant=variants - 1)), repeats
        ),
    }
    chains = {}
    for name, probs in (("all_p1", forced), ("paper_p0.5", {})):
        for mode in ("praat", "bank"):
            # bank mode loads (memory-maps) the bank rendered above, as DataLoader workers do
            aug = Augmenter(AugmentConfig(**probs, pitch_mode=mode, bank_variants=variants, bank_dir=bank_dir))
            if mode == "bank":
                aug.precompute({"song": song})
            chains[f"{name}/{mode}"] = _timed(_views_timer(aug, song, length, 2), repeats)

    ms_per_view = {key: _ms(value, per=2) for key, value in chains.items()}
    cpu_ms_per_view = {key: _ms(value, per=2, key="cpu_s_per_call") for key, value in chains.items()}
    return {
        "single_transform_ms": {key: _ms(value) for key, value in single.items()},
        "chain_ms_per_view": ms_per_view,
        "chain_cpu_ms_per_view": cpu_ms_per_view,
        "chain_views_per_s_per_core": {key: 1e3 / value for key, value in cpu_ms_per_view.items()},
        "speedup_bank_vs_praat": {
            name: ms_per_view[f"{name}/praat"] / ms_per_view[f"{name}/bank"] for name in ("all_p1", "paper_p0.5")
        },
        "speedup_bank_vs_praat_cpu": {
            name: cpu_ms_per_view[f"{name}/praat"] / cpu_ms_per_view[f"{name}/bank"] for name in ("all_p1", "paper_p0.5")
        },
        "pitch_only_speedup": single["pitch_praat"]["median_s"] / single["pitch_bank"]["median_s"],
        "bank_build_s": build_s,
        "bank_build_cpu_s": build_cpu_s,
        "bank_build_cpu_s_per_song_second": build_cpu_s * SAMPLE_RATE / len(song),
        "bank_break_even_views": build_cpu_s
        / max(1e-9, 1e-3 * (cpu_ms_per_view["all_p1/praat"] - cpu_ms_per_view["all_p1/bank"])),
        "timings": {"single": single, "chain_two_views": chains},
    }
