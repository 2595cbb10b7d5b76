"""Encoder networks: waveform -> log-mel frontend -> backbone -> embedding ``h``; heads for training.

Backbones (``EncoderConfig.backbone``):

``"efficientnet_b0"`` (the paper's)
    torchvision's EfficientNet-B0 built with ``weights=None`` (nothing is ever downloaded),
    fed a 3-channel copy of the log-mel ``(B, 3, n_mels, frames)``. Its own global average
    pooling and classifier (Dropout + Linear 1280 -> embedding_dim) produce ``h``; with the
    default 1000-d embedding this is exactly torchvision's ImageNet head, as in the paper.
    The torchvision module is kept intact as ``SingerEncoderNet.backbone.net``, so its
    state-dict keys are ``backbone.net.features.*``, ``backbone.net.classifier.1.weight`` and
    ``backbone.net.classifier.1.bias``. A released checkpoint that stores the same network
    under another prefix loads after replacing that prefix with :data:`EFFICIENTNET_PREFIX`.
    In official-compat frontend mode the 3-channel copy is normalised with the ImageNet
    mean/std, as the original did; in standard mode the input is already standardised per
    example and is passed as is.

``"cpu_small"``
    A small CNN (0.27 M parameters) for demos and tests that trains quickly on a laptop CPU:
    a strided stem and depthwise-separable blocks (BatchNorm + ReLU, residual where shapes
    allow) downsample frequency by 32 and time by 64, then mean+std statistics pooling over both
    axes and a Linear layer to ``embedding_dim``.

Both backbones keep their convolution weights and activations in ``channels_last`` memory
format: on CPU this halves the cpu_small training step and speeds EfficientNet-B0 up by ~20%.
The layout survives ``.to()``, ``copy.deepcopy`` and ``load_state_dict``; values and state-dict
keys are unaffected.

``embedding_dim=None`` picks the backbone's default (1000 for efficientnet_b0, 256 for
cpu_small); any positive value is honoured by both. Embeddings are unnormalised; call
``model.eval()`` before inference so BatchNorm uses its running statistics and an embedding
never depends on its batch-mates (in standard frontend mode).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..configio import reject_unknown_keys
from ..errors import CheckpointError, ConfigError
from .frontend import FrontendConfig, LogMelFrontend

BACKBONES = ("efficientnet_b0", "cpu_small")
DEFAULT_EMBEDDING_DIM = {"efficientnet_b0": 1000, "cpu_small": 256}
CPU_PIECES = {"efficientnet_b0": 4}
"""Clips per forward pass on the CPU, by backbone (eager and exported runs alike); a backbone not
listed runs whole batches. Small pieces keep EfficientNet-B0's activations in cache; which size
is fastest is measured in ``benchmarks/bench_embed.py``."""
EFFICIENTNET_PREFIX = "backbone.net."
"""Prefix of the torchvision EfficientNet-B0 keys inside a :class:`SingerEncoderNet` state dict."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = 1000


