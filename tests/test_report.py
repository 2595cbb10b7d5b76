"""Report writing: results.json, report.md, the markdown table and the plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from singerid.errors import ConfigError
from singerid.eval.baselines.systems import System
from singerid.eval.evaluate import evaluate
from singerid.eval.report import map_2d, markdown_table, read_loss_log, write_report
from singerid.records import Segment

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def segments(n_singers: int = 6, songs: int = 2, per_song: int = 3) -> list[Segment]:
    return [
        Segment(f"/data/{i}/{j}.wav", f"singer{i}", f"song{j}", 4.0 * k, 4.0)
        for i in range(n_singers)
        for j in range(songs)
        for k in range(per_song)
    ]


def clustered(segs: list[Segment]) -> np.ndarray:
    """Singer centroids plus noise: separable, but not perfectly."""
    rng = np.random.default_rng(1)
    names = sorted({s.singer for s in segs})
    centres = rng.standard_normal((len(names), 8))
    return np.stack([centres[names.index(s.singer)] for s in segs]) + 0.6 * rng.standard_normal((len(segs), 8))


def noise(segs: list[Segment]) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((len(segs), 8))


@pytest.fixture(scope="module")
def evaluation():
    systems = [System("clustered", lambda s, p: clustered(s), "c1"), System("noise", lambda s, p: noise(s), "n1")]
    return evaluate(systems, segments(), n_boot=50, probe_folds=2, mnr_k=16, progress=False)


def test_report_files_and_json_roundtrip(tmp_path, evaluation):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss,val/eer\n0,0,2.5,\n0,1,2.0,\n0,1,,0.4\n0,2,1.5,\n", encoding="utf-8")
    report = write_report(tmp_path / "out", evaluation, training_log=log, map_method="pca")
    out = tmp_path / "out"
    assert report == out / "report.md"
    assert json.loads((out / "results.json").read_text()) == evaluation
    for name in ("det.png", "scores.png", "map.png", "loss.png"):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, name
    text = report.read_text()
    assert markdown_table(evaluation) in text
    for name in ("det.png", "scores.png", "map.png", "loss.png"):
        assert f"]({name})" in text
    assert "- condition: cross-song" in text
    assert "cohort_segments" not in text  # unset protocol entries are left out
    assert "(PCA)" in text


def test_report_without_arrays_writes_no_plots(tmp_path, evaluation):
    plain = json.loads(json.dumps(evaluation))
    write_report(tmp_path, plain)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "results.json"]
    assert "![" not in (tmp_path / "report.md").read_text()


def _result(eer, ci, dcf, mnr, ident, r1):
    return {
        "eer": {"value": eer, "threshold": 0.5, "ci95": ci},
        "min_dcf": {"0.01": {"value": dcf, "threshold": 0.7}, "0.05": {"value": dcf, "threshold": 0.6}},
        "mnr": {"value": mnr, "k": 512, "n_queries": 10},
        "retrieval": {"recall@1": r1, "recall@5": 1.0, "recall@10": 1.0, "map": 0.5},
        "identification": ident,
    }


def test_markdown_table_by_hand():
    results = {
        "systems": {
            "byol": _result(0.1234, [0.1, 0.15], 0.5, 0.25, {"top1_mean": 0.8, "top1_std": 0.05}, 0.9),
            "mfcc": _result(0.3, None, 1.0, 0.4, None, 0.25),
        }
    }
    lines = markdown_table(results).splitlines()
    assert lines[0] == "| System | EER % [95% CI] | minDCF (0.01) | MNR | Top-1 ID % (± std) | Recall@1 % |"
    assert lines[2] == "| byol | 12.3 [10.0, 15.0] | 0.500 | 0.250 | 80.0 ± 5.0 | 90.0 |"
    assert lines[3] == "| mfcc | 30.0 | 1.000 | 0.400 | – | 25.0 |"
    assert len(lines) == 4


def test_table_ranks_the_separable_system_first(evaluation):
    s = evaluation["systems"]
    assert s["clustered"]["eer"]["value"] < 0.2 < s["noise"]["eer"]["value"]
    assert s["clustered"]["identification"]["top1_mean"] > s["noise"]["identification"]["top1_mean"]


def test_read_loss_log_skips_rows_without_loss(tmp_path):
    folder = tmp_path / "run" / "logs"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text("step,train/loss,lr\n0,3.0,\n,,0.1\n5,2.25,\n", encoding="utf-8")
    steps, losses = read_loss_log(tmp_path / "run")
    assert steps.tolist() == [0.0, 5.0] and losses.tolist() == [3.0, 2.25]
    (folder / "metrics.csv").write_text("step,val/eer\n0,0.3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="train/loss"):
        read_loss_log(folder / "metrics.csv")
    with pytest.raises(ConfigError, match="not found"):
        read_loss_log(tmp_path / "nowhere.csv")


def test_map_2d_is_seeded_and_checks_its_input():
    z = np.random.default_rng(0).standard_normal((40, 6))
    a, method = map_2d(z, method="tsne", seed=3)
    b, _ = map_2d(z, method="tsne", seed=3)
    assert method == "t-SNE" and a.shape == (40, 2)
    np.testing.assert_array_equal(a, b)
    # PCA of points on a line in 6-D keeps the line: the second coordinate vanishes.
    line = np.outer(np.linspace(-1, 1, 10), np.arange(1, 7))
    p, _ = map_2d(line, method="pca")
    np.testing.assert_allclose(p[:, 1], 0.0, atol=1e-5)
    with pytest.raises(ConfigError, match="unknown map method"):
        map_2d(z, method="isomap")
    with pytest.raises(ConfigError, match="at least 3"):
        map_2d(z[:2])


def test_densify_fills_only_segments_where_both_rates_change():
    from singerid.eval.report import _densify

    far, frr = _densify(np.array([1.0, 0.5, 0.5, 0.0]), np.array([0.0, 0.0, 0.5, 1.0]), steps=4)
    # Steps (one rate fixed) keep their end point; the last, diagonal segment gets 4 points.
    np.testing.assert_allclose(far, [1.0, 0.5, 0.5, 0.375, 0.25, 0.125, 0.0])
    np.testing.assert_allclose(frr, [0.0, 0.0, 0.5, 0.625, 0.75, 0.875, 1.0])
