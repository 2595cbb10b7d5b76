"""Resumable bulk extraction: embed many files into one ``.npz`` (ids + vectors) via atomic shards."""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from .data.datasets import AUDIO_EXTENSIONS
from .errors import ConfigError, DatasetError
from .fileio import atomic_path
from .infer import SingerEncoder

log = logging.getLogger(__name__)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded recursively to their audio files (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS)
            if not found:
                raise DatasetError(f"{p}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) found in this folder.")
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise DatasetError("no input files given.")
    return out


def select_part(files: Sequence[Path], part: str | None) -> list[Path]:
    """Files ``K, K+N, K+2N, ...`` for ``part="K/N"`` (all files for ``None``): disjoint shares for N processes."""
    if part is None:
        return list(files)
    try:
        k, n = (int(v) for v in part.split("/"))
    except ValueError:
        raise ConfigError(f"--part {part!r}: write it as K/N, e.g. 0/4.") from None
    if not 0 <= k < n:
        raise ConfigError(f"--part {part!r}: K must be in 0..N-1.")
    return list(files)[k::n]


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], np.ndarray, dict]:
    """Read an embeddings ``.npz`` written by :func:`extract_to_npz` -> (ids, vectors, meta)."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: embeddings file not found; create it with `singerid embed`.")
    try:
        with np.load(p, allow_pickle=False) as data:
            ids, vectors, meta = [str(i) for i in data["ids"]], data["embeddings"], json.loads(str(data["meta"]))
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise DatasetError(f"{p}: not an embeddings .npz written by `singerid embed`, or a damaged one ({first}); embed again.") from exc
    if not isinstance(meta, dict) or len(ids) != len(vectors) or vectors.ndim != 2:
        raise DatasetError(f"{p}: damaged embeddings file ({len(ids)} ids, {len(vectors)} vectors); embed again.")
    return ids, vectors, meta


def _save(path: Path, ids: list[str], emb: np.ndarray, meta: dict) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, ids=np.array(ids), embeddings=emb.astype(np.float32), meta=np.array(json.dumps(meta)))


def extract_to_npz(
    encoder: SingerEncoder,
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    shard_size: int = 256,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_silence: bool = False,
    progress: bool = True,
) -> Path:
    """Embed ``files`` (one vector per file) into ``out`` (.npz with ``ids``, ``embeddings``, ``meta``).

    Work is written in shards of ``shard_size`` files under ``<out>.parts/``; a re-run after an
    interruption skips the shards already written for the same model and file list.
    """
    out = Path(out)
    ids = [str(f) for f in files]
    meta = {"model_fingerprint": encoder.artifact.fingerprint, "dim": encoder.dim, "n": len(ids)}
    parts = out.with_name(out.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)
    chunks = [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]
    done = 0
    for k, chunk in enumerate(tqdm(chunks, desc="shards", unit="shard", disable=not progress or len(chunks) < 2)):
        shard = parts / f"part-{k:05d}.npz"
        if shard.is_file():
            old_ids, _, old_meta = load_embeddings(shard)
            if old_ids == chunk and old_meta.get("model_fingerprint") == meta["model_fingerprint"]:
                done += 1
                continue
        emb = encoder.embed_files(chunk, batch_size=batch_size, num_workers=num_workers, skip_silence=skip_silence, progress=progress)
        _save(shard, chunk, emb, meta)
    if done:
        log.info("resumed: %d of %d shards were already done", done, len(chunks))
    vectors = np.concatenate([load_embeddings(parts / f"part-{k:05d}.npz")[1] for k in range(len(chunks))])
    _save(out, ids, vectors, meta)
    shutil.rmtree(parts)
    return out
