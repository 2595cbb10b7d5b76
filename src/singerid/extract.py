"""Resumable bulk extraction: embed many files into one ``.npz`` (ids + vectors) via atomic shards."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from .data.datasets import AUDIO_EXTENSIONS, UNSUPPORTED_AUDIO_EXTENSIONS
from .errors import ConfigError, DatasetError
from .fileio import SETTINGS_FILE, atomic_path, check_settings, output_lock
from .infer import SingerEncoder

log = logging.getLogger(__name__)


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded recursively to their audio files (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            # Audio that soundfile cannot decode (.m4a, .aac, ...) is listed too, so it is reported, never silently left out.
            found = sorted(f for f in p.rglob("*") if f.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS + UNSUPPORTED_AUDIO_EXTENSIONS)
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


def job_settings(encoder: SingerEncoder, skip_silence: bool, on_error: str, shard_size: int) -> dict:
    """Everything an embedding depends on; parts made with other settings are never mixed in."""
    return {
        "model_fingerprint": encoder.artifact.fingerprint,
        "window": encoder.window,
        "hop": encoder.hop,
        "min_seconds": encoder.min_seconds,
        "short": encoder.short,
        "max_seconds": encoder.max_seconds,
        "skip_silence": skip_silence,
        "on_error": on_error,
        "shard_size": shard_size,
    }


def _done_part(shard: Path, chunk: list[str], dim: int) -> tuple[list[str], np.ndarray, dict] | None:
    """The contents of a completed part that holds exactly ``chunk``'s files, else None (redo it)."""
    if not shard.is_file():
        return None
    try:
        ids, vectors, meta = load_embeddings(shard)
    except DatasetError as exc:
        log.warning("re-embedding a damaged part: %s", exc)
        return None
    skipped = meta.get("skipped") or {}
    if not set(skipped) <= set(chunk) or ids != [c for c in chunk if c not in skipped] or vectors.shape[1:] != (dim,):
        log.warning("re-embedding %s: it does not hold this part's files", shard)
        return None
    return ids, vectors, skipped


def extract_to_npz(
    encoder: SingerEncoder,
    files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    shard_size: int = 256,
    batch_size: int = 32,
    num_workers: int = 0,
    skip_silence: bool = False,
    on_error: str = "raise",
    progress: bool = True,
) -> Path:
    """Embed ``files`` (one vector per file) into ``out`` (.npz with ``ids``, ``embeddings``, ``meta``).

    Work is written in parts of ``shard_size`` files under ``<out>.parts/`` together with the
    job's settings; a re-run after an interruption keeps the parts already written and checked,
    and a re-run with other settings (model, window, hop, ...) is refused. Two runs on one
    ``out`` are refused too (a lock). ``on_error="skip"`` leaves out files that cannot be used
    and lists them in ``meta["skipped"]`` (``{path: reason}``); with ``"raise"`` the first such
    file stops the job and ``out`` is not written.
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; --out names the .npz file to write.")
    ids = [str(f) for f in files]
    parts = out.with_name(out.name + ".parts")
    with output_lock(out):
        check_settings(parts, job_settings(encoder, skip_silence, on_error, shard_size))
        try:
            return _extract(encoder, ids, out, parts, shard_size, batch_size, num_workers, skip_silence, on_error, progress)
        except BaseException:
            # Keep finished parts for the resume; leave nothing behind when there are none.
            if not any(parts.glob("part-*.npz")):
                _remove_parts(parts, 0)
            raise


def _extract(
    encoder: SingerEncoder, ids: list[str], out: Path, parts: Path, shard_size: int, batch_size: int,
    num_workers: int, skip_silence: bool, on_error: str, progress: bool,
) -> Path:
    """Embed the parts not yet done, then join them into ``out`` (see :func:`extract_to_npz`)."""
    meta = {"model_fingerprint": encoder.artifact.fingerprint, "dim": encoder.dim}
    chunks = [ids[i : i + shard_size] for i in range(0, len(ids), shard_size)]
    done = 0
    kept_ids: list[str] = []
    vectors: list[np.ndarray] = []
    skipped: dict[str, str] = {}
    for k, chunk in enumerate(tqdm(chunks, desc="parts", unit="part", disable=not progress or len(chunks) < 2)):
        shard = parts / f"part-{k:05d}.npz"
        found = _done_part(shard, chunk, encoder.dim)
        if found is not None:
            done += 1
            part_ids, emb, part_skipped = found
        else:
            embed_options = dict(batch_size=batch_size, num_workers=num_workers, skip_silence=skip_silence, progress=progress)
            if on_error == "skip":
                emb, part_skipped = encoder.embed_files_skipping(chunk, **embed_options)
            else:
                emb, part_skipped = encoder.embed_files(chunk, **embed_options), {}
            part_ids = [c for c in chunk if c not in part_skipped]
            _save(shard, part_ids, emb, {**meta, "skipped": part_skipped})
        kept_ids += part_ids
        vectors.append(emb)
        skipped.update(part_skipped)
    if done:
        log.info("resumed: %d of %d parts were already done", done, len(chunks))
    # The join re-checks that every file is there exactly once, in order.
    if kept_ids != [i for i in ids if i not in skipped]:
        raise DatasetError(f"{parts}: the parts do not add up to the file list; delete {parts} and embed again.")
    if not kept_ids:
        raise DatasetError(f"none of the {len(ids)} files could be embedded: {_listing(skipped)}")
    _save(out, kept_ids, np.concatenate(vectors), {**meta, "n": len(kept_ids), "skipped": skipped})
    _remove_parts(parts, len(chunks))
    return out


def _listing(skipped: dict[str, str], shown: int = 3) -> str:
    reasons = "; ".join(list(skipped.values())[:shown])
    return reasons + (f" ... and {len(skipped) - shown} more" if len(skipped) > shown else "")


def _remove_parts(parts: Path, n: int) -> None:
    """Delete this job's part files and settings only; the folder goes when nothing else is in it."""
    for k in range(n):
        (parts / f"part-{k:05d}.npz").unlink(missing_ok=True)
    (parts / SETTINGS_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        parts.rmdir()