@dataclass
class EncoderConfig:
    """Settings of :class:`SingerEncoderNet`.

    ``imagenet_weights``: LOCAL path of torchvision's EfficientNet-B0 ImageNet state dict
    (e.g. ``efficientnet_b0_rwightman-7f5810bc.pth``) used to initialise the efficientnet_b0
    backbone; ``None`` keeps the random initialisation. With an embedding size other than
    1000 the ImageNet classifier cannot fit and only ``features.*`` are loaded.
    """

    backbone: str = "efficientnet_b0"
    embedding_dim: int | None = None
    imagenet_weights: str | None = None
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    pooled_norm: bool = False
    """cpu_small only: BatchNorm on the pooled statistics before the embedding layer. Without it
    every embedding shares a large common direction (pooled ReLU activations are all positive),
    which dominates cosine scores and slows self-supervised learning."""
    input_stats: bool = False
    """cpu_small only: also pool the mean and standard deviation over time of each log-mel band
    of the input (the average spectral envelope and its spread) next to the CNN's statistics."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"EncoderConfig.backbone={self.backbone!r}: choose one of {', '.join(BACKBONES)}.")
        if self.embedding_dim is None:
            self.embedding_dim = DEFAULT_EMBEDDING_DIM[self.backbone]
        dim = self.embedding_dim
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            raise ConfigError(f"EncoderConfig.embedding_dim={dim!r}: must be a positive integer (or null).")
        if self.imagenet_weights is not None and self.backbone != "efficientnet_b0":
            raise ConfigError(
                f"EncoderConfig.imagenet_weights is set but backbone={self.backbone!r} has no ImageNet weights; "
                "unset imagenet_weights or use backbone 'efficientnet_b0'."
            )
        for name in ("pooled_norm", "input_stats"):
            if getattr(self, name) and self.backbone != "cpu_small":
                raise ConfigError(f"EncoderConfig.{name} applies to the cpu_small backbone only, not {self.backbone!r}.")
        if isinstance(self.frontend, dict):
            self.frontend = FrontendConfig.from_dict(self.frontend)
        if not isinstance(self.frontend, FrontendConfig):
            kind = type(self.frontend).__name__
            raise ConfigError(f"EncoderConfig.frontend must be a FrontendConfig or a mapping, got {kind}.")

    def to_dict(self) -> dict:
        """Plain JSON-able dict (the frontend nested as a dict)."""
        return {
            "backbone": self.backbone,
            "embedding_dim": self.embedding_dim,
            "imagenet_weights": self.imagenet_weights,
            "frontend": self.frontend.to_dict(),
            "pooled_norm": self.pooled_norm,
            "input_stats": self.input_stats,
        }

    @classmethod
    def from_dict(cls, data: dict) -> EncoderConfig:
        """Inverse of :meth:`to_dict`; unknown keys (also in ``frontend``) raise :class:`ConfigError`."""
        data = reject_unknown_keys(cls, data, "encoder config")
        values = dict(data)
        if "frontend" in values:
            values["frontend"] = FrontendConfig.from_dict(values["frontend"])
        return cls(**values)


def load_imagenet_weights(net: nn.Module, path: str | Path) -> None:
    """Load torchvision EfficientNet-B0 ImageNet weights from the local file ``path`` into ``net``.

    ``net`` is a torchvision ``EfficientNet``. The classifier is loaded only when its shape
    matches (1000 outputs). Raises :class:`CheckpointError` when the file is missing, unreadable,
    or does not hold an EfficientNet-B0 state dict.
    """
    p = Path(path)
    fix = "Pass the local path of torchvision's EfficientNet-B0 ImageNet state dict, or set imagenet_weights to null."
    if not p.is_file():
        raise CheckpointError(f"{p}: ImageNet weights file not found. {fix}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or non-torch files
        raise CheckpointError(f"{p}: cannot read as a torch state dict ({exc}). {fix}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{p}: does not hold a state dict (a mapping of names to tensors). {fix}")
    own = net.state_dict()
    skip_classifier = own["classifier.1.weight"].shape[0] != IMAGENET_CLASSES
    expected = {k for k in own if not (skip_classifier and k.startswith("classifier."))}
    provided = {k for k in state if not (skip_classifier and k.startswith("classifier."))}
    missing, unexpected = sorted(expected - provided), sorted(provided - expected)
    mismatched = sorted(k for k in expected & provided if state[k].shape != own[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
            if keys
        )
        raise CheckpointError(f"{p}: not an EfficientNet-B0 state dict ({detail}). {fix}")
    net.load_state_dict({k: state[k] for k in expected}, strict=not skip_classifier)


class EfficientNetB0Backbone(nn.Module):
    """Log-mel ``(B, n_mels, frames)`` -> torchvision EfficientNet-B0 on a 3-channel copy -> ``(B, dim)``."""

    def __init__(self, embedding_dim: int, imagenet_norm: bool, imagenet_weights: str | None = None) -> None:
        super().__init__()
        from torchvision.models import efficientnet_b0

        self.net = efficientnet_b0(weights=None, num_classes=embedding_dim)
        if imagenet_weights is not None:
            load_imagenet_weights(self.net, imagenet_weights)
        self.net.to(memory_format=torch.channels_last)
        self.imagenet_norm = imagenet_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        image = feats.unsqueeze(1).expand(-1, 3, -1, -1)
        if self.imagenet_norm:
            image = (image - self.mean) / self.std
        return self.net(image.contiguous(memory_format=torch.channels_last))


class _SeparableBlock(nn.Module):
    """Depthwise 3x3 (optionally strided) + pointwise 1x1, each with BatchNorm; residual when shapes match."""

    CONV_BN_PAIRS = (("depthwise", "bn1"), ("pointwise", "bn2"))
    """(convolution, the BatchNorm applied right after it): what :func:`fused_for_inference` folds."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act = nn.ReLU()
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.pointwise(self.act(self.bn1(self.depthwise(x)))))
        if self.residual:
            y = y + x
        return self.act(y)


CPU_SMALL_STEM = 16
CPU_SMALL_BLOCKS = ((16, 32, 2), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1))
"""(in channels, out channels, stride) of the cpu_small separable blocks after the stem."""


