"""``singerid similarity``: how close generated singing (synthesis, conversion) is to reference singers."""

from __future__ import annotations

import argparse

from ._common import MODEL_HELP

NAME = "similarity"
ORDER = 75
HELP = (
    "score generated audio (singing synthesis, voice conversion) by cosine similarity to reference singers: "
    "per-file CSV, JSON summary with a bootstrap interval, one line on stdout"
)
EXAMPLE = (
    "singerid similarity --reference runs/demo/corpus/seed0/eval --generated runs/demo/corpus/seed0/eval "
    "--model runs/demo/latest/train/model --out runs/similarity"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", help="reference audio: a folder (folder per singer, or flat), a file list, or one file")
    parser.add_argument("--generated", help="generated audio, as --reference; singer folders are matched by name")
    parser.add_argument(
        "--pairs", help="CSV with columns generated,reference: score each pair (relative paths against the "
        "--generated/--reference folders, else the CSV's folder)",
    )
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--out", required=True, help="output folder (similarity.csv, similarity.json)")
    parser.add_argument(
        "--threshold", type=float, default=None,
        help="report the share of files at or above this cosine (default: the model's calibrated EER threshold, if any)",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the mean; 0: none (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.similarity import similarity

    if args.pairs is None and (args.reference is None or args.generated is None):
        raise ConfigError("pass --reference and --generated, or --pairs.")
    result = similarity(
        args.reference, args.generated, args.model, args.out, pairs=args.pairs, threshold=args.threshold,
        n_boot=args.n_boot, seed=args.seed, device=args.device, progress=not args.no_progress,
    )  # fmt: skip
    print(result.line())
    return 0
