"""Pretrained speech encoders as baselines (optional extra ``singerid[baselines]``).

- :class:`ResemblyzerSystem`: the GE2E speaker encoder whose weights ship inside the
  ``resemblyzer`` wheel (``resemblyzer/pretrained.pt``), at 16 kHz.
- :class:`HFEncoderSystem`: any Hugging Face audio encoder (wav2vec 2.0, HuBERT, WavLM, ...)
  from a local folder, mean-pooled over time, at the model's own sampling rate.

Neither downloads anything. Both take 44.1 kHz clips (or any rate the caller names) and
resample them at the edge with :func:`singerid.audio.resample`; both return float32
``(n, dim)`` L2-normalised embeddings and embed each clip on its own, so an embedding never
depends on its batch-mates. Heavy libraries are imported only when a system is built.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...audio import SAMPLE_RATE, load_audio, resample
from ...errors import AudioError, ConfigError
from ...vectors import l2_normalize

_EXTRA_HINT = "install the baselines extra: pip install 'singerid[baselines]'"


def _check_clip(clip, index: int) -> np.ndarray:
    x = np.asarray(clip, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise AudioError(f"clip {index}: expected a non-empty mono array of shape (samples,), got shape {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"clip {index}: holds NaN or infinite samples; re-export the source audio.")
    return x


def _file_digest(paths: Iterable[Path], extra: str = "") -> str:
    """SHA-256 of the files' names and bytes, this module's source (the preprocessing) and ``extra``."""
    h = hashlib.sha256(extra.encode())
    h.update(Path(__file__).read_bytes())
    for p in sorted(paths):
        h.update(p.name.encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class _AudioSystem:
    """Shared plumbing: arrays or segments -> audio at :attr:`sample_rate` -> one clip at a time."""

    name: str
    sample_rate: int
    dim: int

    def embed_audio(self, clips: Sequence[np.ndarray], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Embed mono clips at ``sample_rate`` -> float32 ``(len(clips), dim)``, L2-normalised."""
        out = [self._embed_one(resample(_check_clip(c, i), sample_rate, self.sample_rate)) for i, c in enumerate(clips)]
        return np.stack(out) if out else np.zeros((0, self.dim), np.float32)

    def embed(self, segments: Sequence, progress: bool = False) -> np.ndarray:
        """Embed :class:`~singerid.records.Segment` crops -> ``(n, dim)``."""
        from tqdm.auto import tqdm

        out = np.zeros((len(segments), self.dim), np.float32)
        for i, seg in enumerate(tqdm(segments, desc=self.name, unit="seg", disable=not progress)):
            # Read straight at the model's rate: one resampling from the file's own rate.
            audio = load_audio(seg.path, self.sample_rate, offset=seg.offset, duration=seg.duration, max_clipped=None)
            out[i] = self._embed_one(audio)
        return out

    def _embed_one(self, audio: np.ndarray) -> np.ndarray:
        """One unit-norm embedding of a clip already at :attr:`sample_rate`."""
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------
# GE2E (Resemblyzer weights)


def resemblyzer_weights() -> Path:
    """Path of the GE2E weights shipped in the installed ``resemblyzer`` package.

    The package is located without being imported: resemblyzer 0.1.4 imports ``webrtcvad``,
    whose 2.0.10 release needs ``pkg_resources``, absent from setuptools >= 81. Only the
    weights are needed here; the network and its input features are defined below.
    """
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the GE2E baseline needs the resemblyzer package; {_EXTRA_HINT}.")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise ConfigError(f"{path}: resemblyzer's bundled weights are missing; reinstall resemblyzer ({_EXTRA_HINT}).")
    return path


