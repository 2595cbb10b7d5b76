from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from singerid.audio import resample
from singerid.data.signals import voiced_clip
from singerid.errors import ConfigError

pytest.importorskip("transformers")


@pytest.fixture
def resemblyzer_module():
    """resemblyzer itself, as the reference implementation.

    Its package import needs webrtcvad, whose 2.0.10 release needs pkg_resources (gone from
    recent setuptools); webrtcvad serves only resemblyzer's silence trimming, which is not
    called here, so a stand-in module is used while it is missing. The imported modules are
    dropped afterwards so no later import sees the stand-in.
    """
    stub = types.ModuleType("webrtcvad")
    try:
        import webrtcvad  # noqa: F401
    except ImportError:
        sys.modules["webrtcvad"] = stub
    try:
        import resemblyzer
    except ImportError as exc:
        pytest.skip(f"resemblyzer not importable: {exc}")
    yield resemblyzer
    for name in [m for m in sys.modules if m.split(".")[0] == "resemblyzer"]:
        del sys.modules[name]
    if sys.modules.get("webrtcvad") is stub:
        del sys.modules["webrtcvad"]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection fails the test."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def ge2e():
    from singerid.eval.baselines.pretrained import (
        ResemblyzerSystem,
        resemblyzer_weights,
    )

    try:
        resemblyzer_weights()
    except ConfigError as exc:
        pytest.skip(str(exc))
    return ResemblyzerSystem()


def test_ge2e_unit_norm_deterministic_and_matches_resemblyzer(ge2e, resemblyzer_module, no_network):
    clips = [voiced_clip(200.0, 2.5, 0.8, 0), voiced_clip(320.0, 1.5, 1.6, 1)]  # 2 and 1 partial windows
    a = ge2e.embed_audio(clips)
    assert a.shape == (2, 256) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a[1], ge2e.embed_audio(clips[1:])[0])  # same input, same output, alone or not
    assert a[0] @ a[1] < 0.999
    # Reference: resemblyzer's own VoiceEncoder.embed_utterance on the same 16 kHz audio.
    x16 = [resample(c, 44100, 16000) for c in clips]
    encoder = resemblyzer_module.VoiceEncoder(device="cpu", verbose=False)
    ref = [encoder.embed_utterance(resemblyzer_module.normalize_volume(c, -30, increase_only=True)) for c in x16]
    np.testing.assert_allclose(a, ref, atol=1e-5)


def test_ge2e_raises_quiet_clips_to_the_same_level(ge2e):
    x = voiced_clip(250.0, 1.5, 1.0, 3)
    quiet = ge2e.embed_audio([0.01 * x, 0.001 * x])  # both below -30 dBFS: raised to it
    np.testing.assert_allclose(quiet[0], quiet[1], atol=1e-5)
    loud = ge2e.embed_audio([x])  # above -30 dBFS: left as is, so it differs
    assert np.abs(loud[0] - quiet[0]).max() > 1e-3


def test_ge2e_partial_windows_cover_the_clip(ge2e):
    hop, width = ge2e.hop, ge2e.PARTIAL_FRAMES * ge2e.hop
    for n in (1000, 16000, 16000 * 4 + 123, 16000 * 9):
        starts = ge2e._partial_starts(n)
        assert starts[0] == 0 and np.all(np.diff(starts) == ge2e.frame_step)
        # the windows reach the clip's end unless the last one would cover under min_coverage
        end = starts[-1] * hop + width
        assert end >= n or (n - (starts[-1] + ge2e.frame_step) * hop) / width < ge2e.min_coverage


def test_ge2e_loads_offline_and_rejects_a_bad_weights_path(tmp_path, no_network):
    from singerid.eval.baselines.pretrained import (
        ResemblyzerSystem,
        resemblyzer_weights,
    )

    try:
        assert ResemblyzerSystem().weights == resemblyzer_weights()
    except ConfigError as exc:
        pytest.skip(str(exc))

    with pytest.raises(ConfigError, match="not found"):
        ResemblyzerSystem(weights=tmp_path / "missing.pt")


# ---------------------------------------------------------------------------------------------
# Hugging Face encoder from a local folder

