"""One self-supervised training step as ``singerid train`` runs it: speed and peak memory.

A step is :meth:`SSLModule.pair_loss` on two views of a batch of 4 s crops, backward and an Adam
update (data loading and augmentation excluded: ``bench_augment`` and ``bench_loading`` time
those). Each configuration runs in a fresh process, so its peak memory is its own:

- CPU: the demo model (``singerid demo``'s objective, backbone and batch size) and the paper's
  EfficientNet-B0 at a small batch. Memory is the peak resident set size (RSS) while stepping
  (the kernel's record is reset first, Linux only) and its growth over the resident size before
  the first step: what the step itself needs.
- CUDA, when available: EfficientNet-B0 at the paper's batch of 140 in fp32 and in bf16 autocast
  (what ``precision: auto`` picks on a GPU); memory is ``torch.cuda.max_memory_allocated``.

The baseline, timed in the same process, is an inference pass (eval mode, no gradients) over the
same ``2 x batch`` crops; ``train_vs_inference`` is the step's speed relative to it, and on CUDA
``bf16_speedup`` is bf16 over fp32. Speeds count training pairs (crops / 2) per second.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch

from benchmarks.common import time_call
from singerid.data.signals import harmonic_tone
from singerid.demo import DemoSettings
from singerid.model.backbones import EncoderConfig, count_parameters
from singerid.training.config import TrainConfig
from singerid.training.module import SSLModule


@dataclass(frozen=True)
class StepSetting:
    """One configuration to time."""

    name: str
    method: str
    backbone: str
    batch: int
    seconds: float
    device: str = "cpu"
    precision: str = "32-true"
    threads: int = 2
    repeats: int = 3


def _views(batch: int, seconds: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two seeded 'views': the same harmonic tones with independent noise and gain."""
    rng = np.random.default_rng(seed)
    tone = harmonic_tone(rng.uniform(110.0, 660.0, size=batch), seconds, n_harmonics=11, peak=1.0)
    views = [rng.uniform(0.1, 0.5, size=(batch, 1)) * tone + 0.01 * rng.standard_normal(tone.shape) for _ in range(2)]
    return tuple(torch.tensor(v, dtype=torch.float32) for v in views)


def _status_mb(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, from /proc, in MiB."""
    for line in open("/proc/self/status").read().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak_rss() -> None:
    """Restart the kernel's peak-RSS record, so the peak that follows is the step's alone."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def measure(setting: StepSetting) -> dict:
    """Time ``setting`` in this process; returns rates, ratios and peak memory."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(setting.threads)
    try:
        return _measure(setting)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(setting: StepSetting) -> dict:
    torch.manual_seed(0)
    device = torch.device(setting.device)
    cfg = TrainConfig(method=setting.method, model=EncoderConfig(backbone=setting.backbone), batch_size=setting.batch)
    module = SSLModule(cfg.validate()).to(device)
    optimiser = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=cfg.optim.lr)
    x1, x2 = (v.to(device) for v in _views(setting.batch, setting.seconds, seed=setting.batch))
    bf16 = setting.precision == "bf16-mixed"

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = module.pair_loss(x1, x2)
        loss.backward()
        optimiser.step()
        sync()

    def inference() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            module.encoder(x1)
            module.encoder(x2)
        sync()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    module.train()
    resident = _status_mb("VmRSS")
    _reset_peak_rss()
    train = time_call(step, setting.repeats, warmup=1)
    peak = _status_mb("VmHWM")
    memory = {"resident_before_mb": resident, "peak_rss_mb": peak, "step_peak_growth_mb": peak - resident}
    if device.type == "cuda":
        memory = {"peak_cuda_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    module.eval()
    infer = time_call(inference, setting.repeats, warmup=1)
    pairs_per_s = setting.batch / train["median_s"]
    baseline = setting.batch / infer["median_s"]
    return {
        **setting.__dict__,
        "parameters": count_parameters(module.encoder),
        "pairs_per_s": pairs_per_s,
        "crops_per_s": 2 * pairs_per_s,
        "step_s": train,
        "inference_pairs_per_s": baseline,
        "train_vs_inference": pairs_per_s / baseline,
        **memory,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def _in_fresh_process(setting: StepSetting) -> dict:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, setting).result()


def settings(quick: bool, cuda: bool) -> list[StepSetting]:
    """The configurations ``run`` times (quick: one tiny CPU step)."""
    demo = DemoSettings()
    if quick:
        return [StepSetting("demo_model_cpu", demo.method, demo.backbone, batch=2, seconds=0.5, threads=1, repeats=1)]
    out = [
        StepSetting("demo_model_cpu", demo.method, demo.backbone, batch=demo.batch_size, seconds=4.0),
        StepSetting("efficientnet_b0_cpu", "contrastive", "efficientnet_b0", batch=8, seconds=4.0),
    ]
    if cuda:
        out += [
            StepSetting(f"efficientnet_b0_cuda_{p}", "contrastive", "efficientnet_b0", batch=140, seconds=4.0,
                        device="cuda", precision=p, repeats=10)
            for p in ("32-true", "bf16-mixed")
        ]
    return out


def run(quick: bool) -> dict:
    rows = {s.name: _in_fresh_process(s) for s in settings(quick, torch.cuda.is_available())}
    gpu = {name: row for name, row in rows.items() if row["device"] == "cuda"}
    result = {
        "quick": quick,
        "baseline": "inference pass (eval, no grad) over the same 2 x batch crops, same process and settings",
        "steps": rows,
        "gpu": None,
    }
    if gpu:
        fp32, bf16 = gpu["efficientnet_b0_cuda_32-true"], gpu["efficientnet_b0_cuda_bf16-mixed"]
        result["gpu"] = {"device": fp32["device_name"], "bf16_speedup": bf16["pairs_per_s"] / fp32["pairs_per_s"]}
    return result
