"""singerid identify: who among the enrolled singers sings this clip?"""

from __future__ import annotations

import argparse
import json

from ._common import (
    add_model_option,
    add_window_options,
    load_encoder,
    threshold_note,
    warn_about_quality,
)

NAME = "identify"
ORDER = 55
HELP = "rank enrolled singers for a clip; 'unknown' when no one reaches the threshold (open set)"
QUICK_EXIT = True
"""A one-off query that writes nothing: the process ends as soon as it has answered."""
EXAMPLE = "singerid identify runs/demo/corpus/seed0/eval/singer040/song01.wav --model runs/demo/latest/train/model --profiles runs/singers.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip", help="the recording to identify")
    add_model_option(parser)
    add_window_options(parser)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--profiles", help="profiles .npz written by `singerid enroll`")
    where.add_argument("--catalog", help="catalogue folder instead: its singer-labelled entries are the profiles")
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="accept the best singer at this cosine score (default: the model's calibrated threshold for these lengths)",
    )
    parser.add_argument("--closed-set", action="store_true", help="always answer with the best match, never 'unknown'")
    parser.add_argument("--top", type=int, default=5, help="how many ranked candidates to list (default: 5)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    from ..profiles import UNKNOWN, Gallery

    encoder = load_encoder(args)
    if args.catalog:
        from ..catalog import Catalog

        with Catalog.open(args.catalog, encoder.artifact.fingerprint, readonly=True) as cat:
            result = encoder.identify(args.clip, cat.gallery(), open_set=not args.closed_set, threshold=args.threshold, top=args.top)
    else:
        result = encoder.identify(
            args.clip, Gallery.load(args.profiles), open_set=not args.closed_set, threshold=args.threshold, top=args.top
        )
    warn_about_quality(args.clip, result.quality)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    best = result.matches[0]
    if result.threshold is None:
        print(f"best match: {best.name} (closed set: the best candidate is always named)")
    elif result.singer == UNKNOWN:
        print(f"unknown: no enrolled singer reaches the {threshold_note(result.threshold, result.threshold_source)}")
    else:
        print(f"identified: {result.singer}  score {best.score:.4f} >= {threshold_note(result.threshold, result.threshold_source)}")
    print("candidates:")
    for rank, m in enumerate(result.matches, 1):
        print(f"  {rank}. {m.name}  {m.score:.4f}")
    return 0
