"""Import the authors' released checkpoints (their ``IdentityEncoder``) as a singerid artefact.

A released model is a folder with ``model.pt`` (a state dict, or a dict holding one) and
optionally ``hyperparams.yaml``. In the state dict the torchvision EfficientNet-B0 sits under
``encoder.net.2.`` (``features.*``, ``classifier.1.*``) and the spectrogram layer's buffers under
``feature_extractor.spec_layer.``. The EfficientNet keys are renamed onto
:class:`~singerid.model.backbones.SingerEncoderNet` (efficientnet_b0 backbone, 1000-d embedding,
frontend mode ``"official-compat"``); the spectrogram buffers are dropped because the frontend
is rebuilt from its settings, and projection/predictor heads are dropped with a note (only the
encoder output ``h`` is used downstream). Any other key, a missing key or a wrong shape is a
:class:`~singerid.errors.CheckpointError`.

``hyperparams.yaml`` is read with a YAML loader that turns unknown tags (hyperpyyaml's
``!new:`` and friends) into plain values. Only these entries are used: ``feature_extractor``
(``spec_layer``, ``n_fft``, ``hop_length``, ``n_mels``), ``encoder`` (``backbone``,
``embedding_dim``) and a ``sample_rate`` at the top level or in ``feature_extractor``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import CheckpointError, ConfigError
from .backbones import EFFICIENTNET_PREFIX, EncoderConfig, build_encoder
from .frontend import FrontendConfig

OFFICIAL_PREFIX = "encoder.net.2."
"""Where the authors' state dict keeps torchvision's EfficientNet-B0."""
SPEC_PREFIX = "feature_extractor.spec_layer."
"""The authors' spectrogram layer buffers (recomputed here, so ignored)."""
HEAD_PREFIXES = ("projection.", "projector.", "predictor.")
"""Training heads that may be saved alongside the encoder (ignored)."""
WEIGHTS_FILE = "model.pt"
HPARAMS_FILE = "hyperparams.yaml"
OFFICIAL_SPEC_LAYER = "melspectogram"
"""The authors' name (sic) for their mel spectrogram layer; their other option, ``stft``, is not supported."""
OFFICIAL_EMBEDDING_DIM = 1000
OFFICIAL_SAMPLE_RATE = 44100
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
"""Where a dict holding a state dict is looked for."""


@dataclass(frozen=True)
class OfficialImport:
    """What :func:`import_official` read and wrote."""

    path: Path
    config: EncoderConfig
    n_tensors: int
    ignored: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class _TolerantLoader(yaml.SafeLoader):
    """SafeLoader that reads any ``!tag`` node as the plain scalar, list or mapping it tags."""


def _untagged(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _untagged)
_TolerantLoader.add_multi_constructor("tag:", _untagged)


