"""The benchmark scripts run on tiny inputs and write valid JSON (speed itself is never tested)."""

from __future__ import annotations

import json

import pytest

from benchmarks.common import linear_fit
from benchmarks.run_all import main


@pytest.mark.slow
@pytest.mark.parametrize("name", ["synth", "augment", "loading", "models", "embed", "scaling", "train", "paths", "startup", "catalog", "serve", "memory"])
def test_benchmark_runs_quick_and_writes_json(tmp_path, name):
    assert main(["--quick", "--only", name, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / f"{name}.json").read_text())
    assert result["benchmark"] == name
    assert result["machine"]["cores"] >= 1 and result["machine"]["torch"]
    assert len(result) > 2


def test_linear_fit_recovers_a_known_line():
    fit = linear_fit([10, 30, 100], [2.0 + 0.5 * n for n in (10, 30, 100)])
    assert abs(fit["slope_s_per_item"] - 0.5) < 1e-12 and abs(fit["intercept_s"] - 2.0) < 1e-9
    assert abs(fit["r2"] - 1.0) < 1e-12
    assert fit["per_item_s"] == pytest.approx([0.7, 2.0 / 30 + 0.5, 0.52], rel=1e-12)


def test_linear_fit_exponent_tells_linear_from_quadratic():
    sizes = [100, 300, 1000]
    assert abs(linear_fit(sizes, [0.01 * n for n in sizes])["loglog_exponent"] - 1.0) < 1e-9
    quadratic = linear_fit(sizes, [1e-4 * n * n for n in sizes])
    assert abs(quadratic["loglog_exponent"] - 2.0) < 1e-9 and quadratic["r2"] < 1.0


def test_train_benchmark_times_the_paper_batch_on_a_gpu_in_both_precisions():
    from benchmarks.bench_train import settings

    gpu = [s for s in settings(quick=False, cuda=True) if s.device == "cuda"]
    assert {(s.backbone, s.batch, s.precision) for s in gpu} == {
        ("efficientnet_b0", 140, "32-true"), ("efficientnet_b0", 140, "bf16-mixed")
    }
    assert all(s.device == "cpu" for s in settings(quick=False, cuda=False))


def test_train_step_measure_runs_bf16_autocast_and_counts_pairs():
    # The CUDA path's bf16 autocast, exercised on the CPU (no GPU needed).
    from benchmarks.bench_train import StepSetting, measure

    row = measure(StepSetting("t", "vicreg", "cpu_small", batch=3, seconds=0.25, precision="bf16-mixed", threads=1, repeats=1))
    assert row["pairs_per_s"] == pytest.approx(3 / row["step_s"]["median_s"])
    assert row["crops_per_s"] == pytest.approx(2 * row["pairs_per_s"])
    assert row["train_vs_inference"] == pytest.approx(row["pairs_per_s"] / row["inference_pairs_per_s"])
    assert row["peak_rss_mb"] == pytest.approx(row["resident_before_mb"] + row["step_peak_growth_mb"])
    assert row["step_peak_growth_mb"] > 0
