"""``singerid shard``: write a data set as WebDataset-style tar shards for streamed training."""

from __future__ import annotations

import argparse

from .prepare import add_layout_options, layout_options

NAME = "shard"
ORDER = 90
HELP = "write training data as tar shards (FLAC + JSON per file, shuffled) for streamed training at scale"
EXAMPLE = "singerid shard runs/demo/corpus/seed0/train --out runs/shards"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", nargs="+", help="folder-per-singer tree (or another --layout) or manifest CSV; several allowed")
    parser.add_argument("--out", required=True, help="shard folder to write (shard-*.tar, shards.json); re-run to resume")
    add_layout_options(parser, default="folder")
    parser.add_argument("--max-shard-mb", type=float, default=256.0,
                        help="shard size limit in MiB of 16-bit audio (FLAC shards come out smaller; default: 256)")
    parser.add_argument("--max-files", type=int, default=10_000, help="at most this many files per shard (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle of files across shards (default: 0)")
    parser.add_argument("--workers", type=int, default=1, help="shards encoded in parallel (default: 1)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.datasets import discover
    from ..data.shards import read_index, write_shards

    recordings = [
        r
        for source in args.data
        for r in (
            discover(source, "manifest") if Path(source).is_file() else discover(source, args.layout, **layout_options(args))
        )
    ]
    write_shards(
        recordings,
        args.out,
        max_shard_bytes=int(args.max_shard_mb * 2**20),
        max_files_per_shard=args.max_files,
        seed=args.seed,
        workers=args.workers,
    )
    index = read_index(args.out)
    size = sum(s.bytes for s in index.shards) / 2**20
    print(f"wrote {index.files} files ({index.hours:.2f} h, {size:.1f} MiB) in {len(index.shards)} shards to {args.out}")
    return 0
