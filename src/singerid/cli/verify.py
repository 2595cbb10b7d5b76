"""singerid verify: are two recordings sung by the same singer?"""

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

NAME = "verify"
ORDER = 45
HELP = "score two recordings and decide whether they share a singer (calibrated threshold or --threshold)"
QUICK_EXIT = True
"""A one-off query that writes nothing: the process ends as soon as it has answered."""
EXAMPLE = "singerid verify runs/demo/corpus/seed0/eval/singer040/song00.wav runs/demo/corpus/seed0/eval/singer040/song01.wav --model runs/demo/latest/train/model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", help="first recording (any format singerid reads)")
    parser.add_argument("b", help="second recording")
    add_model_option(parser)
    add_window_options(parser)
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="decide at this cosine score instead of the model's calibrated threshold for these lengths",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run(args: argparse.Namespace) -> int:
    result = load_encoder(args).verify(args.a, args.b, threshold=args.threshold)
    for source, quality in zip((args.a, args.b), result.quality):
        warn_about_quality(source, quality)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    parts = [f"score {result.score:.4f}"]
    if result.probability is not None:
        parts.append(f"same-singer probability {result.probability:.2f}")
    parts.append(threshold_note(result.threshold, result.threshold_source))
    if result.same_singer is None:
        print("  ".join(parts) + "  -> no decision")
        print(
            "the model carries no calibration: pass --threshold, or calibrate it on trials of known singers "
            "with `singerid evaluate --data DIR --model MODEL --calibrate`"
        )
    else:
        print("  ".join(parts) + "  -> " + ("same singer" if result.same_singer else "different singers"))
    return 0
