"""Export a model artefact to TorchScript or ONNX with the log-mel frontend inside.

The exported graph takes a mono waveform ``(batch, samples)`` float32 at 44.1 kHz and returns
L2-normalised embeddings ``(batch, dim)``; batch and length are dynamic. Metadata (sample rate,
embedding size, model fingerprint, singerid version, frontend mode) travels inside the file:
a ``singerid.json`` extra file for TorchScript, ``metadata_props`` for ONNX.

TorchScript keeps ``torch.stft``. ONNX computes the STFT, by default, as the frontend's
factorised DFT (``onnx_stft="matmul"``: reshapes, slices and two batched ``MatMul`` stages),
which ONNX Runtime runs about 4x faster than its own ``STFT`` operator; ``"onnx"`` uses that
operator (opset 17) and ``"conv"`` a conv1d DFT. All give the same numbers to float precision;
:func:`check_parity` measures that against eager PyTorch.

Official-compat models divide the log-mel by its maximum over the whole batch (the authors'
implementation does so). Export keeps that behaviour unchanged, so their exported embeddings
also depend on the other clips in a batch; call them one clip at a time for batch-independent
results. The metadata records it as ``"batch_dependent": true``.

``precision`` makes faster, less exact files (int8 ONNX, bf16 TorchScript; see
:mod:`singerid.export.precision`), each judged by an accuracy guard before it is written.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..audio import SAMPLE_RATE
from ..errors import AudioError, CheckpointError, ConfigError
from ..fileio import atomic_path
from ..model.artifact import Artifact, load_artifact
from ..model.backbones import CPU_PIECES
from ..model.hub import resolve_model
from ..vectors import l2_normalize
from .guard import GuardResult
from .precision import (
    QUANTIZE_MODE,
    Bf16Backbone,
    check_precision,
    guarded_metadata,
    judge,
    quantize_in_place,
    reference_embedder,
)

FORMATS = ("onnx", "torchscript")
EXTENSIONS = {"onnx": (".onnx",), "torchscript": (".ts", ".pt", ".pth", ".jit")}
"""File name endings that say a format; an export must not end in another format's."""
ONNX_STFT_BACKENDS = ("matmul", "onnx", "conv")
"""How an ONNX export computes the STFT: a factorised DFT as matrix products (default), the ONNX
``STFT`` operator, or a conv1d DFT."""
PARITY_TOLERANCE = 1e-4
"""Largest accepted |exported - eager| embedding difference."""
ONNX_OPSET = 17
METADATA_KEY = "singerid"
"""Name of the JSON metadata: TorchScript extra file ``singerid.json``, ONNX ``metadata_props`` key."""
EXPORT_FORMAT = "singerid-export"


class ExportableEncoder(nn.Module):
    """Waveform ``(B, T)`` -> L2-normalised embedding ``(B, dim)``: frontend + backbone of a
    :class:`~singerid.model.backbones.SingerEncoderNet`, with nothing in ``forward`` that TorchScript or
    ONNX cannot express."""

    def __init__(self, frontend: nn.Module, backbone: nn.Module) -> None:
        super().__init__()
        self.frontend = frontend
        self.backbone = backbone

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        h = self.backbone(self.frontend(wave))
        # Same floor as singerid.vectors.l2_normalize, so an all-zero output stays finite.
        return h / torch.linalg.vector_norm(h, dim=1, keepdim=True).clamp_min(1e-12)


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely it matches eager PyTorch."""

    path: Path
    format: str
    max_abs_diff: float | None
    metadata: dict
    guard: GuardResult | None = None
    """The accuracy guard's measurements (non-fp32 precisions only)."""


def _as_artifact(model: Artifact | str | os.PathLike) -> Artifact:
    return model if isinstance(model, Artifact) else load_artifact(resolve_model(model))


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ConfigError(f"export format {format!r} is not supported; choose one of {', '.join(FORMATS)}.")
    return format


def _check_extension(out: Path, format: str) -> None:
    suffix = out.suffix.lower()
    says = next((f for f, endings in EXTENSIONS.items() if suffix in endings), None)
    if says is not None and says != format:
        raise ConfigError(
            f"{out}: a {suffix} file is {says}, but the format asked is {format}; "
            f"name it {out.with_suffix(EXTENSIONS[format][0]).name} or ask for {says}."
        )


