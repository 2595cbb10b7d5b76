"""``singerid evaluate``: score a model and baselines on one protocol; write results.json, report.md, plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audio import WINDOW_SECONDS
from ._common import MODEL_HELP
from .prepare import add_layout_options, layout_options

NAME = "evaluate"
ORDER = 70
HELP = "Evaluate a model and baselines on segments (EER, minDCF, MNR, retrieval, identification); write a report."
EXAMPLE = "singerid evaluate --model runs/demo/latest/train/model --baseline mfcc --baseline random --data runs/demo/corpus/seed0/eval --out runs/eval"

_NEEDS_MODEL = ("random", "bandlimit")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.report import MAP_METHODS
    from ..eval.trials import CONDITIONS

    parser.add_argument("--model", help=f"model to evaluate; {MODEL_HELP}")
    parser.add_argument(
        "--baseline", action="append", default=[], metavar="SPEC",
        help="system to compare, repeatable: mfcc, f0, random (the model's network, random weights), "
        "bandlimit (the model on 16 kHz audio), resemblyzer, hf:DIR, or any spec such as model:PATH, "
        "random:cpu_small, NAME=SPEC",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="data folder to discover and cut into --seconds segments")
    source.add_argument("--manifest", help="segment manifest CSV (from `singerid segment`)")
    add_layout_options(parser, default=None)
    arg = parser.add_argument
    arg("--skip-unreadable", action="store_true", help="with --data: leave out unreadable files (each is listed) instead of stopping")
    arg("--seconds", type=float, default=WINDOW_SECONDS, help="segment length for --data (default: %(default)s)")
    arg("--trials", help="trial list to use (default: draw one; it is written to OUT/trials.txt)")
    arg("--condition", choices=CONDITIONS, default="cross-song",
        help="which same-singer pairs are targets (default: %(default)s)")
    arg("--n-target", type=int, default=50, help="target trials per singer when drawing trials (default: %(default)s)")
    arg("--n-nontarget", type=int, default=50, help="non-target trials per singer (default: %(default)s)")
    arg("--mnr-k", type=int, default=512, help="other-singer segments per MNR query (default: %(default)s)")
    arg("--probe-folds", type=int, default=5,
        help="identification probe folds; 0 leaves the probe out (default: %(default)s)")
    arg("--n-boot", type=int, default=1000,
        help="bootstrap resamples for confidence intervals; 0: none (default: %(default)s)")
    arg("--cohort", help="segment manifest of other singers: AS-normalise scores against it")
    arg("--asnorm-top-k", type=int, default=200, help="best cohort scores used by AS-norm (default: %(default)s)")
    arg("--calibrate", action="store_true", help="fit a duration-aware score calibration on clip and whole-recording trials of this data and store it in --model")
    arg("--invariance", nargs="*", metavar="TRANSFORM", default=None,
        help="also run invariance probes (pitch/formant shift, tempo, noise, band-limit, codecs, reverb) "
        "on every system; optionally name the transforms (default: all). Written to OUT/invariance.md")
    arg("--cluster", action="store_true",
        help="also cluster each system's segments by singer without labels; ARI, NMI, purity in the report")
    arg("--map", choices=MAP_METHODS, default="auto",
        help="2-D map of embeddings; auto: UMAP if installed, else t-SNE (default: %(default)s)")
    arg("--training-log", help="Lightning metrics.csv (or the run folder) for a loss curve in the report")
    arg("--cache-dir", help="embedding cache folder (default: OUT/cache)")
    arg("--seed", type=int, default=0,
        help="seed of trials, MNR draws, folds, bootstrap and random weights (default: %(default)s)")
    arg("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    arg("--no-progress", action="store_true", help="do not show progress bars")
    parser.add_argument("--out", required=True, help="output folder")


def system_specs(model: str | None, baselines: list[str]) -> list[str]:
    """The spec of every system the options ask for; bare ``random``/``bandlimit`` use ``--model``."""
    from ..errors import ConfigError

    specs = [f"model:{model}"] if model else []
    for b in baselines:
        if b in _NEEDS_MODEL:
            if not model:
                raise ConfigError(
                    f"--baseline {b} is the --model network; pass --model, or name the artefact: --baseline {b}:PATH."
                )
            b = f"{b}:{model}"
        specs.append(b)
    if not specs:
        raise ConfigError("nothing to evaluate: pass --model and/or --baseline.")
    return specs


def stored_calibration(model: str):
    """The calibration the model artefact carries, or None."""
    from ..model.artifact import load_artifact
    from ..model.calibration import Calibration
    from ..model.hub import resolve_model

    stored = load_artifact(resolve_model(model)).calibration
    return Calibration.from_dict(stored) if stored.get("logistic") else None


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..eval.baselines.systems import make_system
    from ..eval.pipeline import EvaluationSettings, evaluation_segments, run_evaluation
    from ..records import read_segments

    if args.calibrate and not args.model:
        raise ConfigError("--calibrate stores the calibration in the model artefact; pass --model.")
    if args.calibrate and not Path(args.model).exists():
        raise ConfigError(
            f"--calibrate writes into the model artefact, and {args.model!r} is a cached hub model; "
            f"copy the folder `singerid models info {args.model}` names and pass that copy as --model."
        )
    specs = system_specs(args.model, args.baseline)
    if args.data is not None and args.layout is None:
        args.layout = "folder"
    segments, account = evaluation_segments(
        data=args.data, manifest=args.manifest, layout=args.layout, layout_options=layout_options(args),
        seconds=args.seconds, out=args.out, on_error="skip" if args.skip_unreadable else "raise",
        progress=not args.no_progress,
    )  # fmt: skip
    print(account)
    settings = EvaluationSettings(
        trials=args.trials, condition=args.condition, n_target=args.n_target, n_nontarget=args.n_nontarget,
        mnr_k=args.mnr_k, probe_folds=args.probe_folds, n_boot=args.n_boot, seed=args.seed,
        cohort=read_segments(args.cohort) if args.cohort else None, asnorm_top_k=args.asnorm_top_k,
        cache_dir=args.cache_dir, map_method=args.map, training_log=args.training_log,
        invariance=args.invariance, calibrate=args.model if args.calibrate else None,
        decisions=None if args.calibrate or not args.model else stored_calibration(args.model),
        cluster=args.cluster,
    )  # fmt: skip
    systems = [make_system(s, seed=args.seed, device=args.device) for s in specs]
    result = run_evaluation(systems, segments, args.out, settings, progress=not args.no_progress)
    print(result.summary())
    return 0
