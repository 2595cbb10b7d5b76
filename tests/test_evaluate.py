"""Evaluation pipeline: systems, metric plumbing, the embedding cache, and `singerid evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from singerid.audio import SAMPLE_RATE, write_audio
from singerid.cli import main
from singerid.data.signals import formant_voice
from singerid.errors import ConfigError, DatasetError, TrialsError
from singerid.eval.baselines.systems import System, bandlimit, make_system, standardize
from singerid.eval.cache import cache_key
from singerid.eval.evaluate import evaluate
from singerid.eval.metrics import eer
from singerid.eval.trials import Trial, read_trials, write_trials
from singerid.model.artifact import load_artifact, save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.records import Segment, write_segments

# --- corpora -----------------------------------------------------------------------------------

SINGERS = {  # f0 (Hz) and formant centres (Hz): each singer's own spectral envelope
    "alto": (300.0, (700.0, 1200.0, 2600.0)),
    "bass": (110.0, (400.0, 800.0, 2400.0)),
    "sopr": (420.0, (900.0, 2200.0, 3500.0)),
    "tenor": (180.0, (500.0, 1700.0, 3000.0)),
}


def write_corpus(root: Path, songs: int = 2, seconds: float = 2.0, seed: int = 0) -> Path:
    """``root/<singer>/song<j>.wav``; song ``j`` is the singer's voice ``j`` semitones up."""
    rng = np.random.default_rng(seed)
    for name, (f0, formants) in SINGERS.items():
        for j in range(songs):
            write_audio(root / name / f"song{j}.wav", formant_voice(f0 * 2 ** (j / 12), formants, seconds, rng))
    return root


