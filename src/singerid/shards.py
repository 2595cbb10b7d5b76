"""Training data at scale: WebDataset-style tar shards, streamed as positive pairs.

A shard folder written by :func:`write_shards` (``singerid shard``) holds::

    shard-000000.tar     per file: KEY.json (metadata) then KEY.flac (16-bit, 44.1 kHz, mono)
    shard-000001.tar     ...  files are shuffled (seeded) across shards
    shards.plan.json     fingerprint of the file list and settings (written first; guards resuming)
    shards.json          the index: shard names, file counts, hours (written last)

The tars follow WebDataset's naming convention (members ``KEY.ext``, one sample's members
next to each other), so ``webdataset.WebDataset`` reads them too; this module needs only the
standard library's ``tarfile``.

Streaming (:class:`ShardPairStream`). The ``world * num_workers`` streams (processes times
DataLoader workers) each take a disjoint share of the shards, re-dealt every epoch from
``(seed, epoch)``, so no file is seen twice in an epoch. A stream walks its shards reading
only tar headers and the small JSON entries, passes those records through a seeded shuffle
buffer (metadata only, so its size costs no audio memory), and for each record reads just the
FLAC frames of two random crops (random access inside the shard: the shards must sit on a
local or mounted file system). A pair is a pure function of ``(seed, epoch, file key)``:
the same whichever process or worker draws it. Each crop is peak-normalised and augmented by
:meth:`~singerid.augment.Augmenter.view`, as :class:`~singerid.training.data.PairDataset` does
for crops read from disk. The pitch bank needs whole songs in memory, so streams take
``augment.pitch_mode: praat`` (see :func:`stream_augmenter`).

Resume. Training streams are endless (epoch after epoch; the shuffle buffer drains at each
epoch's end, so every epoch's length is known from the index). A DataLoader takes batch ``b``
from worker ``b mod W``: global step ``s`` belongs to stream ``w = s mod W``, which has
delivered ``ceil((S - w) / W)`` batches before step ``S``. A resumed DataLoader's worker ``i``
plays stream ``(i + S) mod W`` and skips that many batches' items (whole epochs by arithmetic,
the rest by reading metadata only), so the run sees exactly the pairs an uninterrupted run
would have seen, provided world size, ``num_workers``, batch size and the shards are
unchanged. With other values it still resumes after the right amount of data, but draws
other files than the uninterrupted run would have.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import tarfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .audio import SAMPLE_RATE, audio_info, fit_length, load_audio, peak_normalize
from .augment import AugmentConfig, Augmenter
from .distributed import world as distributed_world
from .errors import AudioError, ConfigError, DatasetError
from .fileio import atomic_path, write_text
from .records import Recording, Segment

log = logging.getLogger(__name__)

INDEX_NAME = "shards.json"
PLAN_NAME = "shards.plan.json"
SHARD_NAME = "shard-{:06d}.tar"
FORMAT = "singerid-shards"
VERSION = 1
MAX_SHARD_BYTES = 256 * 2**20
MAX_FILES_PER_SHARD = 10_000
# Tar headers of both members, the JSON entry and the FLAC header, beyond the 16-bit samples.
_ENTRY_OVERHEAD = 3 * 512 + 1024

T = TypeVar("T")


# --- the index ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardInfo:
    """One shard as the index lists it."""

    path: Path
    files: int
    seconds: float
    bytes: int


@dataclass(frozen=True)
class ShardIndex:
    """The contents of ``shards.json``."""

    root: Path
    shards: tuple[ShardInfo, ...]
    fingerprint: str

    @property
    def files(self) -> int:
        return sum(s.files for s in self.shards)

    @property
    def hours(self) -> float:
        return sum(s.seconds for s in self.shards) / 3600.0


def is_shard_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a shard index (``shards.json``)."""
    return (Path(path) / INDEX_NAME).is_file()


