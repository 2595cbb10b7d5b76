from __future__ import annotations

import csv
import signal

import numpy as np
import pytest
import torch

from singerid.data.datasets import discover
from singerid.errors import CheckpointError, ConfigError, TrainingInterrupted
from singerid.model.artifact import load_artifact
from singerid.training import METHODS, builtin_configs, load_config, train
from singerid.training.config import TrainConfig
from singerid.training.module import SSLModule

TINY = [
    "model.backbone=cpu_small",
    "model.embedding_dim=32",
    "crop_seconds=1.0",
    "batch_size=8",
    "num_workers=0",
    "val_fraction=0.0",
    "optim.lr=3e-3",
    "augment.pitch_p=0.0",
    "augment.noise_p=0.0",
    "augment.gain_p=0.0",
    "augment.mask_p=0.0",
]


def _tiny(method: str, steps: int, *extra: str) -> TrainConfig:
    return load_config("demo", [*TINY, f"method={method}", f"max_steps={steps}", f"checkpoint_every={steps}", *extra])


def _losses(run_dir) -> np.ndarray:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return np.array([float(r["train/loss"]) for r in rows if r.get("train/loss")])


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_each_objective_trains_decreases_loss_and_writes_an_artefact(tmp_path, tone_corpus, method):
    cfg = _tiny(method, 12)
    result = train(cfg, discover(tone_corpus), tmp_path / method, progress=False)
    losses = _losses(tmp_path / method)
    assert len(losses) == 12 and np.all(np.isfinite(losses))
    assert losses[-3:].mean() < losses[:3].mean()
    art = load_artifact(result.artifact)
    assert art.config.embedding_dim == 32
    out = art.net(torch.zeros(1, 44100).normal_(generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 32)


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(tmp_path, tone_corpus):
    recordings = discover(tone_corpus)
    straight = train(_tiny("vicreg", 4, "checkpoint_every=2", "augment.noise_p=0.5"), recordings, tmp_path / "a", progress=False)
    first = train(_tiny("vicreg", 2, "checkpoint_every=2", "augment.noise_p=0.5"), recordings, tmp_path / "b", progress=False)
    assert first.steps == 2
    resumed = train(_tiny("vicreg", 4, "checkpoint_every=2", "augment.noise_p=0.5"), recordings, tmp_path / "b", resume=True, progress=False)
    assert resumed.steps == 4
    a = load_artifact(straight.artifact).net.state_dict()
    b = load_artifact(resumed.artifact).net.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_that_resumes_to_the_uninterrupted_result(tmp_path, tone_corpus, monkeypatch):
    recordings = discover(tone_corpus)
    cfg = _tiny("vicreg", 6, "checkpoint_every=100", "augment.noise_p=0.5")
    straight = train(cfg, recordings, tmp_path / "a", progress=False)
    step = SSLModule.training_step

    def interrupted_step(self, batch, batch_idx):
        if self.global_step == 3:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C delivers, during the fourth step
        return step(self, batch, batch_idx)

    monkeypatch.setattr(SSLModule, "training_step", interrupted_step)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted, match="stopped at step 4 of 6") as stopped:
        train(cfg, recordings, tmp_path / "b", progress=False)
    assert stopped.value.checkpoint == str(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert torch.load(stopped.value.checkpoint, weights_only=True)["global_step"] == 4
    assert not (tmp_path / "b" / "model").exists()
    assert signal.getsignal(signal.SIGINT) is handler
    monkeypatch.undo()
    resumed = train(cfg, recordings, tmp_path / "b", resume=True, progress=False)
    assert resumed.steps == 6
    a = load_artifact(straight.artifact).net.state_dict()
    b = load_artifact(resumed.artifact).net.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


def test_existing_run_needs_resume_flag(tmp_path, tone_corpus):
    recordings = discover(tone_corpus)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_tiny("vicreg", 2), recordings, tmp_path / "r", resume=True, progress=False)
    train(_tiny("vicreg", 2), recordings, tmp_path / "r", progress=False)
    with pytest.raises(CheckpointError, match="--resume"):
        train(_tiny("vicreg", 2), recordings, tmp_path / "r", progress=False)


def test_paper_configs_hold_the_paper_values():
    assert {"byol", "contrastive", "contrastive-vc", "uniformity", "vicreg", "demo"} <= set(builtin_configs())
    for method in ("contrastive", "contrastive-vc", "uniformity", "vicreg"):
        cfg = load_config(method)
        assert (cfg.method, cfg.batch_size, cfg.optim.lr, cfg.optim.weight_decay) == (method, 140, 1e-4, 1e-5)
        assert cfg.model.backbone == "efficientnet_b0" and cfg.model.embedding_dim == 1000
        assert cfg.crop_seconds == 4.0 and cfg.val_fraction == 0.2
    byol = load_config("byol")
    assert (byol.optim.lr, byol.optim.weight_decay, byol.optim.cosine, byol.loss.ema_base) == (3e-5, 1.5e-6, True, 0.99)
    assert load_config("vicreg").loss.temperature == 0.2
    vic = load_config("vicreg").loss
    assert (vic.sim_weight, vic.var_weight, vic.cov_weight) == (25.0, 25.0, 100.0)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="lrr"):
        load_config("demo", ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="method"):
        load_config("demo", ["method=simclr"])
    with pytest.raises(ConfigError, match="no built-in config"):
        load_config("nonexistent")