def export_metadata(artifact: Artifact, stft: str = "fft") -> dict:
    """The metadata stored in an exported file (JSON-able); ``stft`` is the frontend's STFT backend."""
    frontend = artifact.config.frontend
    return {
        "format": EXPORT_FORMAT,
        "singerid_version": __version__,
        "sample_rate": SAMPLE_RATE,
        "embedding_dim": int(artifact.config.embedding_dim),
        "model_fingerprint": artifact.fingerprint,
        "backbone": artifact.config.backbone,
        "frontend_mode": frontend.mode,
        "stft": stft,
        "batch_dependent": frontend.mode == "official-compat",
        "input": f"waveform (batch, samples) float32, mono, {SAMPLE_RATE} Hz",
        "output": "embedding (batch, dim) float32, L2-normalised",
    }


def exportable(artifact: Artifact, stft_backend: str = "fft", precision: str = "fp32") -> ExportableEncoder:
    """A CPU, eval-mode copy of the artefact's network with the chosen STFT backend: float32, or
    with the backbone in bfloat16 (``precision="bf16"``; the frontend stays float32)."""
    net = copy.deepcopy(artifact.net).float().cpu().eval()
    net.frontend.set_stft_backend(stft_backend)
    backbone = Bf16Backbone(net.backbone) if precision == "bf16" else net.backbone
    return ExportableEncoder(net.frontend, backbone).eval()


def _write_torchscript(module: ExportableEncoder, path: Path, meta: dict) -> None:
    with warnings.catch_warnings():
        # torch.jit is marked deprecated but remains the way to keep torch.stft and the input checks.
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(module)
        torch.jit.save(scripted, str(path), _extra_files={f"{METADATA_KEY}.json": json.dumps(meta)})


def _write_onnx(module: ExportableEncoder, path: Path, meta: dict) -> None:
    example = torch.zeros(2, SAMPLE_RATE)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript-based exporter needs no extra packages (the dynamo one needs onnxscript).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*return_complex=False.*", category=UserWarning)
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["waveform"],
            output_names=["embedding"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}},
        )
    _set_onnx_metadata(path, meta)