def read_index(root: str | os.PathLike) -> ShardIndex:
    """Read ``root/shards.json``; raise :class:`DatasetError` if it or a shard it lists is missing."""
    folder = Path(root)
    path = folder / INDEX_NAME
    if not path.is_file():
        raise DatasetError(f"{folder}: no {INDEX_NAME}; write the shards with `singerid shard DATA --out {folder}`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"format {data.get('format')!r} version {data.get('version')!r}")
        shards = tuple(
            ShardInfo(folder / s["name"], int(s["files"]), float(s["seconds"]), int(s["bytes"])) for s in data["shards"]
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path}: not a {FORMAT} v{VERSION} index ({exc}); re-run `singerid shard` into a new folder.") from exc
    missing = [s.path.name for s in shards if not s.path.is_file()]
    if missing:
        raise DatasetError(
            f"{folder}: {len(missing)} shard(s) listed in {INDEX_NAME} are missing ({', '.join(missing[:5])}); "
            "re-run the same `singerid shard` command to rewrite them."
        )
    return ShardIndex(folder, shards, str(data["fingerprint"]))


# --- writing ------------------------------------------------------------------------------


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
            earlier = json.loads((out / name).read_text(encoding="utf-8")).get("fingerprint")
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
    plan, fingerprint = _plan(recordings, max_shard_bytes, max_files_per_shard, seed)
    _claim(out, fingerprint, len(plan))
    for stale in out.glob(".shard*"):  # temp files of an interrupted run
        stale.unlink()
    paths = [out / SHARD_NAME.format(i) for i in range(len(plan))]
    todo = [i for i, p in enumerate(paths) if not p.is_file()]
    from tqdm import tqdm

    with tqdm(total=sum(len(plan[i]) for i in todo), unit="file", desc="shards", disable=not progress) as bar:
        if workers > 1 and len(todo) > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
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


# --- reading ------------------------------------------------------------------------------


class _MemberFile(io.RawIOBase):
    """A read-only, seekable view of bytes ``[offset, offset + size)`` of an open file."""

    def __init__(self, fh, offset: int, size: int) -> None:
        super().__init__()
        self._fh, self._offset, self._size, self._pos = fh, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + pos), self._size)
        return self._pos

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self._size - self._pos)
        if n <= 0:
            return 0
        self._fh.seek(self._offset + self._pos)
        got = self._fh.readinto(memoryview(buffer)[:n])
        self._pos += got
        return got


@dataclass(frozen=True, eq=False)
class ShardRecord:
    """One file inside a shard: its metadata and where its FLAC bytes lie."""

    shard: Path
    key: str
    meta: dict
    offset: int
    size: int

    @property
    def frames(self) -> int:
        return int(self.meta["frames"])

    @property
    def recording(self) -> Recording:
        m = self.meta
        return Recording(m["path"], m["singer"], m["song"], m.get("technique", ""), m.get("gender", ""), dict(m.get("extra", {})))

    def read(self, start: int = 0, frames: int = -1) -> np.ndarray:
        """Decode ``frames`` samples from ``start`` (float32); reads only the FLAC frames needed."""
        try:
            with open(self.shard, "rb") as fh, sf.SoundFile(_MemberFile(fh, self.offset, self.size)) as f:
                f.seek(start)
                return f.read(frames, dtype="float32")
        except (OSError, RuntimeError, ValueError) as exc:  # LibsndfileError is a RuntimeError
            raise AudioError(f"{self.shard}: entry {self.key}.flac cannot be decoded ({exc}); delete the shard and "
                             "re-run `singerid shard` to rewrite it.") from exc


_REQUIRED = ("path", "singer", "song", "frames", "sample_rate")


def _record(shard: Path, key: str, meta: dict | None, flac: tarfile.TarInfo | None) -> ShardRecord:
    if meta is None or flac is None:
        raise DatasetError(f"{shard}: sample {key} lacks its {'.json' if meta is None else '.flac'} entry; "
                           "delete the shard and re-run `singerid shard` to rewrite it.")
    if not isinstance(meta, dict) or any(k not in meta for k in _REQUIRED) or int(meta["sample_rate"]) != SAMPLE_RATE:
        raise DatasetError(f"{shard}: {key}.json lacks {', '.join(_REQUIRED)} or is not at {SAMPLE_RATE} Hz; "
                           "rewrite the shards with `singerid shard`.")
    return ShardRecord(shard, key, meta, flac.offset_data, flac.size)


