"""The HEAR API (https://hearbenchmark.com/hear-api.html) over a singerid model artefact.

``load_model(path)`` returns a :class:`HearModel`; audio is a float32 tensor
``(n_sounds, n_samples)`` at 44.1 kHz on the model's device.

Scene embeddings
    :meth:`singerid.infer.SingerEncoder.embed` of each sound: 4 s windows averaged. Sounds
    shorter than 1 s are repeated up to 1 s (``short="pad"``) instead of being rejected.

Timestamp embeddings
    One embedding per 1 s window (:data:`TIMESTAMP_WINDOW`) every 250 ms (:data:`TIMESTAMP_HOP`).
    Window ``k`` is centred on ``k * 250`` ms for ``k = 0 .. n_samples // hop`` and the sound is
    padded with half a window of zeros at both ends, so the windows cover the whole sound and
    any length from 10 ms up works (a 0.1 s sound gives one window centred at 0 ms).
    Timestamps are those centres, in milliseconds.

A sound that is empty, silent or not finite raises :class:`~singerid.errors.AudioError`.
Official-compat models (whose features depend on the batch maximum) are run one window at a
time, so every embedding depends on its own audio only.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from ..audio import SAMPLE_RATE, check_audio
from ..errors import AudioError, CheckpointError
from ..infer import SingerEncoder
from ..infer import load_model as load_encoder

TIMESTAMP_WINDOW = SAMPLE_RATE
"""Timestamp embedding window, in samples (1 s)."""
TIMESTAMP_HOP = SAMPLE_RATE // 4
"""Timestamp embedding hop, in samples (250 ms)."""
BATCH_SIZE = 64
"""Windows run through the network at once."""
MIN_SAMPLES = SAMPLE_RATE // 100
"""Shortest sound accepted (10 ms): shorter ones carry no singer identity."""


class HearModel(nn.Module):
    """A singerid encoder with the attributes the HEAR API expects.

    ``encoder`` is the :class:`~singerid.infer.SingerEncoder` used for scene embeddings; its
    network is registered as the submodule ``net``, so ``model.to(device)`` moves it.
    """

    def __init__(self, encoder: SingerEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.net = encoder.net
        self.sample_rate = SAMPLE_RATE
        self.scene_embedding_size = encoder.dim
        self.timestamp_embedding_size = encoder.dim

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Scene embeddings, as :func:`get_scene_embeddings`."""
        return get_scene_embeddings(audio, self)

    def sync_device(self) -> torch.device:
        """Point the encoder at the device the network now lives on (after ``model.to(...)``)."""
        device = next(self.net.parameters()).device
        self.encoder.device = device
        return device


def load_model(model_file_path: str = "") -> HearModel:
    """Load a singerid model artefact (folder or ``.pt`` file) for the HEAR API."""
    if not model_file_path:
        raise CheckpointError(
            "HEAR load_model: pass a model: a known name such as 'byol' (the authors' released models, "
            "see `singerid models`), hf:OWNER/REPO, or the path of a model artefact."
        )
    return HearModel(load_encoder(os.fspath(model_file_path), short="pad", min_seconds=1.0))


def _check_sounds(audio: torch.Tensor, model: HearModel) -> np.ndarray:
    if not isinstance(audio, torch.Tensor) or audio.dim() != 2:
        shape = list(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
        raise AudioError(f"HEAR audio: expected a tensor (n_sounds, n_samples), got {shape}.")
    if audio.shape[0] == 0:
        raise AudioError("HEAR audio: got a batch of 0 sounds.")
    if audio.shape[1] < MIN_SAMPLES:
        raise AudioError(
            f"HEAR audio: sounds of {audio.shape[1]} samples are too short; pass at least {MIN_SAMPLES} (10 ms)."
        )
    sounds = audio.detach().to("cpu", torch.float32).numpy()
    for i, sound in enumerate(sounds):
        check_audio(sound, f"HEAR sound {i}", model.sample_rate, max_clipped=None)
    return sounds


def _batch_size(model: HearModel) -> int:
    # Official-compat models normalise by the batch maximum: run them one window at a time so
    # that each embedding depends on its own window only.
    return 1 if model.encoder.artifact.config.frontend.mode == "official-compat" else BATCH_SIZE


def get_scene_embeddings(audio: torch.Tensor, model: HearModel) -> torch.Tensor:
    """One L2-normalised embedding per sound, ``(n_sounds, scene_embedding_size)``."""
    sounds = _check_sounds(audio, model)
    model.sync_device()
    emb = model.encoder.embed(sounds, model.sample_rate, batch_size=_batch_size(model))
    return torch.from_numpy(emb).to(audio.device)


def timestamp_centres(n_samples: int) -> np.ndarray:
    """Centre sample of each timestamp window for a sound of ``n_samples`` samples."""
    return np.arange(n_samples // TIMESTAMP_HOP + 1) * TIMESTAMP_HOP


def get_timestamp_embeddings(audio: torch.Tensor, model: HearModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings ``(n_sounds, n_timestamps, dim)`` and window centres in ms ``(n_sounds, n_timestamps)``."""
    sounds = _check_sounds(audio, model)
    device = model.sync_device()
    half = TIMESTAMP_WINDOW // 2
    centres = timestamp_centres(sounds.shape[1])
    padded = np.pad(sounds, ((0, 0), (half, TIMESTAMP_WINDOW - half)))
    # view[i, c] is padded[i, c : c + window], i.e. samples [c - half, c + half) of sound i.
    view = np.lib.stride_tricks.sliding_window_view(padded, TIMESTAMP_WINDOW, axis=1)
    sound_idx, centre_idx = np.repeat(np.arange(len(sounds)), len(centres)), np.tile(centres, len(sounds))
    batch = _batch_size(model)
    out = []
    with torch.inference_mode():
        for start in range(0, len(sound_idx), batch):
            rows = slice(start, start + batch)
            x = torch.from_numpy(np.ascontiguousarray(view[sound_idx[rows], centre_idx[rows]]))
            h = model.net(x.to(device, model.encoder.dtype)).float()
            out.append(nn.functional.normalize(h, dim=-1).cpu())
    emb = torch.cat(out).reshape(len(sounds), len(centres), -1)
    ms = torch.from_numpy(centres * 1000.0 / model.sample_rate).float()
    return emb.to(audio.device), ms.expand(len(sounds), -1).contiguous().to(audio.device)
