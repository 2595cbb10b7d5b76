"""The training configuration: one dataclass tree, defaults = the paper's values, YAML per method."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..audio import WINDOW_SECONDS
from ..configio import apply_overrides, from_dict, read_yaml, to_dict
from ..errors import ConfigError
from ..model.backbones import EncoderConfig
from .augment import AugmentConfig

METHODS = ("contrastive", "contrastive-vc", "uniformity", "vicreg", "byol")


@dataclass
class OptimConfig:
    """Adam with optional linear warm-up and cosine decay (BYOL in the paper)."""

    lr: float = 1e-4
    weight_decay: float = 1e-5
    warmup_steps: int = 0
    cosine: bool = False
    gradient_clip: float = 3.0


@dataclass
class LossConfig:
    """Objective hyper-parameters (the paper's values)."""

    temperature: float = 0.2
    max_negatives: int = 250
    symmetric: bool = False
    sim_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 100.0
    ema_base: float = 0.99
    predictor_hidden: int = 1024


@dataclass
class TrainConfig:
    """Everything a training run needs besides the data paths."""

    method: str = "contrastive"
    model: EncoderConfig = field(default_factory=EncoderConfig)
    projection_dim: int = 128
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    crop_seconds: float = WINDOW_SECONDS
    batch_size: int = 140
    max_steps: int = 100_000
    checkpoint_every: int = 500
    val_fraction: float = 0.2
    val_crops_per_file: int = 2
    num_workers: int = 2
    preload_audio: bool = True
    precision: str = "auto"
    accelerator: str = "auto"
    devices: str | int = "auto"
    num_nodes: int = 1
    seed: int = 0

    def validate(self) -> "TrainConfig":
        """Raise :class:`ConfigError` for values that cannot work."""
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r} is not one of {', '.join(METHODS)}.")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2 (other items are the negatives).")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction must be in [0, 1).")
        if self.crop_seconds <= 0 or self.max_steps <= 0 or self.checkpoint_every <= 0:
            raise ConfigError("crop_seconds, max_steps and checkpoint_every must be positive.")
        return self

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return from_dict(cls, data, "training config").validate()


def builtin_configs() -> list[str]:
    """Names of the YAML configs shipped with the package."""
    return sorted(p.name[:-5] for p in resources.files("singerid.training.configs").iterdir() if p.name.endswith(".yaml"))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a built-in config by name (``byol``, ``demo``...) or a YAML file, then apply overrides."""
    path = Path(name_or_path)
    if not path.suffix:
        if str(name_or_path) not in builtin_configs():
            raise ConfigError(f"no built-in config {name_or_path!r}; choose one of {', '.join(builtin_configs())} or pass a YAML path.")
        path = Path(str(resources.files("singerid.training.configs") / f"{name_or_path}.yaml"))
    data = apply_overrides(read_yaml(path), overrides or [])
    return TrainConfig.from_dict(data)


def replace(cfg: TrainConfig, **changes) -> TrainConfig:
    """A validated copy of ``cfg`` with top-level fields changed."""
    return dataclasses.replace(cfg, **changes).validate()