class ResemblyzerSystem(_AudioSystem):
    """GE2E speaker encoder (3-layer LSTM, 256-d) with Resemblyzer's released weights.

    Input handling follows Resemblyzer's ``embed_utterance``: 16 kHz audio, 40-band power
    mel spectrogram (25 ms windows, 10 ms hop), 160-frame (1.6 s) partial windows at
    ``rate`` windows per second (the last one zero-padded when it covers at least
    ``min_coverage``), partial embeddings averaged and L2-normalised. Of
    ``preprocess_wav`` only the level normalisation is applied (quiet clips are raised to
    -30 dBFS RMS, loud ones left alone); its voice-activity trimming is not, because it would
    cut the pauses and soft passages of a sung segment and so change what is being compared.
    """

    sample_rate = 16000
    dim = 256
    N_MELS = 40
    WIN_MS, HOP_MS = 25, 10
    PARTIAL_FRAMES = 160
    TARGET_DBFS = -30.0

    def __init__(
        self, *, weights: str | os.PathLike | None = None, rate: float = 1.3, min_coverage: float = 0.75, name: str = "resemblyzer"
    ):
        import torch

        self.name = name
        self.weights = Path(weights) if weights is not None else resemblyzer_weights()
        if not self.weights.is_file():
            raise ConfigError(f"{self.weights}: GE2E weights file not found; pass the path of resemblyzer's pretrained.pt.")
        if not 0 < min_coverage <= 1:
            raise ConfigError(f"min_coverage must be in (0, 1], got {min_coverage}.")
        self.hop = self.sample_rate * self.HOP_MS // 1000
        self.frame_step = int(round(self.sample_rate / rate / self.hop))
        if not 0 < self.frame_step <= self.PARTIAL_FRAMES:
            raise ConfigError(
                f"rate={rate} partial windows per second must lie in "
                f"[{self.sample_rate / (self.hop * self.PARTIAL_FRAMES):.3f}, {self.sample_rate / self.hop:.0f}]."
            )
        self.rate, self.min_coverage = rate, min_coverage
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)["model_state"]
        except Exception as exc:
            raise ConfigError(f"{self.weights}: cannot read the GE2E weights ({exc}); reinstall resemblyzer.") from exc
        self.lstm = torch.nn.LSTM(self.N_MELS, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, self.dim)
        self.lstm.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
        self.linear.load_state_dict({k[len("linear."):]: v for k, v in state.items() if k.startswith("linear.")})
        self.lstm.eval()
        self.linear.eval()
        self.fingerprint = _file_digest([self.weights], extra=f"ge2e:rate={rate}:cov={min_coverage}")

    def _partial_starts(self, n_samples: int) -> list[int]:
        """First mel frame of each partial window; windows cover the clip from start to end."""
        n_frames = -(-(n_samples + 1) // self.hop)
        starts = list(range(0, max(1, n_frames - self.PARTIAL_FRAMES + self.frame_step + 1), self.frame_step))
        win = self.PARTIAL_FRAMES * self.hop
        coverage = (n_samples - starts[-1] * self.hop) / win
        if coverage < self.min_coverage and len(starts) > 1:
            starts.pop()
        return starts

    def _embed_one(self, audio: np.ndarray) -> np.ndarray:
        import librosa
        import torch

        rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
        if rms == 0:
            raise AudioError("clip is digital silence; GE2E cannot embed it. Pass a crop that contains singing.")
        gain = 10 ** ((self.TARGET_DBFS - 20 * np.log10(rms)) / 20)
        wav = (audio * gain if gain > 1 else audio).astype(np.float32)
        starts = self._partial_starts(len(wav))
        need = (starts[-1] + self.PARTIAL_FRAMES) * self.hop
        wav = np.pad(wav, (0, max(0, need - len(wav))))
        mel = librosa.feature.melspectrogram(
            y=wav, sr=self.sample_rate, n_fft=self.sample_rate * self.WIN_MS // 1000, hop_length=self.hop, n_mels=self.N_MELS
        ).astype(np.float32).T
        batch = np.stack([mel[s : s + self.PARTIAL_FRAMES] for s in starts])
        with torch.inference_mode():
            _, (hidden, _) = self.lstm(torch.from_numpy(batch))
            partial = torch.relu(self.linear(hidden[-1]))
            partial = partial / partial.norm(dim=1, keepdim=True)
        return l2_normalize(partial.mean(0).numpy())


# ---------------------------------------------------------------------------------------------
# Hugging Face encoders from a local folder

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class HFEncoderSystem(_AudioSystem):
    """A local Hugging Face audio encoder, mean-pooled over frames.

    ``layer=None`` pools the last hidden state; an integer pools ``hidden_states[layer]``
    (0 is the input to the first transformer layer). Audio is resampled to the feature
    extractor's ``sampling_rate`` and passed through it (its own normalisation included).
    Loading is strictly local (``local_files_only=True``) and leaves the process environment as it was.
    """

    def __init__(self, model_dir: str | os.PathLike, *, layer: int | None = None, device: str = "cpu", name: str | None = None):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ConfigError(
                f"{self.model_dir}: Hugging Face model folder not found. Pass a local folder holding config.json, "
                "the weights and preprocessor_config.json (nothing is downloaded)."
            )
        if not (self.model_dir / "config.json").is_file():
            raise ConfigError(f"{self.model_dir}: no config.json; save the model there with save_pretrained().")
        try:
            import torch
            from transformers import AutoFeatureExtractor, AutoModel
        except ImportError as exc:
            raise ConfigError(f"the Hugging Face baseline needs transformers ({exc}); {_EXTRA_HINT}.") from exc
        try:
            self.extractor = AutoFeatureExtractor.from_pretrained(self.model_dir, local_files_only=True)
            self.model = AutoModel.from_pretrained(self.model_dir, local_files_only=True).to(device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{self.model_dir}: cannot load the Hugging Face model ({exc}).") from exc
        self.sample_rate = int(self.extractor.sampling_rate)
        self.device = torch.device(device)
        n_layers = getattr(self.model.config, "num_hidden_layers", None)
        if layer is not None and n_layers is not None and not -n_layers - 1 <= layer <= n_layers:
            raise ConfigError(f"layer={layer}: {self.model_dir} has hidden states 0..{n_layers}.")
        self.layer = layer
        self.dim = int(self.model.config.hidden_size)
        self.name = name or f"hf-{self.model_dir.name}" + ("" if layer is None else f"-layer{layer}")
        files = [p for p in self.model_dir.iterdir() if p.is_file() and (p.suffix == ".json" or p.name in _WEIGHT_FILES)]
        self.fingerprint = _file_digest(files, extra=f"hf:layer={layer}")

    def frames(self, audio: np.ndarray):
        """Hidden states ``(frames, dim)`` of one clip already at :attr:`sample_rate`."""
        import torch

        inputs = self.extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        try:
            with torch.inference_mode():
                out = self.model(**inputs, output_hidden_states=self.layer is not None)
        except RuntimeError as exc:
            raise AudioError(
                f"{self.model_dir.name}: cannot embed a clip of {len(audio)} samples at {self.sample_rate} Hz ({exc}); "
                "pass longer clips."
            ) from exc
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        return hidden[0].float().cpu().numpy()

    def _embed_one(self, audio: np.ndarray) -> np.ndarray:
        return l2_normalize(self.frames(audio).mean(axis=0))
