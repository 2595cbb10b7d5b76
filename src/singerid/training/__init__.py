"""Self-supervised training: configuration and paper configs, augmentations, losses, pair data,
the Lightning module, distributed gathering and the run.

Submodules load on first use, so importing ``singerid.training.augment`` (as evaluation's
invariance probes do) does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "METHODS": "config",
    "TrainConfig": "config",
    "builtin_configs": "config",
    "load_config": "config",
    "TrainResult": "run",
    "train": "run",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
