"""Encoder inference speed: clips/s for cpu_small and efficientnet_b0, 1 and 2 threads.

Clips are 4 s at 44.1 kHz (the paper's crops); quick mode uses 0.5 s clips, tiny batches and one
thread. "forward" is an eval-mode, no-grad pass waveform -> embedding (training steps are timed
by ``bench_train``). The baseline, timed in the same run and thread setting, is the log-mel
frontend alone on the same clips; every speed is also given as a ratio to it. Wall-clock
medians grow when other work shares the machine; ``best`` uses the fastest repeat. On a machine
busy with other processes, OpenMP's default spin-waiting can make 2 threads several times slower
than 1; ``OMP_WAIT_POLICY=PASSIVE`` (set before Python starts) avoids that, so the setting in
force is recorded with the results.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from benchmarks.common import time_call
from singerid.data.signals import noisy_tone
from singerid.model.backbones import EncoderConfig, build_encoder, count_parameters


def _clips(n: int, seconds: float, seed: int = 0) -> torch.Tensor:
    f0 = np.random.default_rng(seed).uniform(110.0, 440.0, size=n)
    return torch.from_numpy(noisy_tone(f0, seconds, seed, noise=0.015, n_harmonics=15, peak=0.3))


def _rates(stats: dict, batch: int) -> dict:
    return {
        "clips_per_s": batch / stats["median_s"],
        "clips_per_s_best": batch / stats["min_s"],
        "median_s": stats["median_s"],
        "repeats": stats["repeats"],
    }


def _measure_backbone(backbone: str, batch: int, wave: torch.Tensor, repeats: int, frontend_rate: float) -> dict:
    torch.manual_seed(0)
    net = build_encoder(EncoderConfig(backbone=backbone)).eval()
    x = wave[:batch]

    def forward() -> None:
        with torch.no_grad():
            net(x)

    fwd = _rates(time_call(forward, repeats, warmup=1), batch)
    return {
        "batch": batch,
        "parameters": count_parameters(net),
        "forward": fwd,
        "forward_vs_frontend": fwd["clips_per_s"] / frontend_rate,
    }


def run(quick: bool) -> dict:
    seconds, repeats = (0.5, 1) if quick else (4.0, 5)
    batches = {"cpu_small": 2, "efficientnet_b0": 1} if quick else {"cpu_small": 32, "efficientnet_b0": 8}
    thread_counts = (1,) if quick else (1, 2)
    wave = _clips(max(batches.values()), seconds)
    frontend = build_encoder(EncoderConfig(backbone="cpu_small")).frontend
    previous_threads = torch.get_num_threads()
    results = {}
    try:
        for threads in thread_counts:
            torch.set_num_threads(threads)
            x = wave[: batches["cpu_small"]]

            def frontend_only(x: torch.Tensor = x) -> None:
                with torch.no_grad():
                    frontend(x)

            base = _rates(time_call(frontend_only, repeats, warmup=1), len(x))
            row = {"baseline_frontend": base}
            for backbone, batch in batches.items():
                row[backbone] = _measure_backbone(backbone, batch, wave, repeats, base["clips_per_s"])
            results[f"threads_{threads}"] = row
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "quick": quick,
        "clip_seconds": seconds,
        "baseline": "log-mel frontend alone (no grad), same clips and thread count",
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "results": results,
    }
