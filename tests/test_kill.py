"""Kill tests: SIGKILL every resumable job at seeded random moments, resume it, and compare
with an uninterrupted run: same output, no duplicate, missing or mixed entries, no leftovers."""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from singerid.audio import write_audio
from singerid.data.signals import voiced_clip

pytestmark = pytest.mark.slow

KILLS = 3


def _run(args: list[str], kill_after: float | None = None) -> tuple[int, float]:
    """Run ``singerid ARGS`` in a new process; SIGKILL it after ``kill_after`` seconds. -> (exit code, seconds)."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "singerid", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        child.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGKILL)
        child.wait()
    err = child.stderr.read().decode()
    child.stderr.close()
    if kill_after is None:
        assert child.returncode == 0, err
    return child.returncode, time.perf_counter() - start


def _kill_points(seed: int, seconds: float) -> list[float]:
    """Seeded moments spread over a run that takes ``seconds`` (start-up included)."""
    return sorted(np.random.default_rng(seed).uniform(0.2 * seconds, 0.95 * seconds, KILLS).tolist())


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("songs")
    for i in range(12):
        write_audio(root / f"s{i % 4}" / f"take{i}.wav", voiced_clip(140 + 15 * i, 1.0 + 0.05 * i, 0.6 + 0.1 * (i % 4), i))
    return root


def test_embed_killed_and_resumed_equals_an_uninterrupted_run(songs, model_dir, tmp_path):
    from singerid.extract import load_embeddings

    def args(out: Path) -> list[str]:
        return ["embed", str(songs), "--model", str(model_dir), "--out", str(out), "--shard-size", "2"]

    _, seconds = _run(args(tmp_path / "straight" / "e.npz"))
    ids, want, _ = load_embeddings(tmp_path / "straight" / "e.npz")
    killed = []
    for k, delay in enumerate(_kill_points(0, seconds)):
        out = tmp_path / f"run{k}" / "e.npz"
        killed.append(_run(args(out), kill_after=delay)[0] == -signal.SIGKILL)
        _run(args(out))
        got_ids, got, _ = load_embeddings(out)
        assert got_ids == ids and len(set(got_ids)) == len(got_ids)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
        assert sorted(p.name for p in out.parent.iterdir()) == ["e.npz"]  # no parts, lock or temporary files
    assert any(killed)  # at least one run was really interrupted


def test_shard_killed_and_resumed_equals_an_uninterrupted_run(songs, tmp_path):
    def args(out: Path) -> list[str]:
        return ["shard", str(songs), "--out", str(out), "--max-files", "2"]

    _, seconds = _run(args(tmp_path / "straight"))
    want = {p.name: p.read_bytes() for p in sorted((tmp_path / "straight").iterdir())}
    assert sum(name.endswith(".tar") for name in want) == 6
    killed = []
    for k, delay in enumerate(_kill_points(1, seconds)):
        out = tmp_path / f"run{k}"
        killed.append(_run(args(out), kill_after=delay)[0] == -signal.SIGKILL)
        _run(args(out))
        assert {p.name: p.read_bytes() for p in sorted(out.iterdir())} == want
    assert any(killed)


TINY = [
    "model.backbone=cpu_small", "model.embedding_dim=32", "crop_seconds=1.0", "batch_size=4", "num_workers=0",
    "val_fraction=0.5", "optim.lr=3e-3", "augment.pitch_p=0.0", "augment.gain_p=0.0", "augment.mask_p=0.0",
    "augment.noise_p=0.5", "method=vicreg", "max_steps=6", "checkpoint_every=2",
]


def _losses(run: Path) -> dict[int, list[str]]:
    by_step: dict[int, list[str]] = {}
    with open(run / "logs" / "metrics.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row.get("train/loss"):
                by_step.setdefault(int(row["step"]), []).append(row["train/loss"])
    return by_step


def test_train_killed_and_resumed_equals_an_uninterrupted_run(songs, tmp_path):
    import torch

    from singerid.model.artifact import load_artifact

    shards = tmp_path / "shards"
    _run(["shard", str(songs), "--out", str(shards), "--max-files", "6"])

    def args(out: Path) -> list[str]:
        return ["train", "--config", "demo", "--data", str(shards), "--out", str(out), *[a for s in TINY for a in ("--set", s)]]

    straight = tmp_path / "straight"
    _, seconds = _run(args(straight))
    want = load_artifact(straight / "model").net.state_dict()
    want_losses = _losses(straight)
    assert sorted(want_losses) == list(range(6))
    killed = []
    for k, delay in enumerate(_kill_points(2, seconds)):
        out = tmp_path / f"run{k}"
        killed.append(_run(args(out), kill_after=delay)[0] == -signal.SIGKILL)
        if (out / "model").exists():  # finished before the kill
            shutil.rmtree(out / "model")
        resume = ["--resume"] if (out / "checkpoints" / "last.ckpt").is_file() else []
        _run(args(out) + resume)
        got = load_artifact(out / "model").net.state_dict()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)
        losses = _losses(out)
        assert all(len(v) == 1 for v in losses.values()), losses  # no step logged twice
        assert {s: float(v[0]) for s, v in losses.items()} == pytest.approx({s: float(v[0]) for s, v in want_losses.items()}, abs=1e-5)
    assert any(killed)
