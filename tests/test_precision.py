"""Export precisions and their accuracy guard: analytic guard cases, refusal of a corrupted path,
metadata that records what was measured, and loading that never swaps precisions silently."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from singerid.cli import main
from singerid.errors import ConfigError
from singerid.export import precision as precision_mod
from singerid.export.formats import (
    export_model,
    exportable,
    load_exported,
    parity_inputs,
    read_metadata,
)
from singerid.export.guard import (
    CALIBRATION_SINGER_OFFSET,
    GUARD_SINGERS,
    MAX_EER_CHANGE,
    MIN_COSINE,
    accuracy_guard,
    calibration_clips,
    guard_clips,
)
from singerid.model.artifact import save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder


def _lookup(table: np.ndarray):
    """An 'embedder' whose clips are row numbers: clip ``[[i]]`` -> ``table[i]``."""
    return lambda x: table[np.asarray(x)[:, 0].astype(int)]


def _ids(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)[:, None]


def _separated(labels: np.ndarray, eps: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Rows ``c + eps * e_singer``: every row near a common direction ``c``, singers apart by ``eps``.
    With ``rng`` each row gets a random singer instead of its own."""
    singers = labels if rng is None else rng.integers(0, labels.max() + 1, len(labels))
    table = np.zeros((len(labels), labels.max() + 2))
    table[:, -1] = 1.0
    table[np.arange(len(labels)), singers] = eps
    return table


LABELS = np.repeat(np.arange(6), 4)


@pytest.mark.parametrize("cos_theta, passes", [(0.996, True), (0.994, False)])
def test_guard_cosine_limit_on_an_exact_rotation(cos_theta, passes):
    # Every embedding tilted by the same angle towards a direction orthogonal to all of them:
    # cosine to the reference is exactly cos(theta) and pair scores map monotonically
    # (s -> cos^2 s + sin^2), so the EER cannot change.
    ref = _separated(LABELS, 0.3)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    tilt = np.zeros((len(ref), 1))
    tilted = np.hstack([cos_theta * ref, tilt + np.sqrt(1 - cos_theta**2)])
    result = accuracy_guard(_lookup(np.hstack([ref, tilt])), _lookup(tilted), _ids(len(ref)), LABELS, "test")
    assert result.min_cosine == pytest.approx(cos_theta, abs=1e-9)
    assert result.eer_change == pytest.approx(0.0, abs=1e-12)
    assert result.trials == len(LABELS) * (len(LABELS) - 1) // 2
    assert result.passed is passes
    assert ("passed" if passes else "FAILED") in result.summary()


def test_guard_identity_passes_with_nothing_changed():
    ref = _separated(LABELS, 0.3)
    result = accuracy_guard(_lookup(ref), _lookup(ref.copy()), _ids(len(ref)), LABELS, "same")
    assert result.min_cosine == pytest.approx(1.0, abs=1e-12)
    assert result.eer == result.eer_fp32 == 0.0  # singers are perfectly separated by construction
    assert result.passed


def test_guard_fails_a_path_that_keeps_cosine_but_loses_the_singers():
    # eps = 0.05: cosine of any row to another singer's is 1 / (1 + eps^2) = 0.9975 >= MIN_COSINE,
    # but the candidate's singer parts are drawn at random, so its trials no longer separate.
    eps = 0.05
    ref = _separated(LABELS, eps)
    cand = _separated(LABELS, eps, np.random.default_rng(0))
    result = accuracy_guard(_lookup(ref), _lookup(cand), _ids(len(ref)), LABELS, "shuffled")
    assert result.min_cosine >= 1 / (1 + eps**2) - 1e-12 >= MIN_COSINE
    assert result.eer_fp32 == 0.0 and result.eer > MAX_EER_CHANGE
    assert not result.passed


def test_guard_fails_nan_output():
    ref = _separated(LABELS, 0.3)
    bad = ref.copy()
    bad[3] = np.nan
    assert not accuracy_guard(_lookup(ref), _lookup(bad), _ids(len(ref)), LABELS, "nan").passed


def test_guard_and_calibration_clips_are_seeded_and_disjoint():
    clips, labels = guard_clips(1.0)
    again, _ = guard_clips(1.0)
    np.testing.assert_array_equal(clips, again)
    assert clips.shape == (len(labels), 44100) and set(labels) == set(range(GUARD_SINGERS))
    assert np.all(np.std(clips, axis=1) > 1e-3)  # sung audio, not silence
    cal = calibration_clips(1.0, n=4)
    assert cal.shape == (4, 44100) and CALIBRATION_SINGER_OFFSET >= GUARD_SINGERS
    assert not any(np.array_equal(c, g) for c in cal for g in clips)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("precision")
    arts = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        cfg = EncoderConfig(backbone="cpu_small")
        arts.append(save_artifact(folder / f"model{seed}", build_encoder(cfg), cfg))
    fp32 = folder / "fp32.onnx"
    export_model(arts[0], fp32, "onnx", lengths=(11025,), batch_sizes=(1,))
    return arts, fp32


