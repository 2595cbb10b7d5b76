"""singerid import-official: the authors' released checkpoint folder -> a singerid model artefact."""

from __future__ import annotations

import argparse

NAME = "import-official"
ORDER = 85
HELP = "convert the authors' released model folder (model.pt + hyperparams.yaml) into a singerid model artefact"
EXAMPLE = "singerid import-official pretrained/byol --out runs/official-byol/model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="folder holding the released model.pt (and hyperparams.yaml)")
    parser.add_argument("--out", required=True, help="artefact to write: a folder, or a file ending in .pt")


def run(args: argparse.Namespace) -> int:
    from ..model.official import import_official

    result = import_official(args.folder, args.out)
    fe = result.config.frontend
    print(
        f"imported {result.n_tensors} EfficientNet-B0 tensors from {args.folder} -> {result.path} "
        f"(frontend official-compat: n_fft {fe.n_fft}, hop {fe.hop_length}, {fe.n_mels} mels)"
    )
    for note in result.notes:
        print(f"note: {note}")
    print(
        "note: official-compat features are divided by the batch maximum, as in the original code; "
        "embed one clip per batch to reproduce the authors' numbers exactly."
    )
    return 0
