"""One interface for every system under evaluation: segments in, L2-normalised embeddings out.

A :class:`System` has a ``name``, an ``embed(segments)`` method returning float32 ``(n, dim)``
unit rows, and a ``fingerprint`` that changes whenever its output could (it keys the
embedding cache). :func:`make_system` builds one from a spec string:

``model:PATH``
    A trained model artefact (``singerid.infer.load_model``).
``random:PATH`` / ``random:BACKBONE``
    The artefact's network (or the named backbone, e.g. ``cpu_small``) with seeded random
    weights and no ImageNet initialisation: what the architecture gives before training.
``bandlimit:PATH``
    The model on audio resampled to 16 kHz and back: what the band above 8 kHz is worth.
``mfcc`` / ``f0``
    MFCC mean+std / F0 statistics (:mod:`singerid.eval.baselines.handcrafted`). Each feature is
    standardised with the mean and standard deviation of the segments passed in the same
    ``embed`` call (the evaluated set itself, no labels), so that cosine scoring is not
    dominated by the features with the largest scale. These embeddings therefore depend on
    the set they are computed with, unlike the learned ones. An F0 value undefined for a
    segment (no voiced frame) is set to the set's mean (0 after standardisation), with a warning.
``resemblyzer`` / ``hf:DIR``
    Pretrained speech models from :mod:`singerid.eval.baselines.pretrained` (``pip install
    singerid[baselines]``); ``DIR`` is a local Hugging Face model folder.

Any spec may be prefixed with ``NAME=`` to name the system (``byol=model:runs/byol/model``).
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...audio import SAMPLE_RATE, fit_length, load_audio, resample
from ...errors import ConfigError, DatasetError
from ...records import Segment
from ...vectors import l2_normalize

BANDLIMIT_RATE = 16000
"""Sample rate of the band-limited model's detour (the speech models' rate)."""

SPEC_KINDS = ("model", "random", "bandlimit", "mfcc", "f0", "resemblyzer", "hf")

EmbedFn = Callable[[list[Segment], bool], np.ndarray]


class System:
    """A named embedding function over segments.

    ``embed_fn(segments, progress)`` returns an ``(n, dim)`` array; :meth:`embed` checks it
    and L2-normalises its rows. ``fingerprint`` must change whenever the output could.
    """

    def __init__(self, name: str, embed_fn: EmbedFn, fingerprint: str, spec: str | None = None) -> None:
        if not name:
            raise ConfigError("a system needs a non-empty name.")
        self.name = name
        self.fingerprint = fingerprint
        self.spec = spec or name
        self._embed_fn = embed_fn

    def embed(self, segments: Sequence[Segment], *, progress: bool = False) -> np.ndarray:
        """Float32 ``(len(segments), dim)`` unit-norm embeddings."""
        segs = list(segments)
        return l2_normalize(self._embed_fn(segs, progress), what=f"system {self.name!r}", rows=len(segs))

    def __repr__(self) -> str:
        return f"System({self.name!r}, spec={self.spec!r})"


def load_segment(segment: Segment) -> np.ndarray:
    """The segment's audio: mono float32 at :data:`~singerid.audio.SAMPLE_RATE`."""
    return load_audio(segment.path, offset=segment.offset, duration=segment.duration, max_clipped=None)


def _progress(items, progress: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="seg", disable=not progress)


def _code_hash(*modules: str) -> str:
    """SHA-256 prefix of the named modules' source files: code changes invalidate caches."""
    import importlib

    h = hashlib.sha256()
    for name in modules:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()[:16]


_NAME_PREFIX = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")


def make_system(spec: str, *, seed: int = 0, device: str = "cpu", name: str | None = None) -> System:
    """Build the :class:`System` a spec describes (see the module docstring for the specs)."""
    spec = spec.strip()
    m = _NAME_PREFIX.match(spec)
    if m:
        name, spec = name or m.group(1), m.group(2)
    kind, _, arg = spec.partition(":")
    if kind not in SPEC_KINDS:
        raise ConfigError(
            f"unknown system {spec!r}; use one of: model:PATH, random:PATH|BACKBONE, bandlimit:PATH, "
            "mfcc, f0, resemblyzer, hf:DIR (optionally prefixed with NAME=)."
        )
    needs_arg = kind in ("model", "random", "bandlimit", "hf")
    if needs_arg and not arg:
        raise ConfigError(f"system {kind!r} needs a target: {kind}:{'DIR' if kind == 'hf' else 'PATH'}.")
    if not needs_arg and arg:
        raise ConfigError(f"system {kind!r} takes no argument, got {spec!r}.")
    if kind == "model":
        return _model_system(arg, device, name or "model", spec)
    if kind == "random":
        return _random_system(arg, seed, device, name or "random", spec)
    if kind == "bandlimit":
        return _bandlimit_system(arg, device, name or f"bandlimit{BANDLIMIT_RATE // 1000}k", spec)
    if kind in ("mfcc", "f0"):
        return _handcrafted_system(kind, name or kind)
    return _pretrained_system(kind, arg, device, name, spec)


# ---------------------------------------------------------------------------------------------
# Learned models


def _model_fingerprint(kind: str, weights_sha: str, config) -> str:
    import json

    cfg = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
    code = _code_hash("singerid.model.frontend", "singerid.model.backbones", "singerid.infer")
    return f"{kind}:{weights_sha}:{cfg}:{code}"


def _model_system(path: str, device: str, name: str, spec: str) -> System:
    from ...infer import load_model

    encoder = load_model(path, device=device)
    fingerprint = _model_fingerprint("model", encoder.artifact.fingerprint, encoder.artifact.config)
    return System(name, lambda segs, progress: encoder.embed_segments(segs, progress=progress), fingerprint, spec)


