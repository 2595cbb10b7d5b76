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


def _committed(cat_dir) -> int:
    """Entries committed so far, read as another process would (0 before the catalogue exists)."""
    import sqlite3

    if not (cat_dir / "catalog.sqlite").exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{cat_dir / 'catalog.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT COUNT(*) FROM recordings").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


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
    # Enough files that five kills, each after a few more adds, never reach the end of the folder.
    files = [write_audio(folder / f"f{i:02d}.wav", voiced_clip(140.0 + 5 * i, 2.0, 0.5 + 0.03 * i, seed=i)) for i in range(60)]
    encoder = load_model(model_dir)
    reference = {str(f.absolute()): encoder.embed_file(f) for f in files}
    cat = tmp_path / "cat"
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(5):
        # Kill once a seeded random number (1-3) of further files is in, after a seeded random extra moment,
        # so the kill lands somewhere inside a later file's add.
        target = (counts[-1] if counts else 0) + int(rng.integers(1, 4))
        proc = subprocess.Popen(_add(folder, cat, model_dir), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 300 and _committed(cat) < target:
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.05)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        counts.append(_check(cat, reference))
    assert counts == sorted(counts)  # nothing completed is ever lost
    assert counts[-1] < len(files) and len(set(counts)) == len(counts), counts  # every kill landed mid-add, after progress
    done = subprocess.run(_add(folder, cat, model_dir), env=_env(), capture_output=True, text=True, check=True)
    assert f"{len(files)} entries" in done.stdout
    assert _check(cat, reference) == len(files)
