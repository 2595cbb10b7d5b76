"""``evaluate --cluster``: clustering numbers per system in the results and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from singerid.eval.baselines.systems import System
from singerid.eval.pipeline import EvaluationSettings, run_evaluation
from singerid.records import Segment


def _segments(root) -> list[Segment]:
    """Segments of placeholder files (the systems here never read audio; the embedding cache stats the files)."""
    out = []
    for i in range(8):
        for j in range(3):
            path = root / f"s{i:02d}" / f"song{j}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"placeholder")
            out += [Segment(str(path), f"s{i:02d}", f"song{j}", 4.0 * k, 4.0) for k in range(2)]
    return out


def _oracle(segs, progress):
    names = sorted({s.singer for s in segs})
    hot = np.eye(len(names), dtype=np.float32)[[names.index(s.singer) for s in segs]]
    return np.hstack([hot, 0.01 * np.random.default_rng(7).standard_normal((len(segs), 4))])


def _noise(segs, progress):
    return np.random.default_rng(3).standard_normal((len(segs), 12))


@pytest.mark.slow
def test_evaluate_reports_clustering_for_every_system(tmp_path):
    systems = [System("oracle", _oracle, "oracle-v1"), System("noise", _noise, "noise-v1")]
    settings = EvaluationSettings(n_boot=0, probe_folds=0, mnr_k=8, map_method="pca", cluster=True, cache_dir=tmp_path / "cache")
    run = run_evaluation(systems, _segments(tmp_path / "data"), tmp_path / "out", settings, progress=False)
    clustering = json.loads((tmp_path / "out" / "results.json").read_text())["clustering"]
    assert set(clustering) == {"oracle", "noise"}
    oracle = clustering["oracle"]
    assert oracle["ari"] == pytest.approx(1.0) and oracle["n_clusters"] == 8 and oracle["method"] == "silhouette"
    assert oracle["best_cut"]["ari"] == pytest.approx(1.0)
    assert clustering["noise"]["best_cut"]["ari"] < 0.3
    assert "## Clustering by singer" in (tmp_path / "out" / "report.md").read_text()
    assert "| oracle | silhouette | 8 | 1.000 |" in run.summary()


def test_without_the_option_there_is_no_clustering(tmp_path):
    settings = EvaluationSettings(n_boot=0, probe_folds=0, mnr_k=8, map_method="pca", cache_dir=tmp_path / "cache")
    run = run_evaluation([System("oracle", _oracle, "oracle-v1")], _segments(tmp_path / "data"), tmp_path / "out", settings, progress=False)
    assert "clustering" not in run.evaluation
