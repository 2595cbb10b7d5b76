"""``singerid models``: list the known pretrained models, pre-fetch them, or describe any model."""

from __future__ import annotations

import argparse
import json

NAME = "models"
ORDER = 86
HELP = "list the authors' pretrained models by name (and whether each is cached); `download NAME...` pre-fetches, `info NAME|PATH` describes"
EXAMPLE = "singerid models download byol && singerid models info byol"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action", nargs="?", choices=("list", "download", "info"), default="list",
        help="list (default), download NAME... (fetch and convert into SINGERID_HOME), or info NAME|PATH",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="known names, hf:OWNER/REPO[/SUBFOLDER][@REVISION] or paths")
    parser.add_argument("--refresh", action="store_true", help="download: ask the hub again even when a copy is cached")


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..model.hub import list_models, model_info, resolve_model, singerid_home

    if args.action == "list":
        if args.names:
            raise ConfigError("`singerid models` takes no names; use `singerid models info NAME`.")
        for row in list_models():
            cached = f"cached at {row.cached}" if row.cached else "not cached"
            print(f"{row.name:<15} {row.method:<44} {row.embedding_dim}-d  {row.source}  {cached}")
        print(f"cache: {singerid_home()} (SINGERID_HOME); downloads go through huggingface_hub (HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, HF_TOKEN)")
        return 0
    if not args.names:
        raise ConfigError(f"`singerid models {args.action}` needs at least one NAME.")
    if args.action == "download":
        for name in args.names:
            print(f"{name} -> {resolve_model(name, refresh=args.refresh)}")
        return 0
    for name in args.names:
        info = model_info(name)
        print(f"{name}: {info['path']}")
        for key, value in info.items():
            if key != "path":
                print(f"  {key}: {json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else value}")
    return 0
