"""Shared fixtures: small signals and files written by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.data.signals import harmonic_tone, voiced_clip

__all__ = ["harmonic_tone", "voiced_clip", "write_tone_corpus"]


@pytest.fixture
def tone() -> np.ndarray:
    return harmonic_tone(220.0, 1.0)


def write_tone_corpus(root, n_singers: int = 4, n_songs: int = 2, seconds: float = 3.0, seed: int = 0):
    """A folder-per-singer tree of voice-like clips; each singer has its own spectral slope."""
    from singerid.audio import write_audio

    rng = np.random.default_rng(seed)
    paths = []
    for s in range(n_singers):
        brightness = 0.6 + 0.5 * s
        for song in range(n_songs):
            f0 = float(rng.uniform(150, 300))
            paths.append(write_audio(root / f"singer{s}" / f"song{song}.wav", voiced_clip(f0, seconds, brightness, seed + 17 * s + song)))
    return paths


@pytest.fixture(scope="session")
def tone_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tone_corpus")
    write_tone_corpus(root)
    return root


def untrained_model(folder, **options):
    """Save a small untrained model artefact (cpu_small, 32-d, seeded, ``options`` of
    :class:`EncoderConfig` on top) into ``folder/model`` and return its path."""
    import torch

    from singerid.model.artifact import save_artifact
    from singerid.model.backbones import EncoderConfig, build_encoder

    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small", embedding_dim=32, **options)
    return save_artifact(folder / "model", build_encoder(cfg).eval(), cfg)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A small untrained model artefact: enough for everything but accuracy."""
    return untrained_model(tmp_path_factory.mktemp("model"))


def official_state_dict(seed: int = 0) -> dict:
    """A state dict in the authors' layout, from a seeded random torchvision EfficientNet-B0."""
    import torch
    from torchvision.models import efficientnet_b0

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = efficientnet_b0(weights=None, num_classes=1000)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        state = {f"encoder.net.2.{k}": v.clone() for k, v in net.state_dict().items()}
        state["feature_extractor.spec_layer.mel_basis"] = torch.rand(128, 1025)
        state["feature_extractor.spec_layer.window_mask"] = torch.rand(2048)
    return state


@pytest.fixture(scope="session")
def voice_model(tmp_path_factory):
    """A small model that tells the three built-in test voices apart, with a calibrated threshold (see serve_helpers)."""
    from serve_helpers import build_voice_model

    return build_voice_model(tmp_path_factory.mktemp("voice_model") / "model")
