"""singerid: singer identity embeddings learned with self-supervision at 44.1 kHz."""

from __future__ import annotations

from .audio import SAMPLE_RATE, load_audio
from .errors import SingerIdError

__version__ = "0.1.0"

__all__ = ["SAMPLE_RATE", "SingerIdError", "__version__", "load_audio"]
