"""The shard folder's layout and its index, ``shards.json``: what a folder holds and where."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import DatasetError

INDEX_NAME = "shards.json"
PLAN_NAME = "shards.plan.json"
SHARD_NAME = "shard-{:06d}.tar"
FORMAT = "singerid-shards"
VERSION = 1


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


def _plain_name(name: object) -> str:
    """A shard name as the index lists it: a file inside the folder, never a path leading out of it."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"shard name {name!r} is not a plain file name inside the folder")
    return name


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
            ShardInfo(folder / _plain_name(s["name"]), int(s["files"]), float(s["seconds"]), int(s["bytes"])) for s in data["shards"]
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
