"""Wall time of the main job, `singerid demo`, end to end (corpus, pitch banks, training, evaluation).

The acceptance target is 15 minutes on a 2-core CPU for the full demo. The baseline for the
ratio is the time to run `singerid --version` in the same way (interpreter and import start-up).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(quick: bool) -> dict:
    cli = [sys.executable, "-m", "singerid"]
    baseline = _timed([*cli, "--version"])
    with tempfile.TemporaryDirectory(prefix="singerid-bench-demo-") as tmp:
        argv = [*cli, "demo", "--out", tmp, "--no-progress", *(["--quick"] if quick else [])]
        seconds = _timed(argv)
        results = json.loads((Path(tmp) / "latest" / "results.json").read_text())
    eers = {name: r["eer"]["value"] for name, r in results["systems"].items()}
    return {
        "mode": "quick" if quick else "full",
        "demo_wall_s": seconds,
        "demo_wall_min": seconds / 60.0,
        "target_min": 15.0,
        "baseline": "singerid --version (start-up)",
        "baseline_wall_s": baseline,
        "ratio_to_baseline": seconds / baseline,
        "eer": eers,
    }
