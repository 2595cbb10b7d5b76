from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from singerid import SAMPLE_RATE, infer
from singerid.cli import main
from singerid.data.signals import voiced_clip
from singerid.errors import AudioError, CheckpointError, ConfigError
from singerid.extract import extract_to_npz, load_embeddings
from singerid.infer import load_model
from singerid.model.artifact import load_artifact, save_artifact, update_calibration
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.model.calibration import Calibration, DurationTerms
from singerid.profiles import UNKNOWN, Gallery


@pytest.fixture(scope="module")
def encoder(model_dir):
    return load_model(model_dir)


def test_artifact_round_trip_folder_and_file(model_dir, tmp_path):
    art = load_artifact(model_dir)
    single = save_artifact(tmp_path / "m.pt", art.net, art.config)
    other = load_artifact(single)
    for key, value in art.net.state_dict().items():
        torch.testing.assert_close(value, other.net.state_dict()[key])
    assert other.fingerprint == art.fingerprint
    x = torch.from_numpy(voiced_clip(200, 1.0, 1.0, 0))[None]
    torch.testing.assert_close(art.net(x), other.net(x))


def test_artifact_errors_are_clear(model_dir, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_artifact(tmp_path / "missing")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="junk.pt.*corrupt"):
        load_artifact(tmp_path / "junk.pt")
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = json.loads((model_dir / "config.json").read_text())
    meta["model"]["embedding_dim"] = 64
    (bad / "config.json").write_text(json.dumps(meta))
    (bad / "weights.safetensors").write_bytes((model_dir / "weights.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_artifact(bad)
    torch.save({"encoder.x": torch.zeros(1)}, tmp_path / "lightning.pt")
    with pytest.raises(CheckpointError, match="not a singerid model file"):
        load_artifact(tmp_path / "lightning.pt")


def test_embeddings_are_normalised_and_batch_invariant(encoder):
    clips = np.stack([voiced_clip(150 + 40 * i, 2.0, 0.7 + 0.3 * i, i) for i in range(4)])
    batch = encoder.embed(clips)
    assert batch.shape == (4, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for i in range(4):
        np.testing.assert_allclose(encoder.embed(clips[i])[0], batch[i], atol=1e-5)


@pytest.mark.parametrize("backbone", ["cpu_small", "efficientnet_b0"])
def test_encoder_folds_batchnorm_into_convs_without_changing_embeddings(backbone, tmp_path):
    torch.manual_seed(1)
    cfg = EncoderConfig(backbone=backbone)
    net = build_encoder(cfg, load_imagenet=False)
    for module in net.modules():  # non-trivial statistics, so folding them is exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    art = load_artifact(save_artifact(tmp_path / "m", net.eval(), cfg))
    keys = set(art.net.state_dict())
    enc = infer.SingerEncoder(art)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in enc.net.modules())
    assert set(art.net.state_dict()) == keys  # the artefact's own network keeps its BatchNorms
    clips = np.stack([voiced_clip(140 + 60 * i, 1.0, 0.6, 20 + i) for i in range(3)]).astype(np.float32)
    with torch.inference_mode():
        plain = art.net.eval()(torch.from_numpy(clips)).numpy()
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)
    np.testing.assert_allclose(enc.embed(clips), plain, atol=2e-5)


def test_cpu_pieces_give_the_whole_batch_result(encoder, monkeypatch):
    # More windows than one CPU piece, with a remainder: same as the network on the whole batch.
    monkeypatch.setitem(infer.CPU_PIECES, "cpu_small", 4)
    calls = []
    hook = encoder.net.register_forward_hook(lambda module, args, out: calls.append(len(args[0])))
    n = 9
    clips = np.stack([voiced_clip(120 + 25 * i, 1.5, 0.5 + 0.1 * i, 10 + i) for i in range(n)]).astype(np.float32)
    with torch.inference_mode():
        whole = encoder.net(torch.from_numpy(clips)).numpy()
    whole /= np.linalg.norm(whole, axis=1, keepdims=True)
    calls.clear()
    try:
        np.testing.assert_allclose(encoder.embed(clips), whole, atol=1e-5)
    finally:
        hook.remove()
    assert calls == [4, 4, 1]


def test_any_rate_and_stereo_are_accepted(encoder):
    clip = voiced_clip(220, 2.0, 1.0, 3)
    ref = encoder.embed(clip)
    stereo = np.stack([clip, clip], axis=1)
    np.testing.assert_allclose(encoder.embed(stereo), ref, atol=1e-5)
    from singerid.audio import resample

    at_48k = resample(clip, SAMPLE_RATE, 48000)
    assert float(encoder.embed(at_48k, 48000)[0] @ ref[0]) > 0.999


def test_long_audio_is_the_mean_of_window_embeddings(encoder):
    clip = voiced_clip(180, 10.0, 1.0, 5)
    windows = encoder.embed_windows(clip)
    # 10 s with 4 s windows and 4 s hop: starts 0, 4 and a last window ending at the clip's end (6 s).
    np.testing.assert_allclose(windows.starts, [0.0, 4.0, 6.0])
    np.testing.assert_allclose(windows.ends, [4.0, 8.0, 10.0])
    mean = windows.embeddings.mean(0)
    np.testing.assert_allclose(encoder.embed(clip)[0], mean / np.linalg.norm(mean), atol=1e-5)


def test_short_and_silent_clips_follow_the_policy(model_dir):
    strict = load_model(model_dir)
    short = voiced_clip(200, 0.5, 1.0, 0)
    with pytest.raises(AudioError, match="shorter than min_seconds"):
        strict.embed(short)
    padded = load_model(model_dir, short="pad")
    np.testing.assert_allclose(padded.embed(short), padded.embed(np.tile(short, 2)), atol=1e-5)
    with pytest.raises(AudioError, match="silent"):
        strict.embed(np.zeros(SAMPLE_RATE * 2, np.float32))
    with pytest.raises(ConfigError):
        load_model(model_dir, short="truncate")


def test_verify_decides_only_with_a_threshold_and_says_where_it_came_from(model_dir, tmp_path):
    a = voiced_clip(200, 2.0, 0.8, 1)
    b = voiced_clip(260, 3.0, 0.8, 2)
    enc = load_model(model_dir)
    undecided = enc.verify(a, b)
    assert undecided.same_singer is None and undecided.threshold is None and undecided.threshold_source == "none"
    assert undecided.probability is None and undecided.seconds == pytest.approx((2.0, 3.0))
    result = enc.verify(a, b, threshold=-1.0)
    assert result.same_singer and result.threshold_source == "given"
    assert result.score == pytest.approx(float(enc.embed(a)[0] @ enc.embed(b)[0]), abs=1e-6)
    old_style = save_artifact(tmp_path / "old", enc.artifact.net, enc.artifact.config)
    update_calibration(old_style, {"thresholds": {"eer": 1.5}})
    assert load_model(old_style).verify(a, b).same_singer is False


def test_verify_uses_the_calibrated_threshold_and_probability_for_the_clip_lengths(model_dir, tmp_path):
    a = voiced_clip(200, 2.0, 0.8, 1)
    b = voiced_clip(260, 3.0, 0.8, 2)
    enc = load_model(model_dir)
    s = enc.verify(a, b).score
    # Centred on this pair's score at these lengths: the llr there is 0 and the threshold is s + 0.01.
    cal = Calibration(
        a=10.0, b=-10.0 * s, duration=DurationTerms(c=0.0, e=0.0, ref_seconds=4.0, lo=-2.0, hi=2.0),
        thresholds={"eer": s + 0.01}, llr_thresholds={"eer": 0.1},
    )
    calibrated = save_artifact(tmp_path / "cal", enc.artifact.net, enc.artifact.config)
    update_calibration(calibrated, cal.to_dict())
    result = load_model(calibrated).verify(a, b)
    assert result.threshold_source == "calibration" and result.threshold == pytest.approx(s + 0.01)
    assert result.same_singer is False and result.probability == pytest.approx(0.5, abs=1e-6)


def test_enroll_identify_open_set_and_profile_files(encoder, tmp_path):
    refs = {name: [voiced_clip(f0, 2.0, bright, seed) for seed in range(2)] for name, f0, bright in [("low", 150, 0.5), ("high", 300, 2.0)]}
    gallery = Gallery(encoder.artifact.fingerprint)
    for name, clips in refs.items():
        gallery.add(encoder.enroll(name, clips))
    path = gallery.save(tmp_path / "profiles.npz")
    loaded = Gallery.load(path)
    query = voiced_clip(150, 2.0, 0.5, 9)
    closed = encoder.identify(query, loaded, open_set=False)
    ranked = closed.matches
    assert closed.singer == ranked[0].name and closed.threshold is None
    q = encoder.embed(query)[0]
    assert sorted(m.name for m in ranked) == ["high", "low"]
    assert ranked[0].score >= ranked[1].score
    for m in ranked:
        assert m.score == pytest.approx(float(loaded.profiles[m.name].centroid @ q), abs=1e-5)
    rejected = encoder.identify(query, loaded, threshold=1.01, top=1)
    assert rejected.singer == UNKNOWN and rejected.threshold == 1.01 and [m.name for m in rejected.matches] == [ranked[0].name]
    accepted = encoder.identify(query, loaded, threshold=-1.0)
    assert accepted.singer == ranked[0].name and accepted.threshold_source == "given"
    assert loaded.profiles["low"].seconds == pytest.approx(4.0)
    with pytest.raises(ConfigError, match="no calibration"):
        encoder.identify(query, loaded)
    with pytest.raises(CheckpointError, match="different model"):
        encoder.identify(query, Gallery("other-model", loaded.profiles))


def test_extract_is_resumable_and_matches_embed_file(encoder, tmp_path):
    files = []
    for i in range(5):
        from singerid.audio import write_audio

        files.append(write_audio(tmp_path / f"c{i}.wav", voiced_clip(150 + 30 * i, 1.5, 1.0, i)))
    out = tmp_path / "emb.npz"
    parts = tmp_path / "emb.npz.parts"
    # Pretend an interrupted run left the first shard: it must be reused, not recomputed.
    first = extract_to_npz(encoder, files[:2], tmp_path / "first.npz", shard_size=2, progress=False)
    parts.mkdir()
    ids, vec, meta = load_embeddings(first)
    np.savez(parts / "part-00000.npz", ids=np.array(ids), embeddings=vec + 0.0, meta=np.array(json.dumps(meta)))
    marker = vec.copy()
    marker[0, 0] = 42.0
    np.savez(parts / "part-00000.npz", ids=np.array(ids), embeddings=marker, meta=np.array(json.dumps(meta)))
    extract_to_npz(encoder, files, out, shard_size=2, progress=False)
    ids, emb, _ = load_embeddings(out)
    assert ids == [str(f) for f in files] and emb[0, 0] == 42.0 and not parts.exists()
    np.testing.assert_allclose(emb[2], encoder.embed_file(files[2]), atol=1e-5)


def test_cli_embed_verify_enroll_identify(model_dir, tmp_path, capsys):
    from singerid.audio import write_audio

    a = write_audio(tmp_path / "a" / "x.wav", voiced_clip(200, 2.0, 0.8, 1))
    b = write_audio(tmp_path / "a" / "y.wav", voiced_clip(210, 2.0, 0.8, 2))
    assert main(["embed", str(tmp_path / "a"), "--model", str(model_dir), "--out", str(tmp_path / "e.npz")]) == 0
    assert len(load_embeddings(tmp_path / "e.npz")[0]) == 2
    assert main(["verify", str(a), str(b), "--model", str(model_dir), "--threshold", "0.5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["threshold"] == 0.5 and result["same_singer"] == (result["score"] >= 0.5)
    assert result["threshold_source"] == "given" and result["quality"][0]["bandwidth_hz"] > 11025
    assert main(["verify", str(a), str(b), "--model", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "no decision" in out and "--calibrate" in out
    profiles = str(tmp_path / "p.npz")
    assert main(["enroll", "ann", str(a), "--model", str(model_dir), "--profiles", profiles]) == 0
    assert main(["identify", str(b), "--model", str(model_dir), "--profiles", profiles, "--closed-set", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["matches"][0]["name"] == "ann"
    assert main(["identify", str(b), "--model", str(model_dir), "--profiles", profiles, "--threshold", "1.5", "--top", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("unknown: no enrolled singer reaches the threshold 1.5000") and len(lines) == 3
    assert lines[1] == "candidates:" and lines[2].startswith("  1. ann")
    assert main(["verify", str(a), str(tmp_path / "nope.wav"), "--model", str(model_dir), "--threshold", "0"]) == 1
    assert "nope.wav" in capsys.readouterr().err


def test_parts_split_files_disjointly_and_completely():
    from pathlib import Path

    from singerid.extract import select_part

    files = [Path(f"f{i}.wav") for i in range(10)]
    parts = [select_part(files, f"{k}/3") for k in range(3)]
    assert sorted(p for part in parts for p in part) == sorted(files)
    assert parts[1] == [Path("f1.wav"), Path("f4.wav"), Path("f7.wav")]
    with pytest.raises(ConfigError, match="K/N"):
        select_part(files, "1-3")
    with pytest.raises(ConfigError, match="0..N-1"):
        select_part(files, "3/3")
