"""What the service tests share: three built-in voices, a small model that tells them apart, and a
real ``singerid serve`` process on a free loopback port.

The model is the seeded ``cpu_small`` network of the other tests with its last layer replaced by a
linear discriminant fitted on development recordings of the three voices (seeds 900-903), and a
calibrated threshold halfway between the lowest same-voice and the highest different-voice score of
those development recordings. Test recordings use other seeds, pitches and lengths.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from singerid.data.signals import voiced_clip

VOICES = {"alto": (180.0, 0.6), "tenor": (230.0, 1.3), "soprano": (290.0, 2.0)}
"""Voice name -> (f0 in Hz, spectral slope of :func:`voiced_clip`): a built-in singer each."""
DEV_SEEDS = range(900, 904)
SRC = Path(__file__).parents[1] / "src"


def voice(name: str, seed: int, seconds: float = 4.0) -> np.ndarray:
    """A recording of voice ``name``: its pitch within ±3 % and fresh noise, both drawn from ``seed``."""
    f0, slope = VOICES[name]
    rng = np.random.default_rng(seed)
    return voiced_clip(f0 * float(rng.uniform(0.97, 1.03)), seconds, slope, seed)


def write_voice(path: Path, name: str, seed: int, seconds: float = 4.0) -> Path:
    from singerid.audio import write_audio

    return write_audio(path, voice(name, seed, seconds))


def build_voice_model(path: Path) -> Path:
    """Save the small voice model described in the module docstring at ``path``."""
    import torch
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from singerid.infer import load_model
    from singerid.model.artifact import save_artifact, update_calibration
    from singerid.model.backbones import EncoderConfig, build_encoder
    from singerid.model.calibration import Calibration

    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small", embedding_dim=32)
    net = build_encoder(cfg).eval()
    pooled = {}
    hook = net.backbone.embed.register_forward_hook(lambda m, i, o: pooled.__setitem__("x", i[0].detach()))
    feats, labels, dev = [], [], []
    for label, name in enumerate(VOICES):
        for seed in DEV_SEEDS:
            x = voice(name, seed)
            dev.append((name, x))
            with torch.no_grad():
                net(torch.from_numpy(x[None]))
            feats.append(pooled["x"][0].numpy())
            labels.append(label)
    hook.remove()
    X = np.array(feats, np.float64)
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(X, labels)
    weight = np.zeros((cfg.embedding_dim, X.shape[1]), np.float32)
    weight[: len(VOICES) - 1] = lda.scalings_[:, : len(VOICES) - 1].T
    with torch.no_grad():
        net.backbone.embed.weight.copy_(torch.from_numpy(weight))
        net.backbone.embed.bias.copy_(torch.from_numpy(-(weight @ X.mean(0)).astype(np.float32)))
    save_artifact(path, net, cfg)
    enc = load_model(path)
    emb = {i: enc.embed(x)[0] for i, (_, x) in enumerate(dev)}
    same, diff = [], []
    for i in emb:
        for j in range(i + 1, len(dev)):
            (same if dev[i][0] == dev[j][0] else diff).append(float(emb[i] @ emb[j]))
    assert min(same) > max(diff), "the development voices must be separable for these tests"
    t = (min(same) + max(diff)) / 2
    update_calibration(path, Calibration(a=20.0, b=-20.0 * t, thresholds={"eer": t}).to_dict())
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


class Server:
    """A ``singerid serve`` subprocess (its own process group, so every process it started can be killed)."""

    def __init__(self, model: Path, catalog: Path, log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        cmd = [sys.executable, "-m", "singerid", "serve", "--model", str(model), "--catalog", str(catalog),
               "--port", str(self.port), "--workers", "1", "--threads", "1", *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)

    def wait_ready(self, timeout: float = 180.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"singerid serve exited with {self.proc.returncode}; see {self.log.name}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            time.sleep(0.3)
        raise RuntimeError(f"singerid serve did not answer within {timeout} s; see {self.log.name}")

    def kill(self) -> None:
        """SIGKILL the server process only (its inference processes must notice and exit by themselves)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.log.close()