def _corrupt_with(other_onnx):
    """A stand-in for quantization that writes another model's graph: a deliberately wrong path."""
    return lambda path, precision, seconds: shutil.copyfile(other_onnx, path)


@pytest.mark.slow
def test_export_refuses_a_corrupted_path_and_writes_nothing(small, tmp_path, monkeypatch):
    arts, _ = small
    other = tmp_path / "other.onnx"
    export_model(arts[1], other, "onnx", verify=False)
    monkeypatch.setattr("singerid.export.formats.quantize_in_place", _corrupt_with(other))
    out = tmp_path / "int8.onnx"
    with pytest.raises(ConfigError, match="accuracy guard FAILED for int8.*nothing was written"):
        export_model(arts[0], out, "onnx", precision="int8", lengths=(11025,), batch_sizes=(1,))
    assert not out.exists()
    # With the explicit override the file is written and says that it failed.
    result = export_model(
        arts[0], out, "onnx", precision="int8", allow_failed_guard=True, lengths=(11025,), batch_sizes=(1,)
    )
    meta = read_metadata(out)
    assert meta["precision"] == "int8" and meta["accuracy_guard"]["passed"] is False
    assert meta["accuracy_guard"]["min_cosine"] == pytest.approx(result.guard.min_cosine)
    assert result.guard.min_cosine < MIN_COSINE


def test_loading_checks_the_precision_the_file_holds(small):
    _, fp32 = small
    assert read_metadata(fp32)["precision"] == "fp32" and read_metadata(fp32)["accuracy_guard"] is None
    wave = parity_inputs(11025, 2)
    np.testing.assert_array_equal(load_exported(fp32, precision="fp32")(wave), load_exported(fp32)(wave))
    with pytest.raises(ConfigError, match="precision fp32, not int8.*--precision int8"):
        load_exported(fp32, precision="int8")


def test_precision_and_format_must_fit(small, tmp_path, monkeypatch, capsys):
    arts, _ = small
    with pytest.raises(ConfigError, match="int8 is available as onnx only"):
        export_model(arts[0], tmp_path / "m.ts", "torchscript", precision="int8")
    with pytest.raises(ConfigError, match="not supported"):
        export_model(arts[0], tmp_path / "m.onnx", "onnx", precision="fp16")
    monkeypatch.setattr(precision_mod, "cpu_supports_bf16", lambda: False)
    code = main(["export", "--model", str(arts[0]), "--format", "torchscript", "--out", str(tmp_path / "m.ts"),
                 "--precision", "bf16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no native bfloat16" in err[0]
    assert not (tmp_path / "m.ts").exists()


def test_bf16_backbone_runs_in_bf16_and_returns_fp32(small):
    from singerid.model.artifact import load_artifact

    art = load_artifact(small[0][0])
    wave = torch.from_numpy(parity_inputs(22050, 3))
    with torch.inference_mode():
        ref = exportable(art, "fft")(wave)
        got = exportable(art, "fft", "bf16")(wave)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    cos = torch.sum(ref * got, dim=1)
    # bf16 keeps 8 significant bits: close to fp32, but not equal to it.
    assert torch.all(cos > 0.98) and torch.max(torch.abs(got - ref)) > 1e-5


@pytest.mark.slow
def test_int8_export_records_the_guard_it_measured(small, tmp_path):
    arts, _ = small
    out = tmp_path / "int8.onnx"
    result = export_model(arts[0], out, "onnx", precision="int8", allow_failed_guard=True,
                          lengths=(11025,), batch_sizes=(1,))
    meta = read_metadata(out)
    assert meta["precision"] == "int8"
    assert meta["accuracy_guard"] == json.loads(json.dumps(result.guard.to_dict()))
    # Independently: the worst cosine of the written file against eager fp32 on the held-out clips.
    from singerid.model.artifact import load_artifact

    clips, _ = guard_clips(load_artifact(arts[0]).window_seconds)
    run = load_exported(out, precision="int8")
    with torch.inference_mode():
        ref = exportable(load_artifact(arts[0]), "fft")(torch.from_numpy(clips)).numpy()
    got = run(clips)
    got /= np.linalg.norm(got, axis=1, keepdims=True)
    assert np.min(np.sum(ref * got, axis=1)) == pytest.approx(result.guard.min_cosine, abs=1e-5)
    # The int8 graph holds quantized convolutions (and is smaller than fp32).
    import onnx

    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
