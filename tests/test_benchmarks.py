"""The benchmark scripts run on tiny inputs and write valid JSON (speed itself is never tested)."""

from __future__ import annotations

import json

import pytest

from benchmarks.run_all import main


@pytest.mark.parametrize("name", ["synth", "augment", "loading", "models", "embed"])
def test_benchmark_runs_quick_and_writes_json(tmp_path, name):
    assert main(["--quick", "--only", name, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["benchmark"] == name
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch"]
    assert len(result) > 2
