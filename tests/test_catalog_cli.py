"""The catalogue on the command line: add/search/remove/info/export, enroll/identify with a catalogue, cluster."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from singerid.catalog import Catalog
from singerid.cli import main

from conftest import untrained_model

pytestmark = pytest.mark.slow  # each test embeds a corpus several times


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained model that still tells the tones apart: pooled log-mel band statistics give
    each tone its own direction (without them every recording scores about 1 against every other,
    and the order of the search hits would be decided by rounding)."""
    return untrained_model(tmp_path_factory.mktemp("model"), input_stats=True)


def _run(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr().out


def test_add_search_remove_info_export(tmp_path, capsys, model_dir, tone_corpus):
    cat = tmp_path / "cat"
    out = _run(capsys, "catalog", "add", tone_corpus, "--layout", "folder", "--catalog", cat, "--model", model_dir, "--no-progress")
    assert "8 added" in out
    assert "0 added" in _run(capsys, "catalog", "add", tone_corpus, "--catalog", cat, "--model", model_dir, "--no-progress")
    info = json.loads(_run(capsys, "catalog", "info", "--catalog", cat, "--json"))
    assert info["count"] == 8 and info["singer_counts"] == {f"singer{s}": 2 for s in range(4)}
    query = tone_corpus / "singer2" / "song1.wav"
    hits = json.loads(_run(capsys, "catalog", "search", query, "--catalog", cat, "--model", model_dir, "-k", "3", "--json"))["hits"]
    assert hits[0]["path"] == str(query.absolute()) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5) and len(hits) == 3
    assert hits[0]["threshold"] is None  # an uncalibrated model has no threshold to show
    for suffix in (".npz", ".parquet"):
        _run(capsys, "catalog", "export", "--catalog", cat, "--out", tmp_path / f"v{suffix}")
    with Catalog.open(cat) as c:
        ids, vecs = c.vectors()
    with np.load(tmp_path / "v.npz") as data:
        np.testing.assert_array_equal(data["ids"], ids)
        np.testing.assert_array_equal(data["vectors"], vecs)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "v.parquet")
    np.testing.assert_array_equal(np.stack(table.column("vector").to_numpy(zero_copy_only=False)), vecs)
    assert table.column("singer").to_pylist() == [f"singer{i // 2}" for i in range(8)]
    assert "removed 2 entries; 6 left" in _run(capsys, "catalog", "remove", "--catalog", cat, "--singer", "singer0")
    assert main(["catalog", "export", "--catalog", str(cat), "--out", str(tmp_path / "v.csv")]) != 0
    assert "export to a .npz or .parquet file" in capsys.readouterr().err


def test_identify_with_a_catalogue_ranks_like_a_profiles_file(tmp_path, capsys, model_dir, tone_corpus):
    cat, profiles = tmp_path / "cat", tmp_path / "p.npz"
    for s in range(4):
        clips = sorted((tone_corpus / f"singer{s}").glob("*.wav"))
        _run(capsys, "enroll", f"singer{s}", *clips, "--model", model_dir, "--catalog", cat)
        _run(capsys, "enroll", f"singer{s}", *clips, "--model", model_dir, "--profiles", profiles)
    query = tone_corpus / "singer1" / "song0.wav"
    common = ["identify", query, "--model", model_dir, "--threshold", "0.5", "--json", "--top", "4"]
    from_catalog = json.loads(_run(capsys, *common, "--catalog", cat))
    from_profiles = json.loads(_run(capsys, *common, "--profiles", profiles))
    assert [m["name"] for m in from_catalog["matches"]] == [m["name"] for m in from_profiles["matches"]]
    np.testing.assert_allclose([m["score"] for m in from_catalog["matches"]], [m["score"] for m in from_profiles["matches"]], atol=1e-5)
    assert from_catalog["singer"] == from_profiles["singer"] and from_catalog["threshold"] == 0.5


def test_cluster_a_labelled_folder_and_a_catalogue(tmp_path, capsys, model_dir, tone_corpus):
    out = _run(capsys, "cluster", tone_corpus, "--system", "mfcc", "--out", tmp_path / "c", "--n-clusters", "4", "--no-progress")
    assert "8 recordings in 4 clusters" in out
    rows = list(csv.DictReader(open(tmp_path / "c" / "clusters.csv")))
    assert len(rows) == 8 and {int(r["cluster"]) for r in rows} == {0, 1, 2, 3}
    assert all(0.0 <= float(r["confidence"]) <= 1.0 for r in rows)
    result = json.loads((tmp_path / "c" / "clustering.json").read_text())
    assert set(result["scores"]) == {"mfcc"} and set(result["cuts"]["mfcc"]) == {"silhouette", "gap"}
    assert (tmp_path / "c" / "clusters.png").is_file() and "Against the singer labels" in (tmp_path / "c" / "report.md").read_text()
    cat = tmp_path / "cat"
    _run(capsys, "catalog", "add", tone_corpus, "--layout", "folder", "--catalog", cat, "--model", model_dir, "--no-progress")
    _run(capsys, "cluster", "--catalog", cat, "--out", tmp_path / "cc", "--no-progress")
    result = json.loads((tmp_path / "cc" / "clustering.json").read_text())
    assert result["method"] == "silhouette" and set(result["scores"]) == {result["system"], "mfcc"}
    assert sum(result["sizes"]) == 8
