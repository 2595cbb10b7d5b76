from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import official_state_dict

from singerid.cli import main
from singerid.errors import CheckpointError
from singerid.export.formats import parity_inputs
from singerid.infer import load_model
from singerid.model.artifact import load_artifact
from singerid.model.official import (
    config_from_hyperparams,
    import_official,
    read_hyperparams,
    read_state_dict,
)

HPARAMS = """\
feature_extractor:
  spec_layer: melspectogram
  n_fft: 2048
  hop_length: 512
encoder:
  backbone: efficientnet_b0
  pretrained: true
  embedding_dim: 1000
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
  loadables:
    model: !ref <model>
  paths: !apply:dict [a, b]
"""


@pytest.fixture(scope="module")
def source():
    return official_state_dict(seed=0)


def _folder(path, state, hparams=HPARAMS):
    path.mkdir()
    torch.save(state, path / "model.pt")
    if hparams is not None:
        (path / "hyperparams.yaml").write_text(hparams)
    return path


def test_import_maps_every_efficientnet_tensor(source, tmp_path, capsys):
    heads = {"projection.net.1.weight": torch.rand(128, 1000), "projection.net.1.bias": torch.rand(128)}
    folder = _folder(tmp_path / "byol", {**source, **heads})
    out = tmp_path / "model"
    assert main(["import-official", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ignored 2 projection-head" in printed
    art = load_artifact(out)
    assert (art.config.backbone, art.config.embedding_dim, art.config.frontend.mode) == ("efficientnet_b0", 1000, "official-compat")
    assert art.meta["source"] == "official" and art.meta["official"]["ignored"]["spectrogram buffers"] == 2
    own = art.net.state_dict()
    names = [k for k in source if k.startswith("encoder.net.2.")]
    assert len(names) == len(own)
    for key in names:
        assert torch.equal(own["backbone.net." + key[len("encoder.net.2."):]], source[key]), key
    emb = load_model(out).embed(parity_inputs(44100, 1, seed=0))
    assert emb.shape == (1, 1000) and np.isfinite(emb).all()


def test_a_dict_holding_the_state_dict_is_read(source, tmp_path):
    torch.save({"epoch": 3, "state_dict": source}, tmp_path / "model.pt")
    state = read_state_dict(tmp_path / "model.pt")
    assert set(state) == set(source)


def test_wrong_layout_names_unexpected_and_missing_keys(source, tmp_path):
    shifted = {k.replace("encoder.net.2.", "model.backbone."): v for k, v in source.items() if k.startswith("encoder.")}
    folder = _folder(tmp_path / "other", shifted, hparams=None)
    with pytest.raises(CheckpointError) as info:
        import_official(folder, tmp_path / "model")
    message = str(info.value)
    assert "unexpected keys: model.backbone." in message and f"({len(shifted)} in all)" in message
    assert "missing keys: encoder.net.2.features.0.0.weight" in message
    assert not (tmp_path / "model").exists()


def test_wrong_shape_is_named(source, tmp_path):
    state = dict(source)
    state["encoder.net.2.classifier.1.weight"] = torch.rand(512, 1280)
    state["encoder.net.2.classifier.1.bias"] = torch.rand(512)
    with pytest.raises(CheckpointError, match=r"wrong shapes: encoder.net.2.classifier.1.weight \[512, 1280\] != \[1000, 1280\]"):
        import_official(_folder(tmp_path / "dim", state, hparams=None), tmp_path / "model")


def test_hyperparams_with_custom_tags_load_as_plain_values(tmp_path):
    (tmp_path / "h.yaml").write_text(HPARAMS)
    data = read_hyperparams(tmp_path / "h.yaml")
    assert data["encoder"]["embedding_dim"] == 1000
    assert data["pretrainer"]["loadables"] == {"model": "<model>"}
    assert data["pretrainer"]["paths"] == ["a", "b"]
    cfg = config_from_hyperparams(data)
    assert (cfg.frontend.n_fft, cfg.frontend.hop_length, cfg.frontend.n_mels) == (2048, 512, 128)


@pytest.mark.parametrize(
    "change, named",
    [
        ({"encoder": {"embedding_dim": 512}}, "encoder.embedding_dim=512"),
        ({"encoder": {"backbone": "efficientnet_b4"}}, "encoder.backbone='efficientnet_b4'"),
        ({"feature_extractor": {"spec_layer": "stft"}}, "feature_extractor.spec_layer='stft'"),
        ({"sample_rate": 16000}, "sample_rate=16000"),
        ({"feature_extractor": {"n_fft": "big"}}, "feature_extractor settings are not valid"),
    ],
)
def test_hyperparams_the_official_model_cannot_reproduce_are_refused(change, named):
    with pytest.raises(CheckpointError) as info:
        config_from_hyperparams(change)
    assert named in str(info.value)


def test_missing_folder_and_non_state_dict_are_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a folder"):
        import_official(tmp_path / "nowhere", tmp_path / "model")
    torch.save([1, 2, 3], tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        import_official(tmp_path, tmp_path / "model")
