"""``singerid synth``: write the built-in synthetic multi-singer corpus."""

from __future__ import annotations

import argparse

NAME = "synth"
ORDER = 10
HELP = "Synthesise a multi-singer corpus (one WAV per song, metadata.csv, sections.csv): the default demo data."
EXAMPLE = "singerid synth --singers 20 --songs 4 --song-seconds 40 --seed 0 --out runs/synth --jobs 2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write <singer>/<song>.wav, metadata.csv and sections.csv into")
    parser.add_argument("--singers", type=int, default=20, help="number of singers (default: 20)")
    parser.add_argument("--songs", type=int, default=4, help="songs per singer (default: 4)")
    parser.add_argument("--song-seconds", type=float, default=40.0, help="length of each song in seconds (default: 40)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed; singer i depends only on (seed, i) (default: 0)")
    parser.add_argument(
        "--first-singer", type=int, default=0, help="index of the first singer, to write disjoint corpora (default: 0)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.synth import generate_corpus

    meta = generate_corpus(
        args.out,
        n_singers=args.singers,
        n_songs=args.songs,
        song_seconds=args.song_seconds,
        seed=args.seed,
        first_singer=args.first_singer,
        n_jobs=args.jobs,
        progress=not args.no_progress,
    )
    minutes = args.singers * args.songs * args.song_seconds / 60.0
    print(f"wrote {args.singers} singers x {args.songs} songs ({minutes:.1f} min of audio) to {meta.parent}")
    print(f"  metadata: {meta}")
    print(f"  sections: {meta.parent / 'sections.csv'}")
    return 0