def corpus_segments(root: Path, seconds: float = 1.0) -> list[Segment]:
    out = []
    for wav in sorted(root.glob("*/*.wav")):
        n = int(sf.info(str(wav)).frames // int(seconds * SAMPLE_RATE))
        out += [Segment(str(wav), wav.parent.name, wav.stem, k * seconds, seconds) for k in range(n)]
    return out


def fake_segments(n_singers: int = 20, songs: int = 3, per_song: int = 4) -> list[Segment]:
    """Segments of files that need not exist (for systems that never read audio)."""
    return [
        Segment(f"/data/s{i:02d}/song{j}.wav", f"s{i:02d}", f"song{j}", 4.0 * k, 4.0)
        for i in range(n_singers)
        for j in range(songs)
        for k in range(per_song)
    ]


def counting_system(name: str, fn, fingerprint: str | None = None) -> System:
    """A :class:`System` computing ``fn(segments)`` that counts its calls in ``.calls``."""
    calls: list[int] = []

    def embed(segs, progress):
        calls.append(len(segs))
        return fn(segs)

    system = System(name, embed, fingerprint or f"{name}-v1")
    system.calls = calls
    return system


def one_hot(segs: list[Segment]) -> np.ndarray:
    names = sorted({s.singer for s in segs})
    return np.eye(len(names), dtype=np.float32)[[names.index(s.singer) for s in segs]]


def gaussian(segs: list[Segment]) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((len(segs), 16)).astype(np.float32)


def oracle(segs: list[Segment]) -> np.ndarray:
    """One-hot singer codes plus a little noise: perfectly separated, yet no two rows tie."""
    return np.hstack([one_hot(segs), 0.01 * gaussian(segs)])


FAST = dict(n_boot=50, probe_folds=2, progress=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    import torch

    cfg = EncoderConfig(backbone="cpu_small", embedding_dim=16)
    torch.manual_seed(123)
    return save_artifact(tmp_path_factory.mktemp("model") / "model", build_encoder(cfg), cfg)


# --- metrics through evaluate ------------------------------------------------------------------


def test_perfect_system_gets_zero_error_and_full_accuracy():
    ev = evaluate([counting_system("oracle", oracle)], fake_segments(), **FAST)
    r = ev["systems"]["oracle"]
    assert r["eer"]["value"] == 0.0
    assert r["eer"]["ci95"] == [0.0, 0.0]
    assert r["min_dcf"]["0.01"]["value"] == 0.0
    assert r["mnr"]["value"] == 0.0
    assert r["retrieval"]["recall@1"] == 1.0 and r["retrieval"]["map"] == 1.0
    assert r["identification"]["top1_mean"] == 1.0 and r["identification"]["top1_std"] == 0.0
    assert r["identification"]["top5_mean"] == 1.0


def test_geometry_of_one_hot_embeddings():
    ev = evaluate([counting_system("onehot", one_hot)], fake_segments(), **FAST)
    r = ev["systems"]["onehot"]
    assert r["eer"]["value"] == 0.0
    assert r["geometry"]["alignment"] == pytest.approx(0.0, abs=1e-9)
    # 20 orthogonal singers of equal size: ||zi - zj||^2 is 2 across singers, 0 within.
    n, same = 240, 20 * 12 * 11 / 2
    expected = np.log((same + (n * (n - 1) / 2 - same) * np.exp(-4.0)) / (n * (n - 1) / 2))
    assert r["geometry"]["uniformity"] == pytest.approx(expected, rel=1e-6)


def test_random_system_is_at_chance():
    ev = evaluate([counting_system("noise", gaussian)], fake_segments(), **FAST)
    r = ev["systems"]["noise"]
    assert abs(r["eer"]["value"] - 0.5) < 0.07
    lo, hi = r["eer"]["ci95"]
    assert lo < r["eer"]["value"] < hi
    assert abs(r["mnr"]["value"] - 0.5) < 0.07
    assert r["identification"]["top1_mean"] < 0.2  # chance is 1/20


def test_scores_are_the_cosines_of_the_trial_pairs(tmp_path):
    segs = fake_segments(n_singers=5)
    trials = [Trial(segs[0].id, segs[5].id, True), Trial(segs[0].id, segs[12].id, False),
              Trial(segs[13].id, segs[30].id, False), Trial(segs[14].id, segs[20].id, True)]
    path = write_trials(tmp_path / "trials.txt", trials)
    ev = evaluate([counting_system("noise", gaussian)], segs, trials=path, **FAST)
    z = gaussian(segs).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    row = {s.id: i for i, s in enumerate(segs)}
    expected = np.array([z[row[t.enroll]] @ z[row[t.test]] for t in trials])
    arrays = ev.arrays.systems["noise"]
    np.testing.assert_allclose(arrays.scores, expected, atol=1e-6)
    assert arrays.labels.tolist() == [True, False, False, True]
    assert ev["systems"]["noise"]["eer"]["value"] == eer(expected, [True, False, False, True])[0]
    assert ev["protocol"]["trials"] == str(path) and ev["protocol"]["n_trials"] == 4


def test_results_are_plain_json():
    ev = evaluate([counting_system("oracle", one_hot), counting_system("noise", gaussian)], fake_segments(8), **FAST)
    assert json.loads(json.dumps(ev, allow_nan=False)) == ev
    assert set(ev["systems"]) == {"oracle", "noise"}
    p = ev["protocol"]
    assert (p["n_segments"], p["n_singers"], p["condition"]) == (8 * 3 * 4, 8, "cross-song")
    assert p["n_target"] + p["n_nontarget"] == p["n_trials"] == len(ev.arrays.trials)


def test_generated_trials_follow_the_condition():
    segs = fake_segments(6)
    ev = evaluate([counting_system("oracle", one_hot)], segs, condition="cross-song", **FAST)
    song = {s.id: (s.singer, s.song) for s in segs}
    targets = [t for t in ev.arrays.trials if t.target]
    assert targets and all(song[t.enroll] != song[t.test] for t in targets)
    assert all(song[t.enroll][0] == song[t.test][0] for t in targets)


# --- errors ------------------------------------------------------------------------------------


def test_trial_file_with_unknown_ids_is_an_error(tmp_path):
    segs = fake_segments(3)
    path = write_trials(tmp_path / "t.txt", [Trial(segs[0].id, "/elsewhere/x.wav@0.00", True)])
    with pytest.raises(TrialsError, match=r"t\.txt.*1 segment id.*/elsewhere/x\.wav@0\.00"):
        evaluate([counting_system("oracle", one_hot)], segs, trials=path, **FAST)


def test_fewer_than_two_singers_is_an_error():
    segs = [s for s in fake_segments(3) if s.singer == "s00"]
    with pytest.raises(DatasetError, match="at least 2 singers"):
        evaluate([counting_system("oracle", one_hot)], segs, **FAST)


def test_cross_song_trials_need_several_songs_per_singer():
    segs = fake_segments(4, songs=1)
    with pytest.raises(TrialsError, match="cross-song is impossible"):
        evaluate([counting_system("oracle", one_hot)], segs, condition="cross-song", **FAST)


def test_probe_needs_several_recordings_or_can_be_left_out():
    segs = fake_segments(4, songs=1)
    with pytest.raises(DatasetError, match="probe_folds=0"):
        evaluate([counting_system("oracle", one_hot)], segs, condition="any", n_boot=0, progress=False)
    ev = evaluate([counting_system("oracle", one_hot)], segs, condition="any", n_boot=0, probe_folds=0, progress=False)
    assert ev["systems"]["oracle"]["identification"] is None
    assert ev["systems"]["oracle"]["eer"]["ci95"] is None


def test_duplicate_system_names_are_an_error():
    with pytest.raises(DatasetError, match="distinct"):
        evaluate([counting_system("a", one_hot), counting_system("a", gaussian)], fake_segments(3), **FAST)


# --- cache -------------------------------------------------------------------------------------


def test_cache_is_reused_and_invalidated(tmp_path, corpus):
    segs = corpus_segments(corpus)
    system = counting_system("oracle", one_hot)
    first = evaluate([system], segs, cache_dir=tmp_path, **FAST)
    second = evaluate([system], segs, cache_dir=tmp_path, **FAST)
    assert system.calls == [len(segs)]
    assert first["systems"]["oracle"]["cached"] is False and second["systems"]["oracle"]["cached"] is True
    np.testing.assert_array_equal(first.arrays.systems["oracle"].embeddings, second.arrays.systems["oracle"].embeddings)
    evaluate([system], segs[:-1], cache_dir=tmp_path, **FAST)  # another segment list
    assert system.calls == [len(segs), len(segs) - 1]
    changed = counting_system("oracle", one_hot, fingerprint="oracle-v2")  # another model
    evaluate([changed], segs, cache_dir=tmp_path, **FAST)
    assert changed.calls == [len(segs)]


def test_cache_key_tracks_the_audio_files(tmp_path, corpus):
    segs = corpus_segments(corpus)[:2]
    key = cache_key("fp", segs)
    assert cache_key("fp", segs) == key and cache_key("fp2", segs) != key
    assert cache_key("fp", segs[::-1]) != key
    copy = tmp_path / "alto" / "song0.wav"
    copy.parent.mkdir()
    copy.write_bytes(Path(segs[0].path).read_bytes())
    moved = [Segment(str(copy), s.singer, s.song, s.offset, s.duration) for s in segs]
    before = cache_key("fp", moved)
    write_audio(copy, np.zeros(3 * SAMPLE_RATE, np.float32) + 0.1)
    assert cache_key("fp", moved) != before
    with pytest.raises(DatasetError, match="cannot read"):
        cache_key("fp", fake_segments(2))


# --- systems -----------------------------------------------------------------------------------


def test_standardize_by_hand():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, 2.0], [5.0, 5.0, 4.0]])
    with pytest.warns(UserWarning, match="1 of 3 segments"):
        z = standardize(x)
    sd = np.sqrt(8 / 3)
    np.testing.assert_allclose(z[:, 0], [-2 / sd, 0.0, 2 / sd], rtol=1e-6)
    np.testing.assert_array_equal(z[:, 1], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(z[:, 2], [0.0, -1.0, 1.0], rtol=1e-6)
    with pytest.raises(DatasetError, match="every segment"):
        standardize(np.array([[1.0, np.nan], [2.0, np.nan]]))


def test_bandlimit_removes_the_band_above_8khz():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    low, high = np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 12000 * t)
    out_low, out_high = bandlimit(low.astype(np.float32)), bandlimit(high.astype(np.float32))
    assert len(out_low) == len(low)
    mid = slice(2000, -2000)
    assert np.sqrt(np.mean((out_low[mid] - low[mid]) ** 2)) < 0.01
    assert np.sqrt(np.mean(out_high[mid] ** 2)) < 0.01


