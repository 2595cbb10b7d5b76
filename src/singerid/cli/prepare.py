"""``singerid prepare``: list a data set's recordings in a manifest CSV."""

from __future__ import annotations

import argparse

NAME = "prepare"
ORDER = 20
HELP = "List the recordings of a data folder (folder-per-singer, VocalSet, NUS-48E, M4Singer, VCTK) in a manifest CSV."
EXAMPLE = "singerid prepare runs/demo/corpus/seed0/eval --out runs/eval.csv"

FOLDER_LAYOUTS = ("folder", "vocalset", "nus48e", "m4singer", "vctk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="the data set's root folder")
    parser.add_argument("--out", required=True, help="recording manifest to write (CSV)")
    add_layout_options(parser, default="folder")


def add_layout_options(parser: argparse.ArgumentParser, default: str | None) -> None:
    """``--layout`` and the options of particular layouts (shared with ``singerid segment``)."""
    parser.add_argument(
        "--layout", default=default, choices=FOLDER_LAYOUTS,
        help="how the folder is organised (default: folder, i.e. ROOT/<singer>/.../<file>)",
    )
    parser.add_argument(
        "--max-depth", type=int, default=3,
        help="folder layout: sub-folder levels searched below each singer folder (default: 3)",
    )
    parser.add_argument(
        "--mic", default="mic1", choices=["mic1", "mic2", "both"],
        help="vctk layout: microphone kept where an utterance has both (default: mic1)",
    )


def layout_options(args: argparse.Namespace) -> dict:
    """The keyword options of ``args`` that apply to ``args.layout``."""
    if args.layout == "folder":
        return {"max_depth": args.max_depth}
    if args.layout == "vctk":
        return {"mic": args.mic}
    return {}


def run(args: argparse.Namespace) -> int:
    from ..data.datasets import discover
    from ..records import write_recordings

    recordings = discover(args.root, args.layout, **layout_options(args))
    write_recordings(args.out, recordings)
    singers = len({r.singer for r in recordings})
    print(f"wrote {len(recordings)} recordings of {singers} singers to {args.out}")
    return 0
