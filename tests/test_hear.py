from __future__ import annotations

import numpy as np
import pytest
import torch

from singerid import hear
from singerid.errors import AudioError, CheckpointError
from singerid.export.formats import parity_inputs
from singerid.infer import load_model as load_encoder
from singerid.model.artifact import save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.model.frontend import FrontendConfig


def _artifact(path, mode="standard"):
    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small", frontend=FrontendConfig(mode=mode))
    return save_artifact(path, build_encoder(cfg), cfg)


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    return _artifact(tmp_path_factory.mktemp("hear") / "model")


@pytest.fixture(scope="module")
def model(art):
    return hear.load_model(str(art))


def test_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 44100
    assert model.scene_embedding_size == model.timestamp_embedding_size == 256


def test_empty_path_is_an_error():
    with pytest.raises(CheckpointError, match="pass a model: a known name"):
        hear.load_model("")


def test_scene_embeddings_equal_the_encoders_embed(model, art):
    audio = torch.from_numpy(parity_inputs(66150, 3, seed=1))
    emb = hear.get_scene_embeddings(audio, model)
    assert emb.shape == (3, 256) and emb.dtype == torch.float32
    np.testing.assert_allclose(emb.norm(dim=1).numpy(), 1.0, atol=1e-5)
    want = load_encoder(art).embed(audio.numpy())
    np.testing.assert_allclose(emb.numpy(), want, atol=1e-6)


def test_short_sounds_are_padded_for_scene_embeddings(model, art):
    audio = torch.from_numpy(parity_inputs(4410, 2, seed=2))
    emb = hear.get_scene_embeddings(audio, model)
    want = load_encoder(art, short="pad").embed(audio.numpy())
    np.testing.assert_allclose(emb.numpy(), want, atol=1e-6)


def test_timestamps_are_window_centres_in_ms(model):
    audio = torch.from_numpy(parity_inputs(57330, 2, seed=3))  # 1.3 s
    emb, ts = hear.get_timestamp_embeddings(audio, model)
    assert emb.shape == (2, 6, 256) and ts.shape == (2, 6)
    np.testing.assert_allclose(ts.numpy(), [[0, 250, 500, 750, 1000, 1250]] * 2)
    np.testing.assert_allclose(emb.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def test_timestamp_windows_are_centred_and_zero_padded(model, art):
    wave = parity_inputs(57330, 1, seed=4)[0]
    emb, _ = hear.get_timestamp_embeddings(torch.from_numpy(wave[None]), model)
    encoder = load_encoder(art)
    # Centre 500 ms = sample 22050: the window is exactly the first second.
    np.testing.assert_allclose(emb[0, 2].numpy(), encoder.embed(wave[:44100])[0], atol=1e-6)
    # Centre 0 ms: half a second of zeros, then the first half second.
    first = np.concatenate([np.zeros(22050, np.float32), wave[:22050]])
    np.testing.assert_allclose(emb[0, 0].numpy(), encoder.embed(first)[0], atol=1e-6)
    # Centre 1250 ms = sample 55125: 0.5 s before it, then the 2205 remaining samples and zeros.
    last = np.concatenate([wave[33075:], np.zeros(55125 + 22050 - 57330, np.float32)])
    np.testing.assert_allclose(emb[0, 5].numpy(), encoder.embed(last)[0], atol=1e-6)


def test_very_short_sound_gives_one_timestamp(model):
    emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(parity_inputs(4410, 1, seed=5)), model)
    assert emb.shape == (1, 1, 256) and ts.tolist() == [[0.0]]


def test_bad_audio_is_an_error(model):
    with pytest.raises(AudioError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(torch.zeros(44100), model)
    with pytest.raises(AudioError, match="too short"):
        hear.get_timestamp_embeddings(torch.ones(1, 100), model)
    silent = torch.from_numpy(parity_inputs(44100, 2, seed=6))
    silent[1] = 0
    with pytest.raises(AudioError, match="HEAR sound 1.*silent"):
        hear.get_timestamp_embeddings(silent, model)


def test_official_compat_windows_do_not_depend_on_batch_mates(tmp_path):
    model = hear.load_model(str(_artifact(tmp_path / "official", mode="official-compat")))
    audio = torch.from_numpy(parity_inputs(22050, 2, seed=7))
    audio[0] *= 0.01
    alone, _ = hear.get_timestamp_embeddings(audio[:1], model)
    together, _ = hear.get_timestamp_embeddings(audio, model)
    np.testing.assert_allclose(alone[0].numpy(), together[0].numpy(), atol=1e-6)
    scene_alone = hear.get_scene_embeddings(audio[:1], model)
    scene_together = hear.get_scene_embeddings(audio, model)
    np.testing.assert_allclose(scene_alone[0].numpy(), scene_together[0].numpy(), atol=1e-6)
