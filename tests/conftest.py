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
