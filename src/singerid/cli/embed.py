"""singerid embed: files or folders -> one embedding per file in an .npz."""

from __future__ import annotations

import argparse

from ._common import add_model_option, add_window_options, load_encoder

NAME = "embed"
ORDER = 40
HELP = "embed audio files (or every audio file under folders) into an .npz of ids + vectors; resumable"
EXAMPLE = "singerid embed runs/demo/corpus/seed0/eval/singer040 --model runs/demo/latest/train/model --out runs/emb.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="audio files and/or folders")
    add_model_option(parser)
    add_window_options(parser)
    parser.add_argument("--out", required=True, help="output .npz (ids, embeddings, meta)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default: 32; lower it to save memory)")
    parser.add_argument("--workers", type=int, default=0, help="processes decoding audio (default: 0)")
    parser.add_argument("--shard-size", type=int, default=256, help="files per resumable shard (default: 256)")
    parser.add_argument("--skip-silence", action="store_true", help="ignore silent windows of long files")
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="leave out files that cannot be read or used (each is listed with its reason) instead of stopping",
    )
    parser.add_argument(
        "--part", default=None, metavar="K/N",
        help="embed only every N-th file starting at K (0-based), e.g. one process per GPU: --part 0/4 --device cuda:0",
    )


def run(args: argparse.Namespace) -> int:
    from ..extract import expand_inputs, extract_to_npz, load_embeddings, select_part

    files = select_part(expand_inputs(args.inputs), args.part)
    out = extract_to_npz(
        load_encoder(args), files, args.out, shard_size=args.shard_size, batch_size=args.batch_size,
        num_workers=args.workers, skip_silence=args.skip_silence,
        on_error="skip" if args.skip_unreadable else "raise",
    )
    skipped = load_embeddings(out)[2].get("skipped") or {}
    for reason in skipped.values():
        print(f"  skipped: {reason}")
    done = len(files) - len(skipped)
    print(f"embedded {done} file{'s' if done != 1 else ''} ({len(skipped)} skipped) -> {out}")
    return 0
