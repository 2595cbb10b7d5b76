"""singerid: singer identity embeddings learned with self-supervision at 44.1 kHz.

The public API; heavy pieces (torch) load on first use, so ``import singerid`` stays light::

    enc = singerid.load_model("runs/demo/<run>/train/model")
    emb = enc.embed_files(["a.wav", "b.wav"])          # (2, dim), L2-normalised
    enc.verify("a.wav", "b.wav", threshold=0.5)
"""

from __future__ import annotations

import importlib
from typing import Any

from .audio import SAMPLE_RATE, load_audio
from .errors import (
    AudioError,
    CheckpointError,
    ConfigError,
    DatasetError,
    SingerIdError,
    TrialsError,
)

__version__ = "0.1.0"

_LAZY = {
    "load_model": "infer",
    "SingerEncoder": "infer",
    "Gallery": "profiles",
    "SingerProfile": "profiles",
    "train": "training",
    "load_config": "training",
    "TrainConfig": "training",
    "evaluate": "eval.evaluate",
    "similarity": "eval.similarity",
    "make_system": "eval.baselines.systems",
    "discover": "data.datasets",
    "segment_recordings": "data.datasets",
    "generate_corpus": "data.synth",
    "export_model": "export.formats",
    "Catalog": "catalog",
}

__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "SingerIdError",
    "TrialsError",
    "__version__",
    "load_audio",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'singerid' has no attribute {name!r}")
