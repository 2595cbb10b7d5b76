"""Writing shards: a seeded plan of which file goes where, then each shard written atomically and resumably."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tarfile
from concurrent.futures import as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import soundfile as sf

from ...audio import SAMPLE_RATE, audio_info, load_audio
from ...errors import ConfigError, DatasetError, SingerIdError
from ...fileio import atomic_path, output_lock, write_text
from ...records import Recording
from ...workers import process_pool
from .index import FORMAT, INDEX_NAME, PLAN_NAME, SHARD_NAME, VERSION
from .read import read_shard

log = logging.getLogger(__name__)

MAX_SHARD_BYTES = 256 * 2**20
MAX_FILES_PER_SHARD = 10_000
# Tar headers of both members, the JSON entry and the FLAC header, beyond the 16-bit samples.
_ENTRY_OVERHEAD = 3 * 512 + 1024


@dataclass(frozen=True)
class _Planned:
    key: str
    recording: Recording
    seconds: float
    est_bytes: int


def _plan(
    recordings: Sequence[Recording], max_shard_bytes: int, max_files: int, seed: int
) -> tuple[list[list[_Planned]], str]:
    """Shuffle the files (seeded), pack them greedily into shards by 16-bit PCM size (FLAC's upper bound)."""
    infos = [audio_info(r.path) for r in recordings]
    identity = [
        [r.path, r.singer, r.song, r.technique, r.gender, sorted(r.extra.items()), i.frames, i.sample_rate]
        for r, i in zip(recordings, infos)
    ]
    payload = json.dumps([FORMAT, VERSION, seed, max_shard_bytes, max_files, identity], default=str)
    fingerprint = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    order = np.random.default_rng([seed, 5]).permutation(len(recordings))
    shards: list[list[_Planned]] = [[]]
    size = 0
    for position, i in enumerate(order):
        frames = math.ceil(infos[i].frames * SAMPLE_RATE / infos[i].sample_rate)
        item = _Planned(f"{position:09d}", recordings[i], frames / SAMPLE_RATE, 2 * frames + _ENTRY_OVERHEAD)
        if shards[-1] and (size + item.est_bytes > max_shard_bytes or len(shards[-1]) >= max_files):
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += item.est_bytes
    return shards, fingerprint


def _claim(out: Path, fingerprint: str, n_shards: int) -> None:
    """Refuse a folder holding shards of another plan; record this plan before writing any shard."""
    earlier = None
    for name in (PLAN_NAME, INDEX_NAME):
        if (out / name).is_file():
            try:
                earlier = json.loads((out / name).read_text(encoding="utf-8")).get("fingerprint")
            except (ValueError, AttributeError):
                raise DatasetError(f"{out / name}: damaged; delete the folder {out} and write the shards again.") from None
            break
    if earlier is None and any(out.glob("shard-*.tar")):
        raise DatasetError(f"{out}: holds shard files without a {PLAN_NAME}; write into an empty folder.")
    if earlier is not None and earlier != fingerprint:
        raise DatasetError(
            f"{out}: holds shards written from another file list or other settings; "
            "write into a new --out folder, or delete this one to start over."
        )
    write_text(out / PLAN_NAME, json.dumps({"fingerprint": fingerprint, "shards": n_shards}, indent=1) + "\n")


def _encode(item: _Planned) -> tuple[bytes, bytes]:
    """The JSON and FLAC entries of one file (decoded, checked, resampled to 44.1 kHz mono)."""
    rec = item.recording
    audio = load_audio(rec.path)
    peak = float(np.max(np.abs(audio)))
    # Scaled (never clipped) when resampling or a float source overshoots full scale.
    gain = 1.0 if peak <= 1.0 else 1.0 / peak
    pcm = np.clip(np.round(audio * (gain * 32768.0)), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    meta = {
        "path": rec.path, "singer": rec.singer, "song": rec.song, "technique": rec.technique, "gender": rec.gender,
        "extra": rec.extra, "duration": len(pcm) / SAMPLE_RATE, "frames": len(pcm), "sample_rate": SAMPLE_RATE,
        "gain": gain,
    }
    return json.dumps(meta, sort_keys=True, default=str).encode("utf-8"), buf.getvalue()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0  # fixed mtime: same input, same bytes
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, items: Sequence[_Planned], done: Callable[[int], object] | None = None) -> None:
    """Write one shard atomically (a reader never sees a partial shard)."""
    with atomic_path(path) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for item in items:
            meta, flac = _encode(item)
            _add_member(tar, f"{item.key}.json", meta)
            _add_member(tar, f"{item.key}.flac", flac)
            if done:
                done(1)


def write_shards(
    recordings: Sequence[Recording],
    out_dir: str | os.PathLike,
    *,
    max_shard_bytes: int = MAX_SHARD_BYTES,
    max_files_per_shard: int = MAX_FILES_PER_SHARD,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write ``recordings`` as tar shards in ``out_dir``; returns the shard paths in index order.

    Files are shuffled (``seed``) and packed into shards of at most ``max_files_per_shard``
    files whose 16-bit PCM size stays under ``max_shard_bytes`` (FLAC shards come out smaller,
    by the compression ratio). Each shard is written atomically, ``workers`` at a time;
    re-running the same call skips shards already written (resumable), and ``shards.json``
    is written last. Unreadable, silent or clipped audio raises :class:`AudioError`.
    """
    if max_shard_bytes <= 0 or max_files_per_shard < 1 or workers < 1:
        raise ConfigError("max_shard_bytes, max_files_per_shard and workers must be positive.")
    if not recordings:
        raise DatasetError("no recordings to shard; check the data folder or manifest.")
    twice = len(recordings) - len({r.path for r in recordings})
    if twice:
        raise DatasetError(f"{twice} file(s) are listed more than once; keep one entry per file.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out / INDEX_NAME):
        return _write_all(recordings, out, max_shard_bytes, max_files_per_shard, seed, workers, progress)


def _complete(path: Path, items: Sequence[_Planned]) -> bool:
    """Whether an existing shard holds exactly its planned files, whole (else it is written again)."""
    if not path.is_file():
        return False
    try:
        keys = [r.key for r in read_shard(path, expected=len(items))]
    except SingerIdError as exc:
        log.warning("rewriting a damaged shard: %s", exc)
        return False
    if keys != [i.key for i in items]:
        log.warning("rewriting %s: it does not hold its planned files", path)
        return False
    return True


def _write_all(
    recordings: Sequence[Recording], out: Path, max_shard_bytes: int, max_files_per_shard: int, seed: int,
    workers: int, progress: bool,
) -> list[Path]:
    plan, fingerprint = _plan(recordings, max_shard_bytes, max_files_per_shard, seed)
    _claim(out, fingerprint, len(plan))
    paths = [out / SHARD_NAME.format(i) for i in range(len(plan))]
    for path in paths:  # temporary files an interrupted run of this plan left; nothing else is touched
        for stale in out.glob(f".{path.name}.*"):
            stale.unlink()
    todo = [i for i, p in enumerate(paths) if not _complete(p, plan[i])]
    from tqdm import tqdm

    with tqdm(total=sum(len(plan[i]) for i in todo), unit="file", desc="shards", disable=not progress) as bar:
        if workers > 1 and len(todo) > 1:
            with process_pool(workers) as pool:
                futures = {pool.submit(_write_shard, paths[i], plan[i]): i for i in todo}
                try:
                    for future in as_completed(futures):
                        future.result()
                        bar.update(len(plan[futures[future]]))
                except BaseException:
                    pool.shutdown(cancel_futures=True)
                    raise
        else:
            for i in todo:
                _write_shard(paths[i], plan[i], bar.update)
    shards = [
        {"name": p.name, "files": len(items), "seconds": round(sum(i.seconds for i in items), 3), "bytes": p.stat().st_size}
        for p, items in zip(paths, plan)
    ]
    seconds = sum(s["seconds"] for s in shards)
    index = {
        "format": FORMAT, "version": VERSION, "fingerprint": fingerprint, "seed": seed, "sample_rate": SAMPLE_RATE,
        "files": len(recordings), "singers": len({r.singer for r in recordings}), "hours": round(seconds / 3600.0, 4),
        "shards": shards,
    }
    write_text(out / INDEX_NAME, json.dumps(index, indent=1) + "\n")
    log.info("shards: %d written, %d already complete; %d files, %.2f h in %s", len(todo), len(plan) - len(todo),
             len(recordings), seconds / 3600.0, out)
    return paths
