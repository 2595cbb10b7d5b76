"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse

from ..audio import MAX_SECONDS

MODEL_HELP = (
    "model: a known name (byol, contrastive, contrastive-vc, uniformity, vicreg; see `singerid models`), "
    "hf:OWNER/REPO[/SUBFOLDER][@REVISION], or a local artefact (folder with config.json + weights.safetensors, or a .safetensors/.pt file)"
)


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")


def add_window_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window", type=float, default=None, help="window length in seconds for long audio (default: the model's training crop length)"
    )
    parser.add_argument("--hop", type=float, default=None, help="window hop in seconds (default: the window length)")
    parser.add_argument(
        "--pad", action="store_true", help="repeat clips shorter than --min-seconds instead of rejecting them"
    )
    parser.add_argument("--min-seconds", type=float, default=1.0, help="shortest clip accepted (default: 1 s)")
    parser.add_argument(
        "--max-seconds", type=float, default=MAX_SECONDS,
        help=f"longest file accepted, in seconds; longer ones are refused before decoding (default: {MAX_SECONDS:.0f})",
    )


def load_encoder(args: argparse.Namespace):
    """The :class:`~singerid.infer.SingerEncoder` the options describe."""
    from ..infer import load_model

    return load_model(
        args.model,
        device=args.device,
        window=getattr(args, "window", None),
        hop=getattr(args, "hop", None),
        min_seconds=getattr(args, "min_seconds", 1.0),
        short="pad" if getattr(args, "pad", False) else "reject",
        max_seconds=getattr(args, "max_seconds", MAX_SECONDS),
    )


def warn_about_quality(source: str, quality) -> None:
    """One stderr line per input-quality problem of ``source`` (see :mod:`singerid.quality`)."""
    import sys

    for warning in quality.warnings:
        print(f"singerid: warning: {source}: {warning}", file=sys.stderr)


def threshold_note(threshold: float | None, source: str) -> str:
    """How a decision threshold is shown next to a result."""
    if threshold is None:
        return "no threshold"
    where = {"calibration": "calibrated for these lengths", "given": "given with --threshold"}.get(source, source)
    return f"threshold {threshold:.4f} ({where})"