def read_shard(path: str | os.PathLike, expected: int | None = None) -> Iterator[ShardRecord]:
    """The records of one shard in stored order (metadata only; audio is read on demand).

    Members other than ``.json`` and ``.flac`` are ignored (WebDataset lets shards carry more).
    With ``expected``, a shard holding another number of files raises :class:`DatasetError`.
    """
    shard = Path(path)
    count = 0
    try:
        with tarfile.open(shard, "r:") as tar:
            key, meta, flac = None, None, None
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, base = member.name.rpartition("/")
                stem, _, ext = base.partition(".")
                name = f"{folder}/{stem}" if folder else stem
                if name != key:
                    if key is not None:
                        count += 1
                        yield _record(shard, key, meta, flac)
                    key, meta, flac = name, None, None
                if ext == "json":
                    meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
                elif ext == "flac":
                    flac = member
            if key is not None:
                count += 1
                yield _record(shard, key, meta, flac)
    except (OSError, tarfile.TarError, ValueError) as exc:  # ValueError: JSON or text that does not decode
        raise DatasetError(f"{shard}: unreadable shard ({exc}); delete it and re-run `singerid shard` to rewrite it.") from exc
    if expected is not None and count != expected:
        raise DatasetError(f"{shard}: holds {count} files but the index says {expected}; the shard folder is "
                           "inconsistent, re-run `singerid shard` into a new folder.")


# --- streaming pairs ----------------------------------------------------------------------


def stream_augmenter(cfg: AugmentConfig) -> Augmenter:
    """The augmenter for streamed crops; the pitch bank (whole songs in memory) is refused."""
    if cfg.pitch_mode == "bank" and cfg.pitch_p > 0:
        raise ConfigError("augment.pitch_mode 'bank' needs whole songs in memory, which streamed shards do not hold; "
                          "set augment.pitch_mode=praat (e.g. --set augment.pitch_mode=praat).")
    return Augmenter(cfg)


def _shuffled(items: Iterable[T], size: int, rng: np.random.Generator) -> Iterator[T]:
    """Items through a shuffle buffer of ``size`` (drained at the end)."""
    buffer: list[T] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(rng.integers(size))
        yield buffer[j]
        buffer[j] = item
    while buffer:
        j = int(rng.integers(len(buffer)))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()


