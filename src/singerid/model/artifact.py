"""The model artefact: encoder weights + model/frontend config + training config + calibration + version.

Two equivalent forms: a folder holding ``config.json`` and ``weights.safetensors``, or one file
(``.safetensors``, with the metadata in its header, or ``.pt``). Weights are written as
safetensors, which hold only tensors; ``.pt`` weights of older artefacts still load, with
``torch.load(weights_only=True)``. Loading checks the format, the version, the weights' SHA-256
and that the weights fit the config.

A folder is written whole beside the target and then swapped in, so a crash at any point
leaves the old artefact or the new one, never a mix (see :func:`_swap_in`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..audio import SAMPLE_RATE, WINDOW_SECONDS
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_path, fsync_path, write_text
from .backbones import EncoderConfig, SingerEncoderNet, build_encoder

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
LEGACY_WEIGHTS_FILE = "weights.pt"
_HEADER_KEY = "singerid"
FORMAT = "singerid-model"
FORMAT_VERSION = 2
"""2: safetensors weights; 1: weights.pt (still read)."""


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
    """Safetensors bytes of ``state`` (deterministic: the same tensors give the same bytes)."""
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def weights_file(folder: str | os.PathLike) -> Path:
    """The weights file of an artefact folder: ``weights.safetensors``, or ``weights.pt`` for format 1."""
    folder = Path(folder)
    new = folder / WEIGHTS_FILE
    return new if new.is_file() or not (folder / LEGACY_WEIGHTS_FILE).is_file() else folder / LEGACY_WEIGHTS_FILE


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
    """Write ``net`` as an artefact: a folder, or a single file when ``path`` ends in ``.safetensors`` or ``.pt``.

    ``window_seconds`` is the crop length the model was trained with; inference cuts audio into
    windows of that length by default. ``extra`` keys (provenance) are stored in the metadata.
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
    elif path.suffix == ".safetensors":
        _write_single(path, state, meta)
    else:
        _swap_in(path, {WEIGHTS_FILE: blob, CONFIG_FILE: (json.dumps(meta, indent=2) + "\n").encode()})
    return path


def _write_single(path: Path, state: dict[str, torch.Tensor], meta: dict) -> None:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={_HEADER_KEY: json.dumps(meta)})


def _swap_in(path: Path, files: dict[str, bytes]) -> None:
    """Write a complete folder beside ``path``, flush it, then rename it into place.

    With an old folder in place, it is first renamed to ``.NAME.old-*`` and removed after the
    swap; a crash between the two renames leaves no ``path`` but a whole old folder, which
    :func:`_recover` puts back on the next load.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path}: is a file; give a folder name (or a .safetensors file name) for the artefact.")
    tag = secrets.token_hex(4)
    new = path.with_name(f".{path.name}.new-{tag}")
    new.mkdir()
    try:
        for name, data in files.items():
            (new / name).write_bytes(data)
            fsync_path(new / name)
        fsync_path(new)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{tag}")
            os.replace(path, old)
            os.replace(new, path)
            fsync_path(path.parent)
            shutil.rmtree(old)
        else:
            os.replace(new, path)
            fsync_path(path.parent)
    finally:
        if new.exists():
            shutil.rmtree(new, ignore_errors=True)


def _recover(path: Path) -> None:
    """Put back the whole old folder a crash in the middle of :func:`_swap_in` left beside ``path``."""
    if path.exists():
        return
    olds = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    if len(olds) == 1 and (olds[0] / CONFIG_FILE).is_file():
        os.replace(olds[0], path)


def update_calibration(path: str | os.PathLike, calibration: dict) -> Path:
    """Store ``calibration`` in an existing artefact: only the metadata is rewritten; provenance is kept."""
    path = Path(path)
    art = load_artifact(path)
    meta = {**art.meta, "calibration": calibration}
    if path.is_dir():
        write_text(path / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    else:
        state = {k: v.detach().cpu() for k, v in art.net.state_dict().items()}
        if path.suffix == ".safetensors":
            _write_single(path, state, meta)
        else:
            with atomic_path(path) as tmp:
                torch.save({"meta": meta, "state_dict": state}, tmp)
    return path


def _read(path: Path) -> tuple[dict, dict]:
    _recover(path)
    if not path.exists():
        raise CheckpointError(f"{path}: model artefact not found. Train one with `singerid train` or pass the right path.")
    try:
        if path.is_dir():
            cfg_file, weights = path / CONFIG_FILE, weights_file(path)
            if not cfg_file.is_file() or not weights.is_file():
                raise CheckpointError(
                    f"{path}: not a singerid model folder (needs {CONFIG_FILE} and {WEIGHTS_FILE}). "
                    "For the authors' released checkpoints use `singerid import-official`."
                )
            meta = json.loads(cfg_file.read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise CheckpointError(f"{cfg_file}: the metadata is not a JSON object; re-export the artefact.")
            blob = weights.read_bytes()
            if meta.get("weights_sha256") != hashlib.sha256(blob).hexdigest():
                raise CheckpointError(
                    f"{path}: {weights.name} does not match the SHA-256 recorded in {CONFIG_FILE} (a damaged or "
                    "half-copied artefact); copy or download it again, or re-save it with `singerid train`."
                )
            state = _load_weights(weights, blob)
        elif path.suffix == ".safetensors":
            meta, state = _read_single(path)
        else:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(blob, dict) or not isinstance(blob.get("meta"), dict) or "state_dict" not in blob:
                raise CheckpointError(
                    f"{path}: not a singerid model file. Lightning checkpoints live in RUN/checkpoints; "
                    "the model artefact is RUN/model. For the authors' checkpoints use `singerid import-official`."
                )
            meta, state = blob["meta"], blob["state_dict"]
            # Format 1 hashed torch.save bytes, which cannot be reproduced reliably; from 2 on the hash is checked.
            if int(meta.get("format_version", 0)) >= 2:
                _check_state_hash(path, meta, state)
    except CheckpointError:
        raise
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(
            f"{path}: cannot read the model artefact ({first_line}); it is corrupt or truncated. Re-export it."
        ) from exc
    return meta, state


def _load_weights(weights: Path, blob: bytes) -> dict:
    if weights.suffix == ".safetensors":
        from safetensors.torch import load

        return load(blob)
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def _read_single(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        header = (fh.metadata() or {}).get(_HEADER_KEY)
        if header is None:
            raise CheckpointError(f"{path}: a safetensors file without singerid metadata; it is not a singerid model.")
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    meta = json.loads(header)
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: the metadata is not a JSON object; re-export the artefact.")
    _check_state_hash(path, meta, state)
    return meta, state


def _check_state_hash(path: Path, meta: dict, state: dict) -> None:
    if meta.get("weights_sha256") != hashlib.sha256(_state_bytes(state)).hexdigest():
        raise CheckpointError(f"{path}: the weights do not match their recorded SHA-256 (a damaged file); copy it again.")


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