def _set_onnx_metadata(path: Path, meta: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    props = {METADATA_KEY: json.dumps(meta), **{k: str(v) for k, v in meta.items()}}
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = f"singerid {meta['backbone']} encoder: {meta['input']} -> {meta['output']}"
    onnx.save(proto, str(path))


def export_model(
    model: Artifact | str | os.PathLike,
    out: str | os.PathLike,
    format: str,
    *,
    verify: bool = True,
    lengths: Sequence[int] = (SAMPLE_RATE, 70001),
    batch_sizes: Sequence[int] = (1, 3),
    onnx_stft: str = "matmul",
    precision: str = "fp32",
    allow_failed_guard: bool = False,
) -> ExportResult:
    """Export ``model`` (an artefact or its path) to ``out`` as ``"onnx"`` or ``"torchscript"``.

    ``onnx_stft`` (ONNX only) picks the STFT: ``"matmul"`` (factorised DFT as matrix products,
    fastest in ONNX Runtime), ``"onnx"`` (the ONNX ``STFT`` operator) or ``"conv"`` (a conv1d DFT).

    With ``verify`` the exported file is compared with eager PyTorch (:func:`check_parity`)
    before it is moved into place; a difference above :data:`PARITY_TOLERANCE` raises
    :class:`CheckpointError` and leaves ``out`` untouched.

    ``precision`` (see :mod:`singerid.export.precision`): ``"fp32"``, ``"int8"`` or
    ``"int8-dynamic"`` (ONNX; the fp32 graph passes the parity check before it is quantized) or
    ``"bf16"`` (TorchScript, CPUs with native bf16). A non-fp32 path is judged by the accuracy
    guard (:mod:`singerid.export.guard`) and refused with :class:`ConfigError`, leaving ``out``
    untouched, when it fails, unless ``allow_failed_guard``; the metadata records the precision
    and the guard's figures either way.
    """
    _check_format(format)
    _check_extension(Path(out), format)
    if onnx_stft not in ONNX_STFT_BACKENDS:
        raise ConfigError(f"onnx_stft={onnx_stft!r}: choose one of {', '.join(ONNX_STFT_BACKENDS)}.")
    check_precision(precision, format)
    stft = "fft" if format == "torchscript" else onnx_stft
    artifact = _as_artifact(model)
    meta = guarded_metadata(export_metadata(artifact, stft), precision, None)
    out = Path(out)
    diff = guard = None
    with atomic_path(out) as tmp:
        module = exportable(artifact, stft, precision)
        if precision == "bf16":
            guard = _judge(artifact, precision, reference_embedder(module), allow_failed_guard, out)
            meta = guarded_metadata(meta, precision, guard)
        if format == "torchscript":
            _write_torchscript(module, tmp, meta)
        else:
            _write_onnx(module, tmp, meta)
        if verify and precision != "bf16":
            diff = check_parity(artifact, tmp, lengths=lengths, batch_sizes=batch_sizes)
            if not diff <= PARITY_TOLERANCE:
                raise CheckpointError(
                    f"{out}: exported {format} model differs from eager PyTorch by {diff:.3g} "
                    f"(tolerance {PARITY_TOLERANCE:g}); nothing was written. Try the other format, or report it."
                )
        if precision in QUANTIZE_MODE:
            quantize_in_place(tmp, precision, artifact.window_seconds)
            guard = _judge(artifact, precision, load_exported(tmp), allow_failed_guard, out)
            meta = guarded_metadata(meta, precision, guard)
            _set_onnx_metadata(tmp, meta)
    return ExportResult(path=out, format=format, max_abs_diff=diff, metadata=meta, guard=guard)


def _judge(artifact: Artifact, precision: str, candidate, allow_failed_guard: bool, out: Path) -> GuardResult:
    """The accuracy guard of ``candidate`` against the artefact's eager fp32 network."""
    net = copy.deepcopy(artifact.net).float().cpu().eval()
    net.frontend.set_stft_backend("fft")
    return judge(precision, reference_embedder(net), candidate, artifact.window_seconds, allow_failed_guard, str(out))


def detect_format(path: str | os.PathLike) -> str:
    """``"torchscript"`` (a zip archive) or ``"onnx"`` (anything else that onnx can parse)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: exported model not found. Create it with `singerid export`.")
    return "torchscript" if zipfile.is_zipfile(p) else "onnx"


def _jit_load(path: Path, extra_files: dict | None = None) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: not a TorchScript model ({exc}). Re-export it with `singerid export`.") from exc


def read_metadata(path: str | os.PathLike) -> dict:
    """The singerid metadata stored in an exported TorchScript or ONNX file."""
    p = Path(path)
    if detect_format(p) == "torchscript":
        # Read the zip entry: loading a TorchScript file would run its code just to see its metadata.
        text = _zip_entry(p, f"/extra/{METADATA_KEY}.json")
    else:
        import onnx

        try:
            proto = onnx.load(str(p), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others for foreign files
            raise CheckpointError(f"{p}: neither a TorchScript archive nor an ONNX model ({exc}).") from exc
        text = {prop.key: prop.value for prop in proto.metadata_props}.get(METADATA_KEY, "")
    if not text:
        raise CheckpointError(f"{p}: holds no singerid metadata; it was not written by `singerid export`.")
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{p}: its singerid metadata is not valid JSON ({exc}); re-export it with `singerid export`.") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{p}: its singerid metadata is not a JSON object; re-export it with `singerid export`.")
    return meta


def _zip_entry(path: Path, suffix: str) -> str:
    """The text of the member of the zip archive ``path`` whose name ends with ``suffix`` ("" if none)."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith(suffix)), None)
            return "" if name is None else archive.read(name).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
        raise CheckpointError(f"{path}: a damaged TorchScript archive ({exc}); re-export it with `singerid export`.") from None


def load_exported(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    piece: int | None | str = "auto",
    precision: str | None = None,
    spin: bool = False,
) -> Callable[[np.ndarray], np.ndarray]:
    """A function ``waveform (batch, samples) float32 -> embeddings (batch, dim)`` running the
    exported file with ``torch.jit.load`` (TorchScript) or onnxruntime (ONNX) on the CPU.
    A TorchScript file is a program, not data: load only files from a source you trust.

    ``threads`` sets onnxruntime's intra-op threads (TorchScript follows ``torch.set_num_threads``).
    A batch runs ``piece`` clips at a time (``None``: all at once; ``"auto"``: the backbone's
    :data:`~singerid.model.backbones.CPU_PIECES` entry), which keeps the activations in cache (same
    embeddings); a batch-dependent (official-compat) model always runs whole batches.

    ``precision`` (``"fp32"``, ``"int8"``, ...), when given, must be the one the file was exported
    with (:class:`ConfigError` otherwise): a caller that asks for a path never gets another one
    silently. ``spin=False`` (the default) lets onnxruntime's idle threads sleep instead of
    spinning: on a CPU shared with other work, spinning threads take cores from the threads doing
    the work, which slows two-thread sessions down by up to 2x; on an idle machine spinning shaves a
    little latency.
    """
    p = Path(path)
    fmt = detect_format(p)
    if piece != "auto" and piece is not None and (not isinstance(piece, int) or piece < 1):
        raise ConfigError(f"load_exported piece={piece!r}: must be >= 1, 'auto' or None (whole batches).")
    if fmt == "torchscript":
        extra = {f"{METADATA_KEY}.json": ""}
        module = _jit_load(p, extra).eval()
        _check_file_precision(p, extra[f"{METADATA_KEY}.json"], precision)
        piece = _safe_piece(extra[f"{METADATA_KEY}.json"], piece)

        def run_batch(wave: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                try:
                    return module(torch.from_numpy(wave)).numpy()
                except torch.jit.Error as exc:  # the frontend's input checks, raised inside TorchScript
                    raise AudioError(f"{p}: input of shape {list(np.shape(wave))} rejected: {_last_line(exc)}") from exc

        return _in_pieces(run_batch, piece)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures surface as AudioError below; no duplicate console log
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    try:
        session = ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for invalid models
        raise CheckpointError(f"{p}: onnxruntime cannot load it ({exc}). Re-export it with `singerid export`.") from exc
    stored = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "")
    _check_file_precision(p, stored, precision)
    piece = _safe_piece(stored, piece)

    def run_batch(wave: np.ndarray) -> np.ndarray:
        try:
            return session.run(None, {"waveform": wave})[0]
        except Exception as exc:  # onnxruntime's own error types, e.g. a clip too short to pad
            raise AudioError(f"{p}: input of shape {list(wave.shape)} rejected: {_last_line(exc)}") from exc

    return _in_pieces(run_batch, piece)


def _check_file_precision(path: Path, metadata: str, precision: str | None) -> None:
    # Files exported before precisions existed are fp32.
    stored = json.loads(metadata or "{}").get("precision", "fp32")
    if precision is not None and precision != stored:
        raise ConfigError(
            f"{path}: exported at precision {stored}, not {precision}; "
            f"re-export it with `singerid export --precision {precision}`."
        )


def _safe_piece(metadata: str, piece: int | None | str) -> int | None:
    """``piece`` (``"auto"``: the backbone's CPU piece), or ``None`` (whole batches) when the model's
    output depends on its batch-mates, or when a file without singerid metadata leaves that unknown."""
    meta = json.loads(metadata or "{}")
    if meta.get("batch_dependent", True):
        return None
    return CPU_PIECES.get(meta.get("backbone", "")) if piece == "auto" else piece


def _in_pieces(run_batch: Callable[[np.ndarray], np.ndarray], piece: int | None) -> Callable[[np.ndarray], np.ndarray]:
    def run(wave: np.ndarray) -> np.ndarray:
        wave = _check_wave(wave)
        if piece is None or len(wave) <= piece:
            return run_batch(wave)
        return np.concatenate([run_batch(wave[i : i + piece]) for i in range(0, len(wave), piece)])

    return run


def _last_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _check_wave(wave: np.ndarray) -> np.ndarray:
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if wave.ndim != 2 or wave.shape[1] == 0:
        raise AudioError(f"exported model input: expected a (batch, samples) waveform, got shape {list(wave.shape)}.")
    return wave


def parity_inputs(length: int, batch_size: int, seed: int = 0) -> np.ndarray:
    """Seeded test waveforms ``(batch_size, length)``: harmonic tones with vibrato plus noise."""
    rng = np.random.default_rng([seed, length, batch_size])
    t = np.arange(length) / SAMPLE_RATE
    f0 = rng.uniform(110.0, 660.0, size=(batch_size, 1))
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t)), axis=1) / SAMPLE_RATE
    tone = sum(np.sin(k * phase) / k for k in range(1, 9))
    wave = 0.3 * tone / np.abs(tone).max(axis=1, keepdims=True) + 0.01 * rng.standard_normal((batch_size, length))
    return wave.astype(np.float32)


def check_parity(
    artifact: Artifact | str | os.PathLike,
    exported_path: str | os.PathLike,
    lengths: Sequence[int] = (SAMPLE_RATE, 70001),
    batch_sizes: Sequence[int] = (1, 3),
    seed: int = 0,
) -> float:
    """Largest |exported - eager| over every ``length x batch size`` combination.

    The eager reference is the artefact's own network (``torch.stft`` frontend) followed by
    row-wise L2 normalisation, exactly what :class:`~singerid.infer.SingerEncoder` computes.
    """
    artifact = _as_artifact(artifact)
    net = copy.deepcopy(artifact.net).float().cpu().eval()
    net.frontend.set_stft_backend("fft")
    run = load_exported(exported_path)
    worst = 0.0
    for length in lengths:
        for batch_size in batch_sizes:
            wave = parity_inputs(int(length), int(batch_size), seed)
            with torch.inference_mode():
                ref = l2_normalize(net(torch.from_numpy(wave)).numpy())
            got = run(wave)
            if got.shape != ref.shape:
                raise CheckpointError(
                    f"{exported_path}: output shape {list(got.shape)} != eager {list(ref.shape)}; re-export the model."
                )
            worst = max(worst, float(np.max(np.abs(got - ref))))
    return worst
