"""Inference paths for EfficientNet-B0 on the CPU: speed beside accuracy, against eager fp32.

Paths, each timed on 4 s clips at batch 1 and 64 with 1 and 2 threads:

- ``eager_fp32``: the artefact's PyTorch module under ``torch.no_grad()`` (the baseline),
- ``library``: ``load_model(...).embed`` (BatchNorm folded, channels-last, pieces of 4 windows),
- ``onnx_fp32``: ``singerid export --format onnx`` under ONNX Runtime (idle threads sleep),
- ``onnx_fp32_spin``: the same with ONNX Runtime's idle threads spinning,
- ``onnx_int8`` / ``onnx_int8_dynamic``: ``--precision int8`` / ``int8-dynamic`` (dynamic at
  batch 1 only: it runs too slowly to be worth minutes at batch 64),
- ``torchscript_bf16``: ``--precision bf16``, only where the CPU has native bf16 (else skipped,
  with the reason).

Every speed is ``x real time`` (seconds of audio per second of wall time) and a ratio to
``eager_fp32`` at the same batch and thread count in the same run. Beside each path: the
accuracy guard (:mod:`singerid.export.guard`): worst cosine to fp32 on held-out clips of the
built-in corpus and the EER change on their trials.

The network is randomly initialised (speed does not depend on the weights), with its BatchNorm
statistics set from one batch of corpus clips so activations have a realistic scale; its EER is
near chance, so the EER change mostly shows how near-ties move. ``omp_wait_policy`` times the
library path at 2 threads in two fresh processes, idle OpenMP threads spinning (ACTIVE) or
sleeping (PASSIVE); the gap grows with the load other processes put on the cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchmarks.bench_embed import _time_variant
from singerid.audio import SAMPLE_RATE
from singerid.export.formats import export_model, load_exported, parity_inputs
from singerid.export.guard import accuracy_guard, guard_clips
from singerid.export.precision import cpu_supports_bf16, reference_embedder
from singerid.infer import SingerEncoder
from singerid.model.artifact import Artifact, load_artifact, save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder

CLIP_SECONDS = 4.0
BN_SEED = 21
"""Corpus seed of the clips that set the BatchNorm statistics (the guard's clips use another)."""
ONNX_PATHS = {"onnx_fp32": "fp32", "onnx_int8": "int8", "onnx_int8_dynamic": "int8-dynamic"}
BATCH_ONE_ONLY = {"onnx_int8_dynamic"}


def bench_artifact(backbone: str, folder: Path, clips: int = 16) -> Artifact:
    """A randomly initialised encoder whose BatchNorm statistics come from ``clips`` corpus clips."""
    torch.manual_seed(0)
    cfg = EncoderConfig(backbone=backbone)
    net = build_encoder(cfg)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # cumulative average over the batch
    waves, _ = guard_clips(CLIP_SECONDS, seed=BN_SEED)
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(waves[:clips]))
    return load_artifact(save_artifact(folder / backbone, net.eval(), cfg))


def _files(art: Artifact, folder: Path) -> dict[str, Path | str]:
    """Export every file-based path once; a path that cannot be built maps to the reason."""
    out: dict[str, Path | str] = {}
    for name, precision in ONNX_PATHS.items():
        out[name] = folder / f"{name}.onnx"
        export_model(art, out[name], "onnx", verify=precision == "fp32", precision=precision, allow_failed_guard=True)
    if cpu_supports_bf16():
        out["torchscript_bf16"] = folder / "bf16.ts"
        export_model(art, out["torchscript_bf16"], "torchscript", precision="bf16", allow_failed_guard=True)
    else:
        out["torchscript_bf16"] = "skipped: this CPU has no native bf16 (torch.ops.mkldnn._is_mkldnn_bf16_supported())"
    return out


def _builders(art: Artifact, files: dict, threads: int) -> dict[str, Callable[[], Callable[[np.ndarray], object]]]:
    net = art.net

    def eager(x: np.ndarray):
        with torch.no_grad():
            return net(torch.from_numpy(x))

    builders = {
        "eager_fp32": lambda: eager,
        "library": lambda: (lambda x, enc=SingerEncoder(art): enc.embed(x, batch_size=len(x))),
        "onnx_fp32_spin": lambda: load_exported(files["onnx_fp32"], threads=threads, spin=True),
    }
    for name, path in files.items():
        if isinstance(path, Path):
            builders[name] = lambda path=path: load_exported(path, threads=threads)
    return builders


