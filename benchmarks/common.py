"""Shared pieces of the benchmark scripts: machine description, timing, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

RESULTS_DIR = Path(__file__).parent / "results"


def machine_info() -> dict:
    """What the numbers were measured on."""
    import numpy as np
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
    }


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict:
    """Median/min/max wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": repeats}


def write_result(name: str, result: dict, out_dir: Path = RESULTS_DIR) -> Path:
    """Write ``{"machine": ..., **result}`` to ``out_dir/<name>.json`` atomically."""
    from singerid.fileio import write_text

    payload = {"benchmark": name, "machine": machine_info(), **result}
    return write_text(out_dir / f"{name}.json", json.dumps(payload, indent=2, sort_keys=True) + "\n")


def linear_fit(sizes: list[int], seconds: list[float]) -> dict:
    """Least-squares ``seconds = intercept + slope * size`` with its R^2, and the log-log exponent
    (1 for cost proportional to size; well above 1 would mean super-linear growth)."""
    import numpy as np

    n = np.asarray(sizes, dtype=np.float64)
    t = np.asarray(seconds, dtype=np.float64)
    slope, intercept = np.polyfit(n, t, 1)
    residual = t - (intercept + slope * n)
    total = np.sum((t - t.mean()) ** 2)
    exponent = np.polyfit(np.log(n), np.log(t), 1)[0]
    return {
        "sizes": [int(s) for s in sizes],
        "seconds": [float(s) for s in seconds],
        "slope_s_per_item": float(slope),
        "intercept_s": float(intercept),
        "r2": float(1.0 - np.sum(residual**2) / total) if total > 0 else 1.0,
        "loglog_exponent": float(exponent),
        "per_item_s": [float(s / k) for s, k in zip(seconds, sizes)],
    }
