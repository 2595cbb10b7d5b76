"""Peak memory of embedding a long file: it must not grow with the file's length.

Each case runs in a fresh process (so peaks do not mix) that loads a small model
(cpu_small, random weights: memory does not depend on them) and then either

- ``model_only``: nothing more (the floor every case shares),
- ``one_batch``: embeds one batch of 32 windows held in memory (the baseline),
- ``file_<N>min``: ``SingerEncoder.embed_files`` on a generated N-minute 16-bit WAV
  (files over ``singerid.audio.STREAM_SECONDS`` are read window by window from disk).

``peak_rss_mb`` is the process's maximum resident set (``ru_maxrss``); ``above_model_mb``
subtracts ``model_only``; ``ratio_to_one_batch`` divides that by the baseline's. A 60-minute
file held whole would add its decoded samples (about 635 MB at 44.1 kHz float32) on top.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BATCH = 32
CHILD = r"""
import json, resource, sys
import numpy as np, torch
torch.manual_seed(0)
from singerid.model.artifact import save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.infer import load_model
case, folder = sys.argv[1], sys.argv[2]
config = EncoderConfig(backbone="cpu_small", embedding_dim=32)
encoder = load_model(save_artifact(folder + "/model", build_encoder(config).eval(), config))
if case == "one_batch":
    windows = np.random.default_rng(0).standard_normal((BATCH, int(encoder.window * 44100))).astype(np.float32) * 0.1
    encoder.embed(windows, batch_size=BATCH)
elif case != "model_only":
    encoder.embed_files([case], batch_size=BATCH, progress=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""".replace("BATCH", str(BATCH))


def _write_song(path: Path, minutes: float, seed: int = 0) -> Path:
    """A seeded harmonic tone with vibrato, written block by block (16-bit PCM, 44.1 kHz)."""
    import soundfile as sf

    rate, block = 44100, 44100 * 10
    total = int(minutes * 60 * rate)
    rng = np.random.default_rng(seed)
    with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as fh:
        for start in range(0, total, block):
            t = np.arange(start, min(total, start + block)) / rate
            f0 = 220 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
            phase = 2 * np.pi * np.cumsum(f0) / rate
            x = sum(np.sin(k * phase) / k for k in range(1, 6)) * 0.2 + 0.01 * rng.standard_normal(len(t))
            fh.write(x.astype(np.float32))
    return path


def _peak(case: str, folder: str) -> float:
    done = subprocess.run([sys.executable, "-c", CHILD, case, folder], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"])


def run(quick: bool = False) -> dict:
    minutes = (1.0, 11.0) if quick else (1.0, 60.0)
    with tempfile.TemporaryDirectory() as tmp:
        files = {f"file_{m:g}min": str(_write_song(Path(tmp) / f"song-{m:g}.wav", m)) for m in minutes}
        peaks = {"model_only": _peak("model_only", tmp), "one_batch": _peak("one_batch", tmp)}
        peaks.update({name: _peak(path, tmp) for name, path in files.items()})
    floor = peaks["model_only"]
    batch = max(peaks["one_batch"] - floor, 1e-9)
    cases = {
        name: {"peak_rss_mb": round(p, 1), "above_model_mb": round(p - floor, 1), "ratio_to_one_batch": round((p - floor) / batch, 2)}
        for name, p in peaks.items()
    }
    return {"batch_windows": BATCH, "quick": quick, "cases": cases}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
