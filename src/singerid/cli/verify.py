"""singerid verify: are two recordings sung by the same singer?"""

from __future__ import annotations

import argparse
import json

from ._common import add_model_option, add_window_options, load_encoder

NAME = "verify"
ORDER = 45
HELP = "score two recordings and decide whether they share a singer (calibrated threshold or --threshold)"
EXAMPLE = "singerid verify runs/demo/corpus/seed0/eval/singer040/song00.wav runs/demo/corpus/seed0/eval/singer040/song01.wav --model runs/demo/latest/train/model --threshold 0.5"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a")
    parser.add_argument("b")
    add_model_option(parser)
    add_window_options(parser)
    parser.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's calibrated EER threshold)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    result = load_encoder(args).verify(args.a, args.b, threshold=args.threshold)
    if args.json:
        print(json.dumps({"score": result.score, "same_singer": result.same_singer, "threshold": result.threshold}))
    else:
        verdict = "same singer" if result.same_singer else "different singers"
        print(f"score {result.score:.4f}  threshold {result.threshold:.4f}  -> {verdict}")
    return 0
