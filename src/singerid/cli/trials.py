"""``singerid trials``: draw a verification trial list from a segment manifest, or map the authors' list onto the data."""

from __future__ import annotations

import argparse
import warnings

NAME = "trials"
ORDER = 60
HELP = (
    "Draw a balanced verification trial list (no self-pairs, duplicates or same-recording targets), or map "
    "the authors' speaker_pairs.txt onto a VocalSet/M4Singer tree (--from-official)."
)
EXAMPLE = "singerid trials --manifest runs/eval_segments.csv --out runs/trials.txt --condition cross-song"
OFFICIAL_EXAMPLE = (
    "singerid trials --from-official speaker_pairs.txt --layout vocalset data/VocalSet/FULL "
    "--out runs/vocalset_trials.txt --segments-out runs/vocalset_segments.csv --clean"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.official_trials import LAYOUTS
    from ..eval.trials import CONDITIONS, FORMATS, MATCH_FIELDS

    parser.add_argument("--manifest", help="segment manifest CSV (from `singerid segment`) to draw trials from")
    parser.add_argument(
        "--from-official", metavar="PAIRS",
        help=f"the authors' speaker_pairs.txt: map its pieces onto the original files under ROOT; e.g. {OFFICIAL_EXAMPLE}",
    )
    parser.add_argument("--layout", choices=LAYOUTS, help="with --from-official: the dataset ROOT holds")
    parser.add_argument("root", nargs="?", metavar="ROOT", help="with --from-official: the dataset's root folder")
    parser.add_argument("--segments-out", help="with --from-official: segment manifest CSV of the mapped pieces")
    parser.add_argument("--clean", action="store_true", help="with --from-official: drop self-pairs, duplicate and mirrored lines")
    parser.add_argument(
        "--skip-missing", action="store_true",
        help="with --from-official: drop lines naming pieces with no original file (default: an error)",
    )
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


def run_official(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.official_trials import map_official_trials
    from ..eval.trials import write_trials
    from ..records import write_segments

    if args.manifest or not (args.layout and args.root and args.segments_out):
        raise ConfigError(f"--from-official takes --layout LAYOUT ROOT and --segments-out, not --manifest; e.g. {OFFICIAL_EXAMPLE}")
    result = map_official_trials(args.from_official, args.layout, args.root, clean=args.clean, skip_missing=args.skip_missing)
    segments = write_segments(args.segments_out, result.segments)
    path = write_trials(args.out, result.trials, format=args.format)
    print(result.summary())
    print(f"trials -> {path}; segments -> {segments}; score them with "
          f"`singerid evaluate --manifest {segments} --trials {path} --model MODEL --out DIR`")
    return 0


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError

    if args.from_official:
        return run_official(args)
    if not args.manifest or args.root or args.layout or args.segments_out:
        raise ConfigError("pass --manifest to draw trials (ROOT, --layout and --segments-out go with --from-official).")
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