def _random_config(target: str):
    """The model config of artefact ``target``, or the default config of backbone ``target``."""
    import dataclasses

    from ...model.artifact import load_artifact
    from ...model.backbones import EncoderConfig
    from ...model.hub import HubSource, parse_model_spec, resolve_model

    try:
        hub_model = isinstance(parse_model_spec(target), HubSource)
    except ConfigError:
        hub_model = False
    if hub_model or Path(target).exists():
        config = load_artifact(resolve_model(target)).config
    else:
        try:
            config = EncoderConfig(backbone=target)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"random:{target}: neither an existing model artefact nor a known backbone ({exc})."
            ) from None
    # A random baseline must not inherit ImageNet weights.
    return dataclasses.replace(config, imagenet_weights=None)


def random_encoder(target: str, seed: int = 0, device: str = "cpu"):
    """A :class:`~singerid.infer.SingerEncoder` with seeded random weights (see ``random:`` specs)."""
    import torch

    from ...infer import SingerEncoder
    from ...model.artifact import Artifact
    from ...model.backbones import build_encoder

    config = _random_config(target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_encoder(config)
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, buf)
    meta = {"weights_sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "embedding_dim": config.embedding_dim}
    return SingerEncoder(Artifact(net=net.eval(), config=config, meta=meta), device=device)


def _random_system(target: str, seed: int, device: str, name: str, spec: str) -> System:
    encoder = random_encoder(target, seed=seed, device=device)
    fingerprint = _model_fingerprint("random", encoder.artifact.fingerprint, encoder.artifact.config)
    return System(name, lambda segs, progress: encoder.embed_segments(segs, progress=progress), fingerprint, spec)


def bandlimit(audio: np.ndarray, rate: int = BANDLIMIT_RATE, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``audio`` resampled to ``rate`` and back (same length): nothing above ``rate / 2`` survives."""
    return fit_length(resample(resample(audio, sample_rate, rate), rate, sample_rate), len(audio))


def _bandlimit_system(path: str, device: str, name: str, spec: str, batch_size: int = 32) -> System:
    from ...infer import load_model

    encoder = load_model(path, device=device)

    def embed(segs: list[Segment], progress: bool) -> np.ndarray:
        out = np.zeros((len(segs), encoder.dim), np.float32)
        batch: list[int] = []
        clips: list[np.ndarray] = []

        def flush() -> None:
            # One embed call per group of equal-length clips; each clip is still embedded alone.
            for length in {len(c) for c in clips}:
                rows = [i for i, c in zip(batch, clips) if len(c) == length]
                out[rows] = encoder.embed(np.stack([c for c in clips if len(c) == length]))
            batch.clear()
            clips.clear()

        for i, s in enumerate(_progress(segs, progress, f"embed {name}")):
            batch.append(i)
            clips.append(bandlimit(load_segment(s)))
            if len(batch) == batch_size:
                flush()
        flush()
        return out

    fingerprint = _model_fingerprint(f"bandlimit{BANDLIMIT_RATE}", encoder.artifact.fingerprint, encoder.artifact.config)
    return System(name, embed, fingerprint, spec)


# ---------------------------------------------------------------------------------------------
# Handcrafted features


def standardize(features: np.ndarray, what: str = "features") -> np.ndarray:
    """Z-score each column with the rows' own mean and std; NaN entries become 0 (the mean).

    Constant columns become 0. Raises when a column is NaN in every row.
    """
    x = np.asarray(features, dtype=np.float64)
    missing = ~np.isfinite(x)
    if missing.all(axis=0).any():
        raise DatasetError(
            f"{what}: a feature is undefined for every segment (e.g. no voiced frame anywhere); "
            "this baseline cannot score the set."
        )
    if missing.any():
        warnings.warn(
            f"{what}: {int(missing.any(axis=1).sum())} of {len(x)} segments have undefined values "
            "(no voiced frame); those values were set to the set's mean.",
            stacklevel=2,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(missing, np.nan, x), axis=0)
        std = np.nanstd(np.where(missing, np.nan, x), axis=0)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    return np.where(missing, 0.0, z).astype(np.float32)


def _handcrafted_system(kind: str, name: str) -> System:
    from . import handcrafted

    feature = handcrafted.mfcc_stats if kind == "mfcc" else handcrafted.f0_stats

    def embed(segs: list[Segment], progress: bool) -> np.ndarray:
        if not segs:
            raise DatasetError(f"{name}: no segments to embed.")
        raw = np.stack([feature(load_segment(s), SAMPLE_RATE) for s in _progress(segs, progress, f"embed {name}")])
        return standardize(raw, what=name)

    fingerprint = f"{kind}:{_code_hash('singerid.eval.baselines.handcrafted', 'singerid.eval.baselines.systems', 'singerid.audio')}"
    return System(name, embed, fingerprint, kind)


# ---------------------------------------------------------------------------------------------
# Pretrained speech models


def _pretrained_system(kind: str, arg: str, device: str, name: str | None, spec: str) -> System:
    try:
        from . import pretrained
    except ImportError as exc:
        raise ConfigError(
            f"system {spec!r} needs the pretrained baselines ({exc}); install them with: pip install singerid[baselines]"
        ) from None
    if kind == "resemblyzer":
        model = pretrained.ResemblyzerSystem(name=name or "resemblyzer")
    else:
        model = pretrained.HFEncoderSystem(arg, device=device, name=name)
    fingerprint = f"{kind}:{model.fingerprint}"
    return System(model.name, lambda segs, progress: model.embed(segs, progress=progress), fingerprint, spec)
