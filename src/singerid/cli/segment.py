"""``singerid segment``: cut recordings into fixed-length segments, listed in a manifest CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audio import SILENCE_DB, WINDOW_SECONDS
from .prepare import add_layout_options, layout_options

NAME = "segment"
ORDER = 25
HELP = "Cut every recording into non-overlapping N-second segments, drop silent ones, and write a segment manifest."
EXAMPLE = "singerid segment runs/eval.csv --seconds 4 --out runs/eval_segments.csv"

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="MANIFEST_OR_DIR", help="a recording manifest CSV, or a data folder (see --layout)"
    )
    parser.add_argument("--out", required=True, help="segment manifest to write (CSV)")
    parser.add_argument("--seconds", type=float, default=WINDOW_SECONDS, help="segment length in seconds (default: %(default)s)")
    parser.add_argument(
        "--hop", type=float, default=None, help="seconds between segment starts (default: --seconds, no overlap)"
    )
    parser.add_argument(
        "--min-active", type=float, default=0.5,
        help="least fraction of non-silent 50 ms frames a segment needs to be kept (default: 0.5)",
    )
    parser.add_argument(
        "--silence-db", type=float, default=SILENCE_DB,
        help=f"frame level (dBFS) below which a frame is silent (default: {SILENCE_DB:g})",
    )
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="leave out unreadable files (each is listed in the output) instead of stopping",
    )
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    add_layout_options(parser, default=None)


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import discover, load_manifest, segment_recordings
    from ..errors import ConfigError
    from ..records import write_segments

    source = Path(args.source)
    if source.is_file():
        if args.layout is not None:
            raise ConfigError(
                f"{source} is a file, read as a recording manifest; --layout applies to folders only. Drop --layout."
            )
        recordings = load_manifest(source)
    else:
        args.layout = args.layout or "folder"
        recordings = discover(source, args.layout, **layout_options(args))
    result = segment_recordings(
        recordings,
        seconds=args.seconds,
        hop=args.hop,
        min_active=args.min_active,
        silence_db=args.silence_db,
        on_error="skip" if args.skip_unreadable else "raise",
        progress=not args.no_progress,
    )
    write_segments(args.out, result.segments)
    print(result.summary())
    for _, reason in result.unreadable:
        print(f"  skipped: {reason}")
    print(f"wrote {len(result.segments)} segments to {args.out}")
    return 0
