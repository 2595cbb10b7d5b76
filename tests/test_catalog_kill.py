"""Kill test: `singerid catalog add` killed (SIGKILL) at seeded random moments keeps every completed add
and nothing half-added; re-running completes the catalogue without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from singerid.audio import write_audio
from singerid.catalog import Catalog
from singerid.data.signals import voiced_clip
from singerid.infer import load_model

pytestmark = pytest.mark.slow


def _add(folder, cat, model) -> list[str]:
    return [sys.executable, "-m", "singerid", "catalog", "add", str(folder), "--catalog", str(cat), "--model", str(model), "--no-progress"]


def _env() -> dict:
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    return {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _check(cat_dir, reference: dict[str, np.ndarray]) -> int:
    """The catalogue opens; `catalog info` agrees; every entry is whole (its vector is its file's) and unique."""
    info = json.loads(subprocess.run([sys.executable, "-m", "singerid", "catalog", "info", "--catalog", str(cat_dir), "--json", "--list"],
                                     capture_output=True, text=True, check=True, env=_env()).stdout)
    with Catalog.open(cat_dir, readonly=True) as cat:
        records = cat.records()
        ids, vectors = cat.vectors()
    assert info["count"] == len(records) == len(ids)
    paths = [r.path for r in records]
    assert len(set(paths)) == len(paths) and len({r.content_hash for r in records}) == len(records)
    for path, vec in zip(paths, vectors):
        np.testing.assert_allclose(vec, reference[path], atol=1e-4)
    return len(records)


def test_killed_adds_leave_only_completed_entries(tmp_path, model_dir):
    folder = tmp_path / "audio"
    files = [write_audio(folder / f"f{i:02d}.wav", voiced_clip(140.0 + 15 * i, 2.0, 0.5 + 0.1 * i, seed=i)) for i in range(16)]
    encoder = load_model(model_dir)
    reference = {str(f.absolute()): encoder.embed_file(f) for f in files}
    cat = tmp_path / "cat"
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(5):
        proc = subprocess.Popen(_add(folder, cat, model_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Wait until the catalogue exists, then kill after a seeded random delay.
        start = time.monotonic()
        while not (cat / "catalog.sqlite").exists() and proc.poll() is None and time.monotonic() - start < 120:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 3.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(_check(cat, reference))
    assert counts == sorted(counts)  # nothing completed is ever lost
    assert counts[-1] < len(files) or counts[0] < len(files)  # at least one kill landed mid-add
    done = subprocess.run(_add(folder, cat, model_dir), env=_env(), capture_output=True, text=True, check=True)
    assert f"{len(files)} entries" in done.stdout
    assert _check(cat, reference) == len(files)
