"""Numeric precision of an exported model: fp32 (default), int8 (ONNX Runtime) or bf16 (TorchScript).

Every path other than fp32 is judged by the accuracy guard (:mod:`singerid.export.guard`)
against the artefact's own fp32 network before the file is written; a path that fails the guard
is refused unless the caller overrides it explicitly, and the file's metadata records the
precision and what the guard measured.

- ``"int8"``: ONNX only; static quantization of the backbone with calibration clips of the
  built-in corpus (:mod:`singerid.export.quantize`).
- ``"int8-dynamic"``: ONNX only; dynamic quantization (no calibration).
- ``"bf16"``: TorchScript only; the backbone runs in bfloat16, the frontend in fp32. Offered only
  on CPUs with native bf16 arithmetic (``torch.ops.mkldnn._is_mkldnn_bf16_supported()``, e.g.
  AVX512-BF16 or AMX): elsewhere PyTorch emulates it, which is slower than fp32.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .guard import Embedder, GuardResult, accuracy_guard, calibration_clips, guard_clips

PRECISIONS = ("fp32", "int8", "int8-dynamic", "bf16")
FORMAT_OF = {"int8": "onnx", "int8-dynamic": "onnx", "bf16": "torchscript"}
"""The one export format each non-fp32 precision is available in."""
QUANTIZE_MODE = {"int8": "static", "int8-dynamic": "dynamic"}


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's own test)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def check_precision(precision: str, format: str) -> None:
    """Raise :class:`ConfigError` when ``precision`` is unknown, needs another format, or (bf16)
    is not native on this CPU."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not supported; choose one of {', '.join(PRECISIONS)}.")
    needs = FORMAT_OF.get(precision)
    if needs is not None and needs != format:
        raise ConfigError(f"precision {precision} is available as {needs} only; export with --format {needs}.")
    if precision == "bf16" and not cpu_supports_bf16():
        raise ConfigError(
            "precision bf16: this CPU has no native bfloat16 arithmetic (PyTorch would emulate it, slower than fp32); "
            "use --precision fp32, or int8 with --format onnx."
        )


class Bf16Backbone(nn.Module):
    """A backbone run in bfloat16 on fp32 features; its output is cast back to fp32."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.inner = backbone.to(torch.bfloat16)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.inner(feats.to(torch.bfloat16)).float()


def reference_embedder(net: nn.Module) -> Embedder:
    """The fp32 reference of the guard: ``net`` (eager, ``torch.stft`` frontend) as a numpy function."""

    def run(wave: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))).numpy()

    return run


def judge(
    precision: str, reference: Embedder, candidate: Embedder, window_seconds: float, allow_failed_guard: bool, what: str
) -> GuardResult:
    """Run the accuracy guard on held-out clips of ``window_seconds``; refuse a failed path
    (:class:`ConfigError`, naming ``what``) unless ``allow_failed_guard``."""
    clips, labels = guard_clips(window_seconds)
    result = accuracy_guard(reference, candidate, clips, labels, precision)
    if not result.passed and not allow_failed_guard:
        raise ConfigError(
            f"{what}: {result.summary()}; nothing was written. Use --precision fp32, or pass "
            "--allow-failed-guard (allow_failed_guard=True) to write it anyway."
        )
    return result


def quantize_in_place(path: Path, precision: str, window_seconds: float) -> None:
    """Replace the fp32 ONNX file ``path`` by its int8 version (``precision`` int8 or int8-dynamic)."""
    from .quantize import quantize

    mode = QUANTIZE_MODE[precision]
    calibration = calibration_clips(window_seconds) if mode == "static" else None
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        quantized = Path(tmp) / path.name
        quantize(path, quantized, mode, calibration)
        os.replace(quantized, path)


def guarded_metadata(meta: dict, precision: str, guard: GuardResult | None) -> dict:
    """``meta`` with the precision and, for a non-fp32 path, the guard's measurements."""
    return {**meta, "precision": precision, "accuracy_guard": None if guard is None else guard.to_dict()}