_KERNELS, _STRIDES = (10, 3, 3), (5, 2, 2)


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=_KERNELS, conv_stride=_STRIDES,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=8,
    )
    root = tmp_path_factory.mktemp("tiny_w2v")
    Wav2Vec2Model(config).save_pretrained(root)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(root)
    return root


def _n_frames(n: int) -> int:
    for k, s in zip(_KERNELS, _STRIDES):
        n = (n - k) // s + 1
    return n


def test_hf_encoder_shapes_norm_determinism_and_resampling(tiny_w2v, monkeypatch, no_network):
    from singerid.eval.baselines.pretrained import HFEncoderSystem

    system = HFEncoderSystem(tiny_w2v)
    assert system.sample_rate == 16000 and system.dim == 32
    clips = [voiced_clip(220.0, 0.5, 1.0, 0), voiced_clip(330.0, 0.7, 1.4, 1)]
    seen = []
    frames = system.frames

    def spy(audio):
        out = frames(audio)
        seen.append((len(audio), out.shape))
        return out

    monkeypatch.setattr(system, "frames", spy)
    emb = system.embed_audio(clips)
    assert emb.shape == (2, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)
    for clip, (n, shape) in zip(clips, seen):
        assert n == len(resample(clip, 44100, 16000)) == round(len(clip) * 16000 / 44100)
        assert shape == (_n_frames(n), 32)
    np.testing.assert_array_equal(emb, system.embed_audio(clips[::-1])[::-1])
    # mean pooling of the last hidden state, computed here straight from transformers
    import torch

    x = resample(clips[0], 44100, 16000)
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    with torch.inference_mode():
        h = system.model(torch.from_numpy(x)[None]).last_hidden_state[0].numpy()
    pooled = h.mean(0) / np.linalg.norm(h.mean(0))
    np.testing.assert_allclose(emb[0], pooled, atol=1e-5)


def test_hf_encoder_layer_choice_and_fingerprint(tiny_w2v):
    import torch

    from singerid.eval.baselines.pretrained import HFEncoderSystem

    last = HFEncoderSystem(tiny_w2v)
    first = HFEncoderSystem(tiny_w2v, layer=0)
    clip = voiced_clip(200.0, 0.5, 1.0, 2)
    e0 = first.embed_audio([clip])[0]
    x = first.extractor(resample(clip, 44100, 16000), sampling_rate=16000, return_tensors="pt")["input_values"]
    with torch.inference_mode():
        h0 = first.model(x, output_hidden_states=True).hidden_states[0][0].numpy().mean(0)
    np.testing.assert_allclose(e0, h0 / np.linalg.norm(h0), atol=1e-5)
    assert np.abs(e0 - last.embed_audio([clip])[0]).max() > 1e-3
    assert first.fingerprint != last.fingerprint and first.name != last.name
    assert HFEncoderSystem(tiny_w2v).fingerprint == last.fingerprint


def test_hf_encoder_errors(tmp_path, tiny_w2v):
    from singerid.eval.baselines.pretrained import HFEncoderSystem

    with pytest.raises(ConfigError, match="not found"):
        HFEncoderSystem(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="config.json"):
        HFEncoderSystem(tmp_path / "empty")
    with pytest.raises(ConfigError, match="layer"):
        HFEncoderSystem(tiny_w2v, layer=7)


def test_hf_encoder_embeds_segments_and_rejects_tiny_clips(tiny_w2v, tmp_path):
    from singerid.audio import load_audio, write_audio
    from singerid.errors import AudioError
    from singerid.eval.baselines.pretrained import HFEncoderSystem
    from singerid.records import Segment

    system = HFEncoderSystem(tiny_w2v, name="tiny")
    path = write_audio(tmp_path / "s.wav", voiced_clip(260.0, 1.2, 1.1, 7))
    segs = [Segment(str(path), "x", "song", offset=0.0, duration=0.5), Segment(str(path), "x", "song", offset=0.6, duration=0.5)]
    got = system.embed(segs)
    want = system.embed_audio([load_audio(path, offset=s.offset, duration=s.duration) for s in segs])
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(AudioError, match="samples"):
        system.embed_audio([np.full(20, 0.1, np.float32)])
