"""Shared fixtures: small signals and files written by the tests themselves."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.audio import SAMPLE_RATE


def harmonic_tone(f0: float, seconds: float, sample_rate: int = SAMPLE_RATE, n_harmonics: int = 10) -> np.ndarray:
    """A harmonic tone at ``f0`` with 1/k amplitudes, peak 0.5."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n_harmonics + 1) if f0 * k < sample_rate / 2)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture
def tone() -> np.ndarray:
    return harmonic_tone(220.0, 1.0)


def voiced_clip(f0: float, seconds: float, brightness: float, seed: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A voice-like clip: harmonics of ``f0`` with a singer-specific spectral slope, vibrato and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))) / sample_rate
    x = np.zeros(n)
    for k in range(1, int(8000 / f0)):
        x += np.sin(k * phase) * k ** (-brightness)
    x += 0.01 * rng.standard_normal(n)
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


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
