"""Singer profiles (enrolled reference embeddings) and galleries of them, saved as ``.npz`` files."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .fileio import atomic_path
from .vectors import l2_normalize

UNKNOWN = "unknown"


@dataclass
class SingerProfile:
    """A named singer: the embeddings of their reference clips, their normalised centroid, and
    the total seconds of audio enrolled (None when unknown, as in galleries saved before it was kept)."""

    name: str
    embeddings: np.ndarray
    seconds: float | None = None

    @property
    def centroid(self) -> np.ndarray:
        return l2_normalize(np.asarray(self.embeddings, np.float32).mean(0))


@dataclass(frozen=True)
class Match:
    """One ranked answer of :meth:`Gallery.rank`."""

    name: str
    score: float


@dataclass
class Gallery:
    """Profiles enrolled with one model (identified by its weights' fingerprint)."""

    model_fingerprint: str
    profiles: dict[str, SingerProfile] = field(default_factory=dict)

    def add(self, profile: SingerProfile, replace: bool = False) -> None:
        """Add a profile; an existing name gets the new clips appended unless ``replace``."""
        if profile.name == UNKNOWN:
            raise ConfigError(f"'{UNKNOWN}' is reserved for open-set rejections; choose another name.")
        old = self.profiles.get(profile.name)
        if old is not None and not replace:
            seconds = None if old.seconds is None or profile.seconds is None else old.seconds + profile.seconds
            profile = SingerProfile(profile.name, np.concatenate([old.embeddings, profile.embeddings]), seconds)
        self.profiles[profile.name] = profile

    def check_model(self, fingerprint: str) -> None:
        """Raise when the gallery was built with a different model than ``fingerprint``."""
        if fingerprint != self.model_fingerprint:
            raise CheckpointError(
                "these profiles were enrolled with a different model; enroll the singers again with this model."
            )

    def rank(self, embedding: np.ndarray, top: int = 5) -> list[Match]:
        """The ``top`` profiles by cosine score of their centroid with ``embedding``, best first."""
        if not self.profiles:
            raise ConfigError("the gallery is empty; enroll singers first (`singerid enroll`).")
        names = sorted(self.profiles)
        centroids = np.stack([self.profiles[n].centroid for n in names])
        scores = centroids @ np.asarray(embedding, np.float32)
        order = np.argsort(-scores, kind="stable")[:top]
        return [Match(names[i], float(scores[i])) for i in order]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the gallery atomically to an ``.npz`` file."""
        arrays = {f"emb_{i}": self.profiles[n].embeddings for i, n in enumerate(sorted(self.profiles))}
        names = sorted(self.profiles)
        meta = {"model_fingerprint": self.model_fingerprint, "names": names, "seconds": [self.profiles[n].seconds for n in names]}
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Gallery":
        """Read a gallery written by :meth:`save`."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: profiles file not found; create it with `singerid enroll NAME clips... --profiles {p}`.")
        if p.is_dir() or not zipfile.is_zipfile(p):
            raise ConfigError(f"{p}: not an .npz archive written by `singerid enroll`; pass the profiles file enroll wrote.")
        try:
            with np.load(p, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                seconds = meta.get("seconds") or [None] * len(meta["names"])
                profiles = {n: SingerProfile(n, data[f"emb_{i}"], seconds[i]) for i, n in enumerate(meta["names"])}
        except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ConfigError(
                f"{p}: not a singerid profiles file, or a damaged one ({first}); enroll the singers again with `singerid enroll`."
            ) from exc
        return cls(meta["model_fingerprint"], profiles)
