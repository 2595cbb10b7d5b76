"""``singerid trials``: draw a verification trial list from a segment manifest."""

from __future__ import annotations

import argparse
import warnings

NAME = "trials"
ORDER = 60
HELP = "Draw a balanced verification trial list (no self-pairs, duplicates or same-recording targets)."
EXAMPLE = "singerid trials --manifest runs/eval_segments.csv --out runs/trials.txt --condition cross-song"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.trials import CONDITIONS, FORMATS, MATCH_FIELDS

    parser.add_argument("--manifest", required=True, help="segment manifest CSV (from `singerid segment`)")
    parser.add_argument("--out", required=True, help="trial list to write")
    parser.add_argument(
        "--condition", choices=CONDITIONS, default="cross-recording",
        help="which same-singer pairs are targets (default: %(default)s)",
    )
    parser.add_argument("--format", choices=FORMATS, default="kaldi", help="output format (default: %(default)s)")
    parser.add_argument("--n-target", type=int, default=50, help="target trials per singer (default: %(default)s)")
    parser.add_argument(
        "--n-nontarget", type=int, default=50, help="non-target trials per singer (default: %(default)s)"
    )
    parser.add_argument(
        "--match", action="append", choices=MATCH_FIELDS, default=[],
        help="metadata field both sides of a non-target pair must share; repeatable",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    from ..eval.trials import (
        TrialsShortfallWarning,
        make_trials,
        shortfall_message,
        write_trials,
    )
    from ..records import read_segments

    segments = read_segments(args.manifest)
    with warnings.catch_warnings():
        # The shortfall is printed below as part of the summary instead.
        warnings.simplefilter("ignore", TrialsShortfallWarning)
        trials = make_trials(
            segments,
            n_target=args.n_target,
            n_nontarget=args.n_nontarget,
            condition=args.condition,
            match=tuple(args.match),
            seed=args.seed,
        )
    path = write_trials(args.out, trials, format=args.format)
    n_target = sum(t.target for t in trials)
    n_non = len(trials) - n_target
    print(f"wrote {len(trials)} trials ({n_target} target, {n_non} non-target, {args.condition}) to {path}")
    if trials.shortfall:
        print(f"note: {shortfall_message(trials.shortfall, args.n_target, args.n_nontarget)}")
    return 0
