"""singerid identify: who among the enrolled singers sings this clip?"""

from __future__ import annotations

import argparse
import json

from ._common import add_model_option, add_window_options, load_encoder

NAME = "identify"
ORDER = 55
HELP = "rank enrolled singers for a clip; 'unknown' when no one reaches the threshold (open set)"
EXAMPLE = "singerid identify runs/demo/corpus/seed0/eval/singer040/song01.wav --model runs/demo/latest/train/model --profiles runs/singers.npz --threshold 0.5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clip")
    add_model_option(parser)
    add_window_options(parser)
    parser.add_argument("--profiles", required=True, help="profiles .npz written by `singerid enroll`")
    parser.add_argument("--threshold", type=float, default=None, help="open-set threshold (default: the model's calibrated one)")
    parser.add_argument("--closed-set", action="store_true", help="always answer with the best match, never 'unknown'")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..profiles import Gallery

    matches = load_encoder(args).identify(
        args.clip, Gallery.load(args.profiles), open_set=not args.closed_set, threshold=args.threshold, top=args.top
    )
    if args.json:
        print(json.dumps([{"name": m.name, "score": m.score} for m in matches]))
    else:
        for rank, m in enumerate(matches, 1):
            print(f"{rank}. {m.name}  {m.score:.4f}")
    return 0
