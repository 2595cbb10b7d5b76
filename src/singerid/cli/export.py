"""singerid export: a model artefact -> TorchScript or ONNX with the frontend inside."""

from __future__ import annotations

import argparse

from ._common import MODEL_HELP

NAME = "export"
ORDER = 80
HELP = "export a model to TorchScript or ONNX (waveform in, L2-normalised embedding out) and check it against PyTorch"
EXAMPLE = "singerid export --model runs/demo/latest/train/model --format onnx --out runs/model.onnx"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help=MODEL_HELP)
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="output format")
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx or model.ts")
    parser.add_argument(
        "--parity-lengths", type=int, nargs="+", default=[44100, 70001], metavar="SAMPLES",
        help="clip lengths (samples) of the parity check against eager PyTorch (default: 44100 70001)",
    )
    parser.add_argument(
        "--parity-batch-sizes", type=int, nargs="+", default=[1, 3], metavar="N",
        help="batch sizes of the parity check (default: 1 3)",
    )
    parser.add_argument(
        "--onnx-stft", choices=("matmul", "onnx", "conv"), default="matmul",
        help="ONNX only: the STFT as a factorised DFT of matrix products (default, fastest in ONNX "
        "Runtime), as the ONNX STFT operator, or as a convolution",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the parity check")
    parser.add_argument(
        "--precision", choices=("fp32", "int8", "int8-dynamic", "bf16"), default="fp32",
        help="numeric precision: fp32 (default); int8 (ONNX, static quantization calibrated on the built-in "
        "corpus) or int8-dynamic (ONNX); bf16 (TorchScript, CPUs with native bf16 only). Anything but fp32 must "
        "pass the accuracy guard against fp32",
    )
    parser.add_argument(
        "--allow-failed-guard", action="store_true",
        help="write a non-fp32 export even when it fails the accuracy guard (the metadata records the failure)",
    )


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..export.formats import PARITY_TOLERANCE, export_model

    if min(args.parity_lengths) <= 0 or min(args.parity_batch_sizes) <= 0:
        raise ConfigError("--parity-lengths and --parity-batch-sizes must be positive.")
    result = export_model(
        args.model, args.out, args.format, verify=not args.no_check,
        lengths=args.parity_lengths, batch_sizes=args.parity_batch_sizes, onnx_stft=args.onnx_stft,
        precision=args.precision, allow_failed_guard=args.allow_failed_guard,
    )
    meta = result.metadata
    print(
        f"exported {meta['backbone']} ({meta['embedding_dim']}-d, model {meta['model_fingerprint'][:12]}) "
        f"as {result.format}, precision {meta['precision']} -> {result.path}"
    )
    if result.guard is not None:
        print(result.guard.summary())
    if result.max_abs_diff is not None:
        print(
            f"parity vs eager PyTorch{' (fp32 graph, before quantizing)' if meta['precision'] != 'fp32' else ''}: max |diff| {result.max_abs_diff:.2e} (tolerance {PARITY_TOLERANCE:g}) over "
            f"lengths {args.parity_lengths} x batch sizes {args.parity_batch_sizes}"
        )
    if meta["batch_dependent"]:
        print(
            "note: official-compat model: features are divided by the batch maximum, so an embedding depends on "
            "the other clips in its batch; run one clip per call for batch-independent results."
        )
    return 0
