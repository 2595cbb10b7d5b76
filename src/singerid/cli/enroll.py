"""singerid enroll: add a named singer profile to a profiles file."""

from __future__ import annotations

import argparse

from ._common import add_model_option, add_window_options, load_encoder

NAME = "enroll"
ORDER = 50
HELP = "enroll a singer from reference clips into a profiles file (created if missing)"
EXAMPLE = "singerid enroll singer040 runs/demo/corpus/seed0/eval/singer040/song00.wav --model runs/demo/latest/train/model --profiles runs/singers.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="singer name")
    parser.add_argument("clips", nargs="+", help="reference recordings")
    add_model_option(parser)
    add_window_options(parser)
    parser.add_argument("--profiles", required=True, help="profiles .npz (read, updated, written atomically)")
    parser.add_argument("--replace", action="store_true", help="replace the singer's earlier clips instead of adding to them")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..profiles import Gallery

    encoder = load_encoder(args)
    path = Path(args.profiles)
    gallery = Gallery.load(path) if path.exists() else Gallery(encoder.artifact.fingerprint)
    gallery.check_model(encoder.artifact.fingerprint)
    gallery.add(encoder.enroll(args.name, args.clips), replace=args.replace)
    gallery.save(path)
    n, singers = len(gallery.profiles[args.name].embeddings), len(gallery.profiles)
    print(f"enrolled {args.name} ({n} clip{'s' if n != 1 else ''}); {singers} singer{'s' if singers != 1 else ''} in {path}")
    return 0