@pytest.mark.slow
def test_handcrafted_baselines_separate_distinct_voices(corpus):
    segs = corpus_segments(corpus)
    systems = [make_system("mfcc"), make_system("timbre=f0")]
    assert [s.name for s in systems] == ["mfcc", "timbre"]
    ev = evaluate(systems, segs, condition="cross-song", **FAST)
    assert ev["systems"]["mfcc"]["eer"]["value"] < 0.1
    assert ev["systems"]["mfcc"]["identification"]["top1_mean"] > 0.9
    emb = ev.arrays.systems["mfcc"].embeddings
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert emb.shape == (len(segs), 40)


def test_model_random_and_bandlimit_systems(corpus, model_path, monkeypatch):
    segs = corpus_segments(corpus)[:2]
    model = make_system(f"model:{model_path}")
    again = make_system(f"model:{model_path}")
    rand0, rand0b, rand1 = (make_system(f"random:{model_path}", seed=s) for s in (0, 0, 1))
    limited = make_system(f"bandlimit:{model_path}")
    assert (model.name, rand0.name, limited.name) == ("model", "random", "bandlimit16k")
    assert model.fingerprint == again.fingerprint
    assert len({model.fingerprint, rand0.fingerprint, rand1.fingerprint, limited.fingerprint}) == 4
    assert rand0.fingerprint == rand0b.fingerprint
    z = model.embed(segs)
    assert z.shape == (2, 16) and z.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)
    # The model system is the artefact's encoder on the segment audio, nothing else.
    from singerid.infer import load_model

    np.testing.assert_allclose(z, load_model(model_path).embed_segments(segs, progress=False), atol=1e-6)
    np.testing.assert_allclose(rand0.embed(segs[:1]), rand0b.embed(segs[:1]), atol=1e-6)
    assert load_artifact(model_path).fingerprint in model.fingerprint
    assert limited.embed(segs).shape == (2, 16)
    # Without the 16 kHz detour the band-limited system is the model itself.
    import singerid.eval.baselines.systems as systems_module

    monkeypatch.setattr(systems_module, "bandlimit", lambda audio: audio)
    np.testing.assert_allclose(limited.embed(segs[::-1]), z[::-1], atol=1e-5)
    small = make_system("random:cpu_small", seed=3)
    assert small.embed(segs[:1]).shape == (1, 256)