def _key_seed(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def batches_before(step: int, worker: int, num_workers: int) -> int:
    """Batches worker ``worker`` of ``num_workers`` delivered in steps ``[0, step)`` (round-robin)."""
    return max(0, -(-(step - worker) // num_workers))


class ShardPairStream(IterableDataset):
    """Positive pairs ``(view1, view2)`` streamed from shards; see the module docstring.

    ``infinite`` streams run epoch after epoch from :meth:`set_epoch`'s epoch (training);
    otherwise one epoch. ``rank``/``world`` default to torch.distributed's.
    """

    def __init__(
        self,
        shards: Sequence[ShardInfo],
        augmenter: Augmenter,
        crop_samples: int,
        *,
        seed: int = 0,
        buffer_size: int = 256,
        infinite: bool = False,
        rank: int | None = None,
        world: int | None = None,
    ) -> None:
        if not shards:
            raise DatasetError("no shards to stream; write some with `singerid shard`.")
        self.shards, self.augmenter, self.crop_samples = list(shards), augmenter, crop_samples
        self.seed, self.buffer_size, self.infinite = seed, buffer_size, infinite
        self.rank, self.world = rank, world
        self.epoch, self.first_step, self.batch_size = 0, 0, 1

    def set_epoch(self, epoch: int) -> None:
        """Start at ``epoch`` (shard order and split are re-drawn from ``(seed, epoch)``)."""
        self.epoch = epoch

    def resume_at(self, step: int, batch_size: int) -> None:
        """Skip the items of global steps ``[0, step)``, batches of ``batch_size`` items per process."""
        self.first_step, self.batch_size = step, batch_size

    def check_streams(self, streams: int) -> None:
        """An endless stream needs a shard for each of ``streams`` (processes x workers)."""
        if self.infinite and streams > len(self.shards):
            raise ConfigError(
                f"{len(self.shards)} training shard(s) cannot feed {streams} streams (processes x DataLoader workers); "
                "write more, smaller shards (singerid shard --max-shard-mb/--max-files) or lower num_workers."
            )

    def assignment(self, epoch: int, stream: int, streams: int) -> list[ShardInfo]:
        """The shards stream ``stream`` of ``streams`` reads in ``epoch``, in reading order."""
        order = np.random.default_rng([self.seed, epoch, 3]).permutation(len(self.shards))
        return [self.shards[i] for i in order[stream::streams]]

    def records(
        self, *, rank: int, world: int, worker: int, num_workers: int, epoch: int | None = None, skip: int = 0
    ) -> Iterator[tuple[int, ShardRecord]]:
        """``(epoch, record)`` in the order this stream delivers them, after skipping ``skip`` items."""
        streams, stream = world * num_workers, rank * num_workers + worker
        self.check_streams(streams)
        e = self.epoch if epoch is None else epoch
        while True:
            mine = self.assignment(e, stream, streams)
            count = sum(s.files for s in mine)
            if skip >= count:
                skip -= count
            else:
                rng = np.random.default_rng([self.seed, e, stream, streams, 4])
                items = (rec for s in mine for rec in read_shard(s.path, s.files))
                for i, rec in enumerate(_shuffled(items, self.buffer_size, rng)):
                    if i >= skip:
                        yield e, rec
                skip = 0
            if not self.infinite:
                return
            e += 1

    def pair(self, record: ShardRecord, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented crops of ``record``, a pure function of ``(seed, epoch, record.key)``."""
        rng = np.random.default_rng([self.seed, epoch, _key_seed(record.key)])
        n = self.crop_samples
        room = max(0, record.frames - n)
        views = []
        for _ in range(2):
            start = int(rng.integers(room + 1))
            crop = peak_normalize(fit_length(record.read(start, n), n, pad="repeat"))
            view = self.augmenter.view(f"{record.meta['path']}@{start}", crop, 0, n, rng)
            views.append(torch.from_numpy(np.ascontiguousarray(view, dtype=np.float32)))
        return views[0], views[1]

    def iterate(
        self, *, rank: int, world: int, worker: int, num_workers: int, epoch: int | None = None, skip: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The pairs of one stream (see :meth:`records`)."""
        for e, record in self.records(rank=rank, world=world, worker=worker, num_workers=num_workers, epoch=epoch, skip=skip):
            yield self.pair(record, e)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        loader_worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        rank, world = (self.rank, self.world) if self.rank is not None and self.world is not None else distributed_world()
        # A new DataLoader starts its round-robin at worker 0, which must play the stream that owns step first_step.
        worker = (loader_worker + self.first_step) % num_workers
        skip = batches_before(self.first_step, worker, num_workers) * self.batch_size
        return self.iterate(rank=rank, world=world, worker=worker, num_workers=num_workers, skip=skip)


# --- training split and validation ----------------------------------------------------------


def split_shards(index: ShardIndex, val_fraction: float) -> tuple[list[ShardInfo], list[ShardInfo]]:
    """Hold out the last ``round(val_fraction * n)`` shards for validation (files are already shuffled across shards)."""
    n_val = min(int(round(val_fraction * len(index.shards))), len(index.shards) - 1)
    if val_fraction > 0 and n_val == 0:
        log.info("validation off: %d shard(s) are too few to hold out %.0f%% of them; write smaller shards to validate.",
                 len(index.shards), 100 * val_fraction)
    cut = len(index.shards) - n_val
    return list(index.shards[:cut]), list(index.shards[cut:])


class ShardCropDataset(Dataset):
    """Fixed, unaugmented crops read from shards, padded to the crop length (validation)."""

    def __init__(self, crops: Sequence[tuple[ShardRecord, int]], crop_samples: int) -> None:
        self.crops, self.crop_samples = list(crops), crop_samples

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> torch.Tensor:
        record, start = self.crops[index]
        audio = record.read(start, min(self.crop_samples, record.frames - start))
        return torch.from_numpy(peak_normalize(fit_length(audio, self.crop_samples, pad="repeat")))


def validation_set(shards: Sequence[ShardInfo], crop_seconds: float, per_file: int) -> tuple[list[Segment], ShardCropDataset]:
    """Evenly spaced crops of every file in ``shards``: their segments (for trials) and a dataset of the crops."""
    segments, crops = [], []
    for info in shards:
        for record in read_shard(info.path, info.files):
            duration = record.frames / SAMPLE_RATE
            room = max(0.0, duration - crop_seconds)
            offsets = np.linspace(0.0, room, per_file) if per_file > 1 else [room / 2]
            r = record.recording
            for off in sorted(set(round(float(o), 2) for o in offsets)):
                segments.append(Segment(r.path, r.singer, r.song, off, min(crop_seconds, duration), r.technique, r.gender))
                crops.append((record, int(round(off * SAMPLE_RATE))))
    return segments, ShardCropDataset(crops, int(round(crop_seconds * SAMPLE_RATE)))

