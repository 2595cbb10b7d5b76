"""singerid cluster: group recordings by singer without labels."""

from __future__ import annotations

import argparse

from ._common import MODEL_HELP

NAME = "cluster"
ORDER = 78
HELP = "group recordings (a folder or a catalogue) by singer without labels; write clusters.csv and a report"
EXAMPLE = "singerid cluster runs/demo/corpus/seed0/eval --model runs/demo/latest/train/model --out runs/clusters"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.clustering import CUT_METHODS

    parser.add_argument("inputs", nargs="*", help="audio files or folders (a folder of singer sub-folders gives labels to score against)")
    parser.add_argument("--catalog", help="cluster the entries of this catalogue folder instead (its stored vectors unless --model/--system)")
    system = parser.add_mutually_exclusive_group()
    system.add_argument("--model", help=f"embed with this model; {MODEL_HELP}")
    system.add_argument("--system", help="embed with a system spec as in `singerid evaluate`: mfcc, f0, resemblyzer, hf:DIR, model:PATH")
    parser.add_argument("--out", required=True, help="output folder (clusters.csv, clustering.json, report.md, clusters.png)")
    parser.add_argument("--n-clusters", type=int, default=None, help="number of clusters (default: cut automatically)")
    parser.add_argument(
        "--cut", choices=CUT_METHODS, default=None,
        help="choose the cut from the data by this rule even when the model is calibrated "
        "(default: the model's calibration, else silhouette)",
    )
    parser.add_argument("--no-compare", action="store_true", help="do not cluster MFCC statistics for comparison when labels exist")
    parser.add_argument("--seed", type=int, default=0, help="seed of the silhouette sample and the map (default: %(default)s)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="do not show progress bars")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.cluster_run import cluster_collection

    if bool(args.inputs) == bool(args.catalog):
        raise ConfigError("give audio files/folders or --catalog C (one of them).")
    system = f"model:{args.model}" if args.model else args.system
    run = cluster_collection(
        inputs=args.inputs or None, catalog=args.catalog, system=system, out=args.out, n_clusters=args.n_clusters,
        method=args.cut, compare=not args.no_compare, device=args.device, seed=args.seed, progress=not args.no_progress,
    )  # fmt: skip
    print(run.summary())
    return 0