def test_bad_specs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown system"):
        make_system("xvector")
    with pytest.raises(ConfigError, match="needs a target"):
        make_system("model")
    with pytest.raises(ConfigError, match="takes no argument"):
        make_system("mfcc:20")
    with pytest.raises(ConfigError, match="neither an existing model artefact nor a known backbone"):
        make_system("random:resnet9000")
    with pytest.raises(ConfigError, match="not found"):
        make_system(f"hf:{tmp_path / 'missing'}")


# --- calibration and AS-norm ------------------------------------------------------------------


def test_asnorm_cohort_must_hold_other_singers():
    segs = fake_segments(8)
    trial_segs = [s for s in segs if s.singer < "s05"]
    cohort = [s for s in segs if s.singer >= "s05"]
    ev = evaluate([counting_system("noise", gaussian)], trial_segs, cohort=cohort, asnorm_top_k=10, **FAST)
    assert ev["protocol"]["score"] == "as-norm" and ev["protocol"]["cohort_singers"] == 3
    a = ev.arrays.systems["noise"]
    assert not np.allclose(a.scores, a.cosine)
    assert ev["systems"]["noise"]["eer_cosine"] == eer(a.cosine, a.labels)[0]
    with pytest.raises(DatasetError, match="cohort singer"):
        evaluate([counting_system("noise", gaussian)], trial_segs, cohort=segs[:10], **FAST)


# --- command line ------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, corpus, model_path, capsys):
    out = tmp_path / "eval"
    argv = [
        "evaluate", "--model", str(model_path), "--baseline", "mfcc", "--data", str(corpus), "--seconds", "1",
        "--out", str(out), "--n-boot", "50", "--probe-folds", "2", "--mnr-k", "8", "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| model |" in printed and "| mfcc |" in printed and str(out / "report.md") in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["systems"]) == {"model", "mfcc"}
    assert results["protocol"]["n_segments"] == 16 and results["protocol"]["mnr_k"] == 8
    for name in ("report.md", "det.png", "scores.png", "map.png", "segments.csv", "trials.txt"):
        assert (out / name).is_file(), name
    assert len(read_trials(out / "trials.txt")) == results["protocol"]["n_trials"]

    # Same segments and trials from files: identical numbers, embeddings read from the cache.
    again = tmp_path / "again"
    argv2 = [
        "evaluate", "--model", str(model_path), "--manifest", str(out / "segments.csv"), "--trials",
        str(out / "trials.txt"), "--out", str(again), "--cache-dir", str(out / "cache"), "--n-boot", "50",
        "--probe-folds", "2", "--mnr-k", "8", "--no-progress", "--map", "pca",
    ]
    assert main(argv2) == 0
    second = json.loads((again / "results.json").read_text())
    assert second["systems"]["model"]["cached"] is True
    assert second["systems"]["model"]["eer"] == results["systems"]["model"]["eer"]


def test_cli_user_errors(tmp_path, corpus, capsys):
    manifest = write_segments(tmp_path / "segs.csv", corpus_segments(corpus))
    assert main(["evaluate", "--baseline", "random", "--manifest", str(manifest), "--out", str(tmp_path / "o")]) == 2
    assert "pass --model" in capsys.readouterr().err
    assert main(["evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "o")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_invariance_probes(tmp_path, corpus):
    out = tmp_path / "inv"
    argv = [
        "evaluate", "--baseline", "mfcc", "--data", str(corpus), "--seconds", "1", "--out", str(out),
        "--n-boot", "0", "--probe-folds", "0", "--mnr-k", "8", "--no-progress", "--map", "pca",
        "--invariance", "noise0db", "bandlimit16k",
    ]
    assert main(argv) == 0
    reports = json.loads((out / "invariance.json").read_text())
    assert [r["system"] for r in reports] == ["mfcc"]
    assert "noise0db" in (out / "invariance.md").read_text()
    moved = reports[0]["transforms"]
    # Noise at 0 dB SNR moves MFCC statistics much more than removing the band above 8 kHz.
    assert set(moved) == {"noise0db", "bandlimit16k"}
    assert moved["noise0db"]["cosine_mean"] < moved["bandlimit16k"]["cosine_mean"] <= 1.0