def _guards(art: Artifact, builders: dict) -> dict[str, dict]:
    clips, labels = guard_clips(art.window_seconds)
    reference = reference_embedder(art.net)
    out = {}
    for name, build in builders.items():
        fn = build()
        out[name] = accuracy_guard(reference, lambda x, fn=fn: np.asarray(fn(x)), clips, labels, name).to_dict()
        del fn
    return out


def bench_paths(backbone: str, folder: Path, batches: tuple[int, ...], threads: tuple[int, ...], repeats: int) -> dict:
    art = bench_artifact(backbone, folder)
    files = _files(art, folder)
    clip = int(CLIP_SECONDS * SAMPLE_RATE)
    inputs = {b: parity_inputs(clip, b, seed=b) for b in batches}
    saved = torch.get_num_threads()
    runs = []
    try:
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            builders = _builders(art, files, n_threads)
            for batch in batches:
                for name, build in builders.items():
                    if batch != batches[0] and name in BATCH_ONE_ONLY:
                        continue
                    # Built just before it is timed and dropped after (idle sessions steal cores).
                    stats = _time_variant(build, inputs[batch], repeats if batch == 1 else max(1, repeats // 2))
                    runs.append({"path": name, "batch": batch, "threads": n_threads,
                                 "x_real_time": batch * CLIP_SECONDS / stats["median_s"], **stats})
        torch.set_num_threads(max(threads))
        guards = _guards(art, _builders(art, files, max(threads)))
    finally:
        torch.set_num_threads(saved)
    for r in runs:
        base = next(b for b in runs if (b["path"], b["batch"], b["threads"]) == ("eager_fp32", r["batch"], r["threads"]))
        r["ratio_to_eager_fp32"] = r["x_real_time"] / base["x_real_time"]
        r["min_cosine_to_fp32"] = guards[r["path"]]["min_cosine"]
        r["eer_change_points"] = 100 * guards[r["path"]]["eer_change"]
        r["guard_passed"] = guards[r["path"]]["passed"]
    return {
        "baseline": "eager_fp32 at the same batch and threads, same run",
        "runs": runs,
        "guards": guards,
        "skipped": {k: v for k, v in files.items() if isinstance(v, str)},
    }


OMP_PROBE = """
import sys, time, torch
from singerid.infer import load_model
from singerid.export.formats import parity_inputs
enc = load_model(sys.argv[1]); torch.set_num_threads(2)
x = parity_inputs(int(4 * 44100), int(sys.argv[2]), seed=3)
enc.embed(x)
t = time.perf_counter()
for _ in range(3): enc.embed(x)
print(3 * len(x) * 4.0 / (time.perf_counter() - t))
"""


def omp_wait_policy(model: Path, batch: int) -> dict:
    """Library path, 2 threads, in fresh processes with each OpenMP wait policy: x real time."""
    out = {}
    for policy in ("ACTIVE", "PASSIVE"):
        env = {**os.environ, "OMP_WAIT_POLICY": policy}
        done = subprocess.run([sys.executable, "-c", OMP_PROBE, str(model), str(batch)], env=env,
                              capture_output=True, text=True, check=True)
        out[policy] = float(done.stdout.strip().splitlines()[-1])
    out["passive_over_active"] = out["PASSIVE"] / out["ACTIVE"]
    return out


def run(quick: bool = False) -> dict:
    backbone = "cpu_small" if quick else "efficientnet_b0"
    batches = (1, 2) if quick else (1, 64)
    threads = (1,) if quick else (1, 2)
    with tempfile.TemporaryDirectory() as tmp:
        result = bench_paths(backbone, Path(tmp), batches, threads, repeats=1 if quick else 4)
        result["omp_wait_policy"] = omp_wait_policy(Path(tmp) / backbone, 2 if quick else 16)
    load = os.getloadavg()
    return {"backbone": backbone, "clip_seconds": CLIP_SECONDS, "quick": quick,
            "load_average_1_5_15_min": list(load), **result,
            "note": "shared CPU: other processes ran during the measurement; compare ratios within this run"}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
