"""Start-up: whole-process wall time of a one-off ``singerid verify a.wav b.wav`` (two 4 s files)
with the demo model (cpu_small) and an EfficientNet-B0 model, and of ``python -c "import singerid"``.

Each command runs ``repeats`` times after one warm-up run (files in the page cache); min and
median wall seconds, and CPU seconds (user + system) from the operating system's accounting of
the finished child (``os.wait4``). Peak memory is left out: a child started from this process
(which holds torch) inherits its high-water mark until ``exec``. Beside them, one process per model
times the phases separately: ``import singerid``, ``import torch``, the rest of the inference
imports, ``load_model`` (reading weights, building and folding the network) and the verify call.

Models are randomly initialised artefacts (start-up does not depend on the weights). The
commands run as ``python -m singerid`` under this interpreter, with the environment of a normal
install (:func:`child_env`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from singerid.audio import SAMPLE_RATE, write_audio
from singerid.export.formats import parity_inputs
from singerid.model.artifact import save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder

CLIP_SECONDS = 4.0


def child_env() -> dict[str, str]:
    """The environment of a normal install: Python caches compiled modules (``PYTHONDONTWRITEBYTECODE``
    is dropped, so the warm-up run writes the caches the measured runs use), and OpenMP threads
    sleep when idle, as the command line sets."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_process(cmd: list[str], repeats: int, warmup: int = 1) -> dict:
    """Wall and CPU figures of ``cmd`` over ``repeats`` runs after ``warmup`` runs."""
    walls, cpus = [], []
    for i in range(warmup + repeats):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.read().decode()[-500:]}")
        proc.stderr.close()
        if i >= warmup:
            walls.append(wall)
            cpus.append(usage.ru_utime + usage.ru_stime)
    return {
        "wall_s": {"min": min(walls), "median": statistics.median(walls), "max": max(walls)},
        "cpu_s_median": statistics.median(cpus),
        "repeats": repeats,
    }


PHASES = """
import json, sys, time
t0 = time.perf_counter()
import singerid
t1 = time.perf_counter()
import torch
t2 = time.perf_counter()
import singerid.infer
t3 = time.perf_counter()
enc = singerid.load_model(sys.argv[1])
t4 = time.perf_counter()
enc.verify(sys.argv[2], sys.argv[3], threshold=0.5)
t5 = time.perf_counter()
print(json.dumps({"import_singerid_s": t1 - t0, "import_torch_s": t2 - t1, "import_inference_s": t3 - t2,
                  "load_model_s": t4 - t3, "verify_call_s": t5 - t4}))
"""


def phases(model: Path, a: Path, b: Path, repeats: int) -> dict:
    """Median seconds of each start-up phase over ``repeats`` fresh processes."""
    rows = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", PHASES, str(model), str(a), str(b)],
                             capture_output=True, text=True, check=True, env=child_env())
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def _inputs(folder: Path) -> tuple[Path, Path]:
    waves = parity_inputs(int(CLIP_SECONDS * SAMPLE_RATE), 2, seed=7)
    paths = folder / "a.wav", folder / "b.wav"
    for path, wave in zip(paths, waves):
        write_audio(path, np.asarray(wave), SAMPLE_RATE)
    return paths


def run(quick: bool = False) -> dict:
    repeats = 1 if quick else 5
    backbones = ("cpu_small",) if quick else ("cpu_small", "efficientnet_b0")
    result: dict = {"clip_seconds": CLIP_SECONDS, "quick": quick, "bytecode_cache": True, "commands": {}, "phases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        a, b = _inputs(folder)
        result["commands"]["python -c 'import singerid'"] = run_process([sys.executable, "-c", "import singerid"], repeats)
        for backbone in backbones:
            torch.manual_seed(0)
            cfg = EncoderConfig(backbone=backbone)
            model = save_artifact(folder / backbone, build_encoder(cfg), cfg)
            cmd = [sys.executable, "-m", "singerid", "verify", str(a), str(b), "--model", str(model), "--threshold", "0.5"]
            result["commands"][f"singerid verify ({backbone})"] = run_process(cmd, repeats)
            result["phases"][backbone] = phases(model, a, b, max(1, repeats // 2))
    result["load_average_1_5_15_min"] = list(os.getloadavg())
    result["note"] = "the load average says how busy the CPU was during the measurement"
    return result
