"""int8 versions of an exported ONNX model (ONNX Runtime quantization) for faster CPU inference.

Only the backbone's convolutions and matrix products are quantized; the log-mel frontend (the
DFT, mel filterbank, logarithm and per-example standardisation) stays fp32, because int8 there
would move every embedding. Weights are quantized per output channel.

``"int8"`` (static): activation ranges come from running calibration clips
(:func:`singerid.export.guard.calibration_clips`, seeded, sung by singers the accuracy guard never
uses) through the fp32 model; ``"int8-dynamic"``: ranges are measured on every input at run time
(no calibration, usually slower).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
BACKBONE_SCOPE = "/backbone/"
"""Prefix of the backbone's node names in a graph written by ``torch.onnx.export``."""


def backbone_nodes(model_path: str | Path, op_types: tuple[str, ...] = QUANTIZED_OPS) -> list[str]:
    """Names of the backbone's nodes of ``op_types`` in an exported ONNX file."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in op_types and n.name.startswith(BACKBONE_SCOPE)]


class _Clips:
    """onnxruntime's CalibrationDataReader over a stack of waveforms, one clip per call."""

    def __init__(self, clips: np.ndarray) -> None:
        self._rows = iter(np.ascontiguousarray(clips, dtype=np.float32))

    def get_next(self) -> dict | None:
        row = next(self._rows, None)
        return None if row is None else {"waveform": row[None]}


def quantize(fp32_path: str | Path, out_path: str | Path, mode: str, calibration: np.ndarray | None = None) -> None:
    """Write the int8 version of ``fp32_path`` to ``out_path``; ``mode`` is ``"static"`` (needs
    ``calibration``, a ``(n, samples)`` stack of waveforms) or ``"dynamic"``."""
    from onnxruntime.quantization import (
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    nodes = backbone_nodes(fp32_path)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference and graph clean-up first, as onnxruntime recommends before quantizing.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        if mode == "dynamic":
            quantize_dynamic(
                str(prepared), str(out_path), nodes_to_quantize=nodes, per_channel=True,
                weight_type=QuantType.QInt8,
            )
            return
        quantize_static(
            str(prepared), str(out_path), _Clips(calibration), nodes_to_quantize=nodes,
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )
