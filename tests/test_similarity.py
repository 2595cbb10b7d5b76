"""Singer similarity of generated audio to references: per-file cosines, summary, modes, calibration."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from scipy.special import expit

import singerid
from singerid.cli import main
from singerid.errors import DatasetError
from singerid.infer import load_model
from singerid.model.artifact import save_artifact, update_calibration
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.vectors import l2_normalize

CALIBRATION = {"thresholds": {"eer": 0.5}, "logistic": {"a": 8.0, "b": -4.0, "p_target": 0.5}, "fitted_on": {}}


@pytest.fixture(scope="module")
def model(tmp_path_factory, tone_corpus):
    """Random weights with BatchNorm statistics measured on the corpus: at the default statistics
    every clip gets nearly the same direction, and cosines would all read 1.0."""
    from singerid.audio import load_audio

    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small", embedding_dim=32)
    net = build_encoder(cfg).train()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None  # a plain average over the one batch
    clips = np.stack([load_audio(f)[:44100] for f in sorted(tone_corpus.rglob("*.wav"))])
    with torch.no_grad():
        net(torch.from_numpy(clips))
    return save_artifact(tmp_path_factory.mktemp("model") / "model", net.eval(), cfg)


@pytest.fixture
def split(tone_corpus, tmp_path):
    """References: song0 of each singer; generated: song1 of singers 0 and 1, in singer folders."""
    ref, gen = tmp_path / "ref", tmp_path / "gen"
    for s in range(4):
        (ref / f"singer{s}").mkdir(parents=True)
        shutil.copy(tone_corpus / f"singer{s}" / "song0.wav", ref / f"singer{s}" / "song0.wav")
    for s in range(2):
        (gen / f"singer{s}").mkdir(parents=True)
        shutil.copy(tone_corpus / f"singer{s}" / "song1.wav", gen / f"singer{s}" / "take.wav")
    return ref, gen


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_per_singer_scores_equal_a_direct_cosine(split, model, tmp_path):
    ref, gen = split
    result = singerid.similarity(ref, gen, model, tmp_path / "out", n_boot=200, progress=False)
    enc = load_model(model)
    for s in range(2):
        centroid = l2_normalize(enc.embed_files([ref / f"singer{s}" / "song0.wav"], progress=False).mean(0))
        direct = float(enc.embed_files([gen / f"singer{s}" / "take.wav"], progress=False)[0] @ centroid)
        row = result.rows[s]
        assert row["singer"] == f"singer{s}" and row["generated"].endswith(f"singer{s}/take.wav")
        assert row["cosine"] == pytest.approx(direct, abs=1e-6) and direct < 0.999
    written = _rows(tmp_path / "out" / "similarity.csv")
    assert [float(r["cosine"]) for r in written] == pytest.approx([r["cosine"] for r in result.rows], abs=1e-9)
    summary = json.loads((tmp_path / "out" / "similarity.json").read_text())
    scores = np.array([r["cosine"] for r in result.rows])
    assert summary["mean"] == pytest.approx(scores.mean()) and summary["median"] == pytest.approx(np.median(scores))
    assert scores.min() <= summary["ci95"][0] <= summary["mean"] <= summary["ci95"][1] <= scores.max()
    assert summary["threshold"] is None and summary["share_above"] is None and "p_same" not in written[0]


def test_flat_folders_compare_with_the_mean_of_all_references(split, model, tmp_path):
    ref, gen = split
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(gen / "singer0" / "take.wav", flat / "a.wav")
    result = singerid.similarity(ref, flat, model, tmp_path / "out", n_boot=0, progress=False)
    enc = load_model(model)
    refs = sorted(ref.rglob("*.wav"))
    centroid = l2_normalize(enc.embed_files(refs, progress=False).mean(0))
    assert result.rows[0]["cosine"] == pytest.approx(float(enc.embed_files([flat / "a.wav"], progress=False)[0] @ centroid), abs=1e-6)
    assert result.summary["mode"] == "mean of all references" and result.summary["ci95"] is None


def test_pairs_and_calibration(split, model, tmp_path, capsys):
    ref, gen = split
    calibrated = tmp_path / "calibrated"
    shutil.copytree(model, calibrated)
    update_calibration(calibrated, CALIBRATION)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("generated,reference\nsinger0/take.wav,singer0/song0.wav\nsinger1/take.wav,singer0/song0.wav\n")
    args = ["similarity", "--pairs", str(pairs), "--generated", str(gen), "--reference", str(ref), "--model", str(calibrated)]
    assert main([*args, "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "at or above the threshold (0.500, calibrated EER threshold for these lengths)" in line
    rows = _rows(tmp_path / "out" / "similarity.csv")
    enc = load_model(calibrated)
    e = enc.embed_files([gen / "singer0" / "take.wav", gen / "singer1" / "take.wav", ref / "singer0" / "song0.wav"], progress=False)
    for row, g in zip(rows, e[:2]):
        cos = float(g @ e[2])
        assert float(row["cosine"]) == pytest.approx(cos, abs=1e-6)
        assert float(row["p_same"]) == pytest.approx(float(expit(8.0 * cos - 4.0)), abs=1e-6)
    summary = json.loads((tmp_path / "out" / "similarity.json").read_text())
    assert summary["share_above"] == np.mean([float(r["cosine"]) >= 0.5 for r in rows])


def test_calibrated_thresholds_follow_the_lengths_compared(split, model, tmp_path):
    from singerid.audio import audio_info
    from singerid.model.calibration import Calibration, DurationTerms

    ref, gen = split
    calibrated = tmp_path / "calibrated"
    shutil.copytree(model, calibrated)
    cal = Calibration(8.0, -4.0, duration=DurationTerms(c=-2.0, e=0.0, ref_seconds=4.0, lo=-3.0, hi=3.0), llr_thresholds={"eer": 0.0})
    update_calibration(calibrated, cal.to_dict())
    result = singerid.similarity(ref, gen, calibrated, tmp_path / "out", n_boot=0, progress=False)
    for row in result.rows:
        singer = row["singer"]
        total_ref = sum(audio_info(f).duration for f in (ref / singer).glob("*.wav"))
        lengths = (audio_info(row["generated"]).duration, total_ref)
        assert row["threshold"] == pytest.approx(cal.threshold("eer", lengths))
        assert row["p_same"] == pytest.approx(float(cal.probability([row["cosine"]], [lengths])[0]))
    assert result.summary["share_above"] == np.mean([r["cosine"] >= r["threshold"] for r in result.rows])


def test_a_generated_singer_without_references_is_an_error(split, model, tmp_path):
    ref, gen = split
    (gen / "singer9").mkdir()
    shutil.copy(gen / "singer0" / "take.wav", gen / "singer9" / "x.wav")
    with pytest.raises(DatasetError, match="singer9"):
        singerid.similarity(ref, gen, model, tmp_path / "out", progress=False)


@pytest.mark.slow
def test_a_model_that_tells_singers_apart_scores_the_reference_singer_above_other_singers(tmp_path, voice_model):
    """Generated files of each singer against that singer's references score higher, on average, than
    other singers' files put in that singer's place (a model fitted to tell the test voices apart)."""
    from serve_helpers import VOICES, write_voice

    singers = sorted(VOICES)
    ref, own, other = (tmp_path / n for n in ("ref", "own", "other"))
    for i, name in enumerate(singers):
        for seed in (1, 2):
            write_voice(ref / name / f"ref{seed}.wav", name, 10 * i + seed)
        write_voice(own / name / "gen.wav", name, 10 * i + 5, seconds=3.0)
        write_voice(other / name / "gen.wav", singers[(i + 1) % len(singers)], 10 * i + 6, seconds=3.0)
    enc = load_model(voice_model)
    same = singerid.similarity(ref, own, enc, tmp_path / "same", progress=False).summary["mean"]
    swapped = singerid.similarity(ref, other, enc, tmp_path / "swapped", progress=False).summary["mean"]
    assert same > swapped
