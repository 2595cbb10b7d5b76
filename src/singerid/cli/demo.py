"""singerid demo: the whole chain on the built-in synthetic corpus (or your own folder)."""

from __future__ import annotations

import argparse

NAME = "demo"
ORDER = 100
HELP = "learn singer identity from scratch on the built-in corpus, evaluate on held-out singers, write a report"
EXAMPLE = "singerid demo --quick"
METHODS = ("contrastive", "contrastive-vc", "uniformity", "vicreg", "byol")  # kept literal: --help must not import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=METHODS, default=None, help="self-supervised objective (default: contrastive)")
    parser.add_argument("--backbone", default=None, help="cpu_small (default) or efficientnet_b0 (the paper's; use a GPU)")
    parser.add_argument("--quick", action="store_true", help="a small version that takes a few minutes (what CI runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus draw and the training (default: 0)")
    parser.add_argument("--seeds", type=int, default=1, help="repeat over this many seeds and report mean ± std")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 300; 120 with --quick)")
    parser.add_argument("--data", default=None, help="your own folder-per-singer tree instead of the synthetic corpus")
    parser.add_argument("--out", default="runs/demo", help="where runs go (default: runs/demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (for logs and CI)")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..demo import QUICK, DemoSettings, run_demo
    from ..errors import TrainingInterrupted

    settings = DemoSettings(seed=args.seed)
    if args.quick:
        settings = dataclasses.replace(settings, **QUICK)
    changes = {"method": args.method, "backbone": args.backbone, "max_steps": args.steps}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    try:
        run_demo(settings, out_root=args.out, data=args.data, seeds=args.seeds, progress=not args.no_progress)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc}; re-run the same command to continue from it", exc.checkpoint) from None
    return 0
