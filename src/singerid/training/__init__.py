"""Self-supervised training: configuration, pair data, the Lightning module, the run."""

from .config import METHODS, TrainConfig, builtin_configs, load_config
from .run import TrainResult, train

__all__ = ["METHODS", "TrainConfig", "TrainResult", "builtin_configs", "load_config", "train"]
