"""The model artefact: encoder weights + model/frontend config + training config + calibration + version.

Two equivalent forms: a folder holding ``config.json`` and ``weights.pt``, or one ``.pt`` file
holding both. Loading checks the format, the version and that the weights fit the config.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..audio import SAMPLE_RATE, WINDOW_SECONDS
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path, write_text
from .backbones import EncoderConfig, SingerEncoderNet, build_encoder

FORMAT = "singerid-model"
FORMAT_VERSION = 1


@dataclass
class Artifact:
    """A loaded artefact: the network (eval mode) and its metadata."""

    net: SingerEncoderNet
    config: EncoderConfig
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def calibration(self) -> dict[str, Any]:
        """Stored score calibration (thresholds, logistic parameters); empty when none was fitted."""
        return dict(self.meta.get("calibration") or {})

    @property
    def window_seconds(self) -> float:
        """The crop length the model was trained with: inference's default window."""
        return float(self.meta.get("window_seconds") or WINDOW_SECONDS)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the weights: ties profiles and embedding caches to the exact model."""
        return str(self.meta["weights_sha256"])


def _state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def save_artifact(
    path: str | os.PathLike,
    net: SingerEncoderNet,
    config: EncoderConfig,
    *,
    training: dict | None = None,
    calibration: dict | None = None,
    extra: dict | None = None,
    window_seconds: float = WINDOW_SECONDS,
) -> Path:
    """Write ``net`` as an artefact: a folder, or a single file when ``path`` ends in ``.pt``.

    ``window_seconds`` is the crop length the model was trained with; inference cuts audio into
    windows of that length by default.
    """
    if window_seconds <= 0:
        raise ConfigError(f"window_seconds={window_seconds}: must be positive.")
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    blob = _state_bytes(state)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "singerid_version": __version__,
        "sample_rate": SAMPLE_RATE,
        "window_seconds": float(window_seconds),
        "embedding_dim": config.embedding_dim,
        "model": config.to_dict(),
        "training": training,
        "calibration": calibration,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        **(extra or {}),
    }
    if path.suffix == ".pt":
        with atomic_path(path) as tmp:
            torch.save({"meta": meta, "state_dict": state}, tmp)
    else:
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "weights.pt") as tmp:
            tmp.write_bytes(blob)
        write_text(path / "config.json", json.dumps(meta, indent=2) + "\n")
    return path


def update_calibration(path: str | os.PathLike, calibration: dict) -> Path:
    """Store ``calibration`` in an existing artefact (weights untouched)."""
    art = load_artifact(path)
    return save_artifact(
        path, art.net, art.config, training=art.meta.get("training"), calibration=calibration, window_seconds=art.window_seconds
    )


def _read(path: Path) -> tuple[dict, dict]:
    if not path.exists():
        raise CheckpointError(f"{path}: model artefact not found. Train one with `singerid train` or pass the right path.")
    try:
        if path.is_dir():
            cfg_file, weights = path / "config.json", path / "weights.pt"
            if not cfg_file.is_file() or not weights.is_file():
                raise CheckpointError(
                    f"{path}: not a singerid model folder (needs config.json and weights.pt). "
                    "For the authors' released checkpoints use `singerid import-official`."
                )
            meta = json.loads(cfg_file.read_text(encoding="utf-8"))
            state = torch.load(weights, map_location="cpu", weights_only=True)
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or "meta" not in blob or "state_dict" not in blob:
                raise CheckpointError(
                    f"{path}: not a singerid model file. Lightning checkpoints live in RUN/checkpoints; "
                    "the model artefact is RUN/model. For the authors' checkpoints use `singerid import-official`."
                )
            meta, state = blob["meta"], blob["state_dict"]
    except CheckpointError:
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: cannot read the model artefact ({first_line}); it is corrupt or truncated. Re-export it."
        ) from exc
    return meta, state


def load_artifact(path: str | os.PathLike, device: str | torch.device = "cpu") -> Artifact:
    """Load an artefact and return the network in eval mode; mismatches raise :class:`CheckpointError`."""
    path = Path(path)
    meta, state = _read(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: format {meta.get('format')!r} is not {FORMAT!r}.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: artefact format {meta['format_version']} is newer than this singerid ({__version__}) reads; upgrade singerid."
        )
    if meta.get("sample_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise CheckpointError(
            f"{path}: the model was saved for {meta['sample_rate']} Hz audio, but singerid runs models at {SAMPLE_RATE} Hz; "
            "re-train or re-import it with this singerid."
        )
    try:
        config = EncoderConfig.from_dict(meta["model"])
    except (ConfigError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: model config is not valid ({exc}).") from exc
    # The stored weights replace any initialisation, so an ImageNet file named in the config is not needed.
    net = build_encoder(config, load_imagenet=False)
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{path}: weights do not match the {config.backbone} config: {'; '.join(parts)}.")
    net.load_state_dict(state)
    net.eval().to(device)
    return Artifact(net=net, config=config, meta=meta, path=path)