def test_song_keys_ignore_where_the_data_lives(tmp_path):
    from singerid.training.data import song_keys

    here = [str(tmp_path / "a" / "data" / s / "x.wav") for s in ("s1", "s2")]
    moved = [str(tmp_path / "b" / "deeper" / "data" / s / "x.wav") for s in ("s1", "s2")]
    assert song_keys(here) == song_keys(moved) == ["s1/x.wav", "s2/x.wav"]
    assert song_keys([str(tmp_path / "one" / "x.wav")]) == ["x.wav"]
    assert song_keys([]) == []


@pytest.mark.slow
def test_training_does_not_depend_on_where_the_corpus_lives(tmp_path, tone_corpus):
    import shutil

    pitch = ["augment.pitch_mode=bank", "augment.pitch_p=1.0", "augment.bank_variants=1"]
    weights = []
    for place in ("here", "somewhere/else"):
        data = shutil.copytree(tone_corpus, tmp_path / place / "data")
        result = train(_tiny("vicreg", 2, *pitch), discover(data), tmp_path / place / "run", progress=False)
        weights.append(load_artifact(result.artifact).net.state_dict())
    for key in weights[0]:
        torch.testing.assert_close(weights[0][key], weights[1][key], rtol=0, atol=0, msg=key)


def test_a_model_embeds_with_the_crop_length_it_was_trained_with(tmp_path, tone_corpus):
    from singerid.infer import load_model

    result = train(_tiny("vicreg", 2, "crop_seconds=1.5"), discover(tone_corpus), tmp_path / "run", progress=False)
    encoder = load_model(result.artifact)
    assert encoder.window == 1.5
    audio = np.random.default_rng(0).standard_normal(44100 * 4).astype(np.float32) * 0.1
    windows = encoder.embed_windows(audio)
    # 4 s in 1.5 s windows with a 1.5 s hop: starts 0, 1.5, and a last window ending at 4 s.
    np.testing.assert_allclose(windows.starts, [0.0, 1.5, 2.5])
    np.testing.assert_allclose(windows.ends - windows.starts, 1.5)
    assert load_model(result.artifact, window=1.0).window == 1.0  # an explicit window still wins


@pytest.mark.parametrize("setting", ["model.frontend.sample_rate=22050", "augment.sample_rate=22050"])
def test_a_sample_rate_other_than_the_library_rate_is_refused(setting, capsys):
    from singerid.cli import main

    assert main(["train", "--config", "demo", "--data", "x", "--out", "y", "--set", setting, "--print-config"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and setting in err[0] and "44100 Hz" in err[0]


def test_train_command_prints_its_progress_without_lightning_chatter(tmp_path, tone_corpus, capfd):
    from singerid.cli import main

    overrides = [arg for item in TINY for arg in ("--set", item)]
    command = ["train", "--config", "demo", "--data", str(tone_corpus), "--out", str(tmp_path / "run"), *overrides]
    assert main([*command, "--set", "max_steps=2", "--set", "checkpoint_every=2"]) == 0
    out, err = capfd.readouterr()
    assert "trained 2 steps" in out
    for chatter in ("GPU available", "Tip:", "LeafSpec", "Epoch 0/", "Validation DataLoader"):
        assert chatter not in out + err, chatter


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(tmp_path, tone_corpus):
    from singerid.errors import OutputError

    recordings = discover(tone_corpus)
    train(_tiny("vicreg", 2), recordings, tmp_path / "r", progress=False)
    with pytest.raises(OutputError, match=r"other settings \(method 'vicreg' -> 'byol'\)"):
        train(_tiny("byol", 4, "checkpoint_every=2"), recordings, tmp_path / "r", resume=True, progress=False)
    with pytest.raises(OutputError, match=r"other settings \(data "):
        train(_tiny("vicreg", 4, "checkpoint_every=2"), recordings[:-1], tmp_path / "r", resume=True, progress=False)
    assert train(_tiny("vicreg", 4, "checkpoint_every=2"), recordings, tmp_path / "r", resume=True, progress=False).steps == 4


def test_a_malformed_override_is_one_config_error():
    with pytest.raises(ConfigError, match=r"override 'optim.lr=\[1': the value is not valid YAML"):
        load_config("demo", ["optim.lr=[1"])
