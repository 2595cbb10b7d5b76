"""singerid train: self-supervised training from a config."""

from __future__ import annotations

import argparse

NAME = "train"
ORDER = 30
HELP = "train an encoder with one of the five self-supervised objectives (no singer labels used)"
EXAMPLE = "singerid train --config demo --data runs/demo/corpus/seed0/train --out runs/demo-train --set max_steps=200"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", default="demo",
        help="built-in config (byol, contrastive, contrastive-vc, uniformity, vicreg, demo) or a YAML file (default: demo)",
    )
    parser.add_argument("--data", action="append", required=True, help="folder-per-singer tree or manifest CSV (repeat for several), or one shard folder from `singerid shard`")
    parser.add_argument("--layout", default="folder", help="layout of --data folders: folder, vocalset, nus48e, m4singer, vctk (a .csv is read as a manifest)")
    parser.add_argument("--out", required=True, help="run folder: checkpoints/, logs/, model/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=3e-4 --set model.backbone=cpu_small")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import yaml

    from ..data.datasets import discover
    from ..errors import TrainingInterrupted
    from ..training import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return 0
    from pathlib import Path

    from ..data.shards import is_shard_dir

    if len(args.data) == 1 and is_shard_dir(args.data[0]):
        data = args.data[0]  # streamed, see singerid.data.shards
    else:
        data = [r for source in args.data for r in discover(source, "manifest" if Path(source).is_file() else args.layout)]
    try:
        result = train(cfg, data, args.out, resume=args.resume)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(f"{exc}; add --resume to the same command to continue", exc.checkpoint) from None
    print(f"trained {result.steps} steps; model: {result.artifact}; logs: {result.log_dir}; checkpoint: {result.checkpoint}")
    return 0