def read_hyperparams(path: str | os.PathLike) -> dict:
    """``hyperparams.yaml`` as plain Python values (custom tags become plain values)."""
    p = Path(path)
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_TolerantLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CheckpointError(f"{p}: cannot read as YAML ({exc}). Fix or remove the file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckpointError(f"{p}: expected a mapping at the top level, got {type(data).__name__}.")
    return data


def _section(hparams: dict, name: str, source: Path) -> dict:
    value = hparams.get(name) or {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: '{name}' should be a mapping, got {type(value).__name__}.")
    return value


def config_from_hyperparams(hparams: dict, source: str | os.PathLike = HPARAMS_FILE) -> EncoderConfig:
    """The :class:`EncoderConfig` matching the authors' hyperparameters (official-compat frontend).

    Raises :class:`CheckpointError` for settings the official-compat model cannot reproduce.
    """
    source = Path(source)
    feats = _section(hparams, "feature_extractor", source)
    encoder = _section(hparams, "encoder", source)
    problems = []
    spec_layer = feats.get("spec_layer", OFFICIAL_SPEC_LAYER)
    if spec_layer != OFFICIAL_SPEC_LAYER:
        problems.append(f"feature_extractor.spec_layer={spec_layer!r} (only {OFFICIAL_SPEC_LAYER!r} is supported)")
    backbone = encoder.get("backbone", "efficientnet_b0")
    if backbone != "efficientnet_b0":
        problems.append(f"encoder.backbone={backbone!r} (only 'efficientnet_b0' is supported)")
    dim = encoder.get("embedding_dim", OFFICIAL_EMBEDDING_DIM)
    if dim != OFFICIAL_EMBEDDING_DIM:
        problems.append(f"encoder.embedding_dim={dim!r} (only {OFFICIAL_EMBEDDING_DIM} is supported)")
    for where, table in (("sample_rate", hparams), ("feature_extractor.sample_rate", feats)):
        if "sample_rate" in table and table["sample_rate"] != OFFICIAL_SAMPLE_RATE:
            problems.append(f"{where}={table['sample_rate']!r} (the released models take {OFFICIAL_SAMPLE_RATE} Hz audio)")
    if problems:
        raise CheckpointError(f"{source}: not an official-compat model: {'; '.join(problems)}.")
    defaults = FrontendConfig()
    try:
        frontend = FrontendConfig(
            n_fft=feats.get("n_fft", defaults.n_fft),
            hop_length=feats.get("hop_length", defaults.hop_length),
            n_mels=feats.get("n_mels", defaults.n_mels),
            mode="official-compat",
        )
    except ConfigError as exc:
        raise CheckpointError(f"{source}: feature_extractor settings are not valid ({exc}).") from exc
    return EncoderConfig(backbone="efficientnet_b0", embedding_dim=OFFICIAL_EMBEDDING_DIM, frontend=frontend)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in ``path``: the file itself, or one held under ``state_dict``/``model_state_dict``/``model``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found. Pass the folder holding the released {WEIGHTS_FILE}.")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe pickles
        raise CheckpointError(
            f"{p}: cannot read it as a plain torch state dict ({exc}). Save the model's state_dict() alone and retry."
        ) from exc
    if _is_state_dict(blob):
        return blob
    if isinstance(blob, dict):
        for key in STATE_DICT_KEYS:
            if _is_state_dict(blob.get(key)):
                return blob[key]
    kind = f"a dict with keys {', '.join(map(str, list(blob)[:5]))}" if isinstance(blob, dict) else type(blob).__name__
    raise CheckpointError(
        f"{p}: holds {kind}, not a state dict (or a dict holding one under {', '.join(STATE_DICT_KEYS)})."
    )


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return f"{shown}{', ...' if len(keys) > 5 else ''} ({len(keys)} in all)"


def map_official_state(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], source: str | os.PathLike
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Rename the authors' EfficientNet keys onto ``own`` (a SingerEncoderNet state dict).

    Returns the mapped state and how many keys of each ignored kind were dropped. Keys that
    fit nowhere, keys ``own`` needs but ``state`` lacks, and shape mismatches raise
    :class:`CheckpointError` naming them.
    """
    mapped: dict[str, torch.Tensor] = {}
    ignored = {"spectrogram buffers": 0, "projection heads": 0}
    unexpected = []
    for key, value in state.items():
        if key.startswith(OFFICIAL_PREFIX):
            mapped[EFFICIENTNET_PREFIX + key[len(OFFICIAL_PREFIX) :]] = value
        elif key.startswith(SPEC_PREFIX):
            ignored["spectrogram buffers"] += 1
        elif key.startswith(HEAD_PREFIXES):
            ignored["projection heads"] += 1
        else:
            unexpected.append(key)
    unexpected += [OFFICIAL_PREFIX + k[len(EFFICIENTNET_PREFIX) :] for k in mapped if k not in own]
    missing = [OFFICIAL_PREFIX + k[len(EFFICIENTNET_PREFIX) :] for k in own if k not in mapped]
    wrong = [
        f"{OFFICIAL_PREFIX}{k[len(EFFICIENTNET_PREFIX):]} {list(mapped[k].shape)} != {list(own[k].shape)}"
        for k in own
        if k in mapped and mapped[k].shape != own[k].shape
    ]
    if unexpected or missing or wrong:
        parts = []
        if unexpected:
            parts.append(f"unexpected keys: {_key_list(sorted(unexpected))}")
        if missing:
            parts.append(f"missing keys: {_key_list(missing)}")
        if wrong:
            parts.append(f"wrong shapes: {_key_list(wrong)}")
        raise CheckpointError(
            f"{source}: not the authors' IdentityEncoder layout (EfficientNet-B0 under '{OFFICIAL_PREFIX}', "
            f"spectrogram buffers under '{SPEC_PREFIX}'); {'; '.join(parts)}."
        )
    return mapped, ignored


def import_official(folder: str | os.PathLike, out: str | os.PathLike, *, extra: dict | None = None) -> OfficialImport:
    """Convert a released model folder (``model.pt`` [+ ``hyperparams.yaml``]) into a singerid artefact at ``out``.

    ``extra`` adds provenance entries to the artefact's metadata (e.g. where the hub served it from).
    """
    from .artifact import save_artifact

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: not a folder. Pass the folder that holds the released {WEIGHTS_FILE} and {HPARAMS_FILE}."
        )
    weights = folder / WEIGHTS_FILE
    hparams_path = folder / HPARAMS_FILE
    notes = []
    if hparams_path.is_file():
        hparams = read_hyperparams(hparams_path)
    else:
        hparams = {}
        notes.append(f"no {HPARAMS_FILE} in {folder}: assumed the paper's settings (n_fft 2048, hop 512, 128 mels).")
    config = config_from_hyperparams(hparams, hparams_path)
    state = read_state_dict(weights)
    net = build_encoder(config)
    mapped, ignored = map_official_state(state, net.state_dict(), weights)
    net.load_state_dict(mapped)
    net.eval()
    if ignored["projection heads"]:
        notes.append(f"ignored {ignored['projection heads']} projection-head tensor(s): embeddings are the encoder output h.")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    provenance = {
        "source": "official",
        "official": {
            "folder": str(folder.resolve()),
            "model_pt_sha256": digest,
            "hyperparams": {
                "n_fft": config.frontend.n_fft,
                "hop_length": config.frontend.hop_length,
                "n_mels": config.frontend.n_mels,
            },
            "ignored": ignored,
        },
        **(extra or {}),
    }
    path = save_artifact(out, net, config, extra=provenance)
    return OfficialImport(path=Path(path), config=config, n_tensors=len(mapped), ignored=ignored, notes=notes)