class CpuSmallBackbone(nn.Module):
    """Small CNN for CPUs: log-mel ``(B, n_mels, frames)`` -> mean+std pooling -> Linear -> ``(B, dim)``.

    The stem strides 2 in frequency and 4 in time (frames are 11.6 ms apart; identity needs no finer
    time resolution), which keeps the large early activations, and so the training cost, small.
    """

    def __init__(self, embedding_dim: int, pooled_norm: bool = False, input_bands: int = 0) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, CPU_SMALL_STEM, (3, 5), stride=(2, 4), padding=(1, 2), bias=False),
            nn.BatchNorm2d(CPU_SMALL_STEM),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[_SeparableBlock(c_in, c_out, s) for c_in, c_out, s in CPU_SMALL_BLOCKS])
        width = 2 * CPU_SMALL_BLOCKS[-1][1] + 2 * input_bands
        self.input_stats = input_bands > 0
        self.pooled_norm = nn.BatchNorm1d(width) if pooled_norm else nn.Identity()
        self.embed = nn.Linear(width, embedding_dim)
        self.stats_eps = 1e-5
        self.to(memory_format=torch.channels_last)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        image = feats.unsqueeze(1).contiguous(memory_format=torch.channels_last)
        stats = self._mean_std(self.blocks(self.stem(image)).flatten(2))
        if self.input_stats:
            stats += self._mean_std(feats)
        return self.embed(self.pooled_norm(torch.cat(stats, dim=1)))

    def _mean_std(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Mean and standard deviation of ``x`` ``(B, C, T)`` over its last axis."""
        mean = x.mean(dim=2)
        return [mean, torch.sqrt((x - mean.unsqueeze(2)).pow(2).mean(dim=2) + self.stats_eps)]


class SingerEncoderNet(nn.Module):
    """Waveform ``(B, T)`` at ``cfg.frontend.sample_rate`` -> unnormalised embedding ``h`` ``(B, embedding_dim)``.

    ``load_imagenet=False`` skips ``cfg.imagenet_weights`` (use it when a checkpoint's weights are
    loaded right after, so the ImageNet file need not exist on this machine).
    """

    def __init__(self, cfg: EncoderConfig | None = None, load_imagenet: bool = True) -> None:
        super().__init__()
        self.cfg = cfg if cfg is not None else EncoderConfig()
        self.frontend = LogMelFrontend(self.cfg.frontend)
        if self.cfg.backbone == "efficientnet_b0":
            official = self.cfg.frontend.mode == "official-compat"
            weights = self.cfg.imagenet_weights if load_imagenet else None
            self.backbone: nn.Module = EfficientNetB0Backbone(self.cfg.embedding_dim, official, weights)
        else:
            bands = self.cfg.frontend.n_mels if self.cfg.input_stats else 0
            self.backbone = CpuSmallBackbone(self.cfg.embedding_dim, self.cfg.pooled_norm, bands)
        self.embedding_dim = int(self.cfg.embedding_dim)
        """Size of the embedding ``h``."""

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.frontend(wave))


class ProjectionHead(nn.Module):
    """``g``: SiLU -> Linear(in_dim, out_dim) -> L2 normalisation; the losses act on its output."""

    def __init__(self, in_dim: int, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.SiLU(), nn.Linear(in_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.net(h), dim=-1)


class Predictor(nn.Module):
    """BYOL predictor: Linear(dim, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, dim).

    The first Linear has no bias: the BatchNorm that follows would cancel it.
    """

    def __init__(self, dim: int = 128, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_encoder(cfg: EncoderConfig | None = None, load_imagenet: bool = True) -> SingerEncoderNet:
    """The encoder described by ``cfg`` (defaults: the paper's EfficientNet-B0 model).

    Pass ``load_imagenet=False`` when a checkpoint will overwrite the weights anyway.
    """
    return SingerEncoderNet(cfg if cfg is not None else EncoderConfig(), load_imagenet=load_imagenet)


def _fold_batchnorms(module: nn.Module) -> None:
    """Fold, in place, each BatchNorm2d that directly follows a Conv2d into that convolution and
    replace it by an identity: adjacent children of an ``nn.Sequential`` (torchvision's
    Conv2dNormActivation, the cpu_small stem) and the named ``CONV_BN_PAIRS`` of a block."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    for child in module.children():
        _fold_batchnorms(child)
    names = list(module._modules)
    pairs = list(zip(names, names[1:])) if isinstance(module, nn.Sequential) else []
    for conv_name, bn_name in pairs + list(getattr(module, "CONV_BN_PAIRS", ())):
        conv, bn = getattr(module, conv_name), getattr(module, bn_name)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            # In place: the caller folds a copy of its own network.
            conv.weight, conv.bias = fuse_conv_bn_weights(
                conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
            )
            setattr(module, bn_name, nn.Identity())


def fused_for_inference(net: SingerEncoderNet) -> SingerEncoderNet:
    """An eval-mode copy of ``net`` whose backbone has every BatchNorm folded into the convolution
    before it: the same embeddings to float rounding, 1.05-1.2x faster on the CPU. Folding walks
    the modules directly (a torch.fx trace of EfficientNet-B0 would add about a second to every
    model load). ``net`` itself is untouched, so its state dict keeps its BatchNorm entries."""
    out = copy.deepcopy(net).eval()
    _fold_batchnorms(out.backbone)
    out.backbone.to(memory_format=torch.channels_last)
    return out


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values in ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
