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
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--profiles", help="profiles .npz (read, updated, written atomically)")
    where.add_argument("--catalog", help="catalogue folder instead: the clips become entries labelled with the name (created on first use)")
    parser.add_argument("--replace", action="store_true", help="replace the singer's earlier clips instead of adding to them")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..profiles import Gallery

    encoder = load_encoder(args)
    if args.catalog:
        return _enroll_in_catalog(args, encoder)
    path = Path(args.profiles)
    gallery = Gallery.load(path) if path.exists() else Gallery(encoder.artifact.fingerprint)
    gallery.check_model(encoder.artifact.fingerprint)
    gallery.add(encoder.enroll(args.name, args.clips), replace=args.replace)
    gallery.save(path)
    n, singers = len(gallery.profiles[args.name].embeddings), len(gallery.profiles)
    print(f"enrolled {args.name} ({n} clip{'s' if n != 1 else ''}); {singers} singer{'s' if singers != 1 else ''} in {path}")
    return 0


def _enroll_in_catalog(args: argparse.Namespace, encoder) -> int:
    from ..catalog import Catalog

    with Catalog.open_or_create(args.catalog, encoder) as cat:
        if args.replace:
            cat.remove(singer=args.name)
        cat.add(encoder, args.clips, singer=args.name)
        n, singers = cat.singers()[args.name], len(cat.singers())
    print(f"enrolled {args.name} ({n} clip{'s' if n != 1 else ''}); {singers} singer{'s' if singers != 1 else ''} in {args.catalog}")
    return 0
