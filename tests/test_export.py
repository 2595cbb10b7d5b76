from __future__ import annotations

import numpy as np
import pytest
import torch

from singerid.cli import main
from singerid.errors import AudioError, CheckpointError, ConfigError
from singerid.export.formats import (
    PARITY_TOLERANCE,
    check_parity,
    export_model,
    load_exported,
    parity_inputs,
    read_metadata,
)
from singerid.infer import load_model
from singerid.model.artifact import load_artifact, save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.model.frontend import FrontendConfig

LENGTHS = (11025, 16001)
BATCHES = (1, 2)
SUFFIX = {"onnx": ".onnx", "torchscript": ".ts"}


def _artifact(path, backbone="cpu_small", mode="standard", seed=0):
    torch.manual_seed(seed)
    cfg = EncoderConfig(backbone=backbone, frontend=FrontendConfig(mode=mode))
    net = build_encoder(cfg)
    # Non-trivial BatchNorm statistics, so eval-mode normalisation is exercised.
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return save_artifact(path, net, cfg)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return _artifact(tmp_path_factory.mktemp("small") / "model")


# (format, STFT inside the exported graph)
EXPORTS = [("torchscript", "fft"), ("onnx", "matmul"), ("onnx", "onnx"), ("onnx", "conv")]


@pytest.fixture(scope="module", params=EXPORTS, ids=["torchscript", "onnx-matmul", "onnx-stft-op", "onnx-conv"])
def exported(request, small, tmp_path_factory):
    fmt, stft = request.param
    out = tmp_path_factory.mktemp("exported") / f"model{SUFFIX[fmt]}"
    result = export_model(small, out, fmt, verify=False, **({"onnx_stft": stft} if fmt == "onnx" else {}))
    assert result.metadata["stft"] == stft
    return fmt, result


@pytest.mark.slow
def test_parity_with_eager_across_lengths_and_batches(small, exported):
    _, result = exported
    diff = check_parity(small, result.path, lengths=LENGTHS, batch_sizes=BATCHES)
    assert 0 <= diff < PARITY_TOLERANCE


def test_exported_output_matches_encoder_embed_and_is_unit_norm(small, exported):
    _, result = exported
    wave = parity_inputs(44100, 3, seed=5)
    got = load_exported(result.path)(wave)
    want = load_model(small).embed(wave)
    assert got.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=1e-4)


def constant_shapes(proto) -> set[tuple[int, ...]]:
    """Shapes of an ONNX graph's initializers and Constant-node tensors."""
    tensors = list(proto.graph.initializer)
    tensors += [a.t for node in proto.graph.node if node.op_type == "Constant" for a in node.attribute if a.name == "value"]
    return {tuple(t.dims) for t in tensors}


def test_metadata_travels_inside_the_file(small, exported):
    fmt, result = exported
    meta = read_metadata(result.path)
    art = load_artifact(small)
    assert meta["model_fingerprint"] == art.fingerprint
    assert (meta["sample_rate"], meta["embedding_dim"], meta["backbone"]) == (44100, 256, "cpu_small")
    assert meta["batch_dependent"] is False
    if fmt == "onnx":
        import onnx

        proto = onnx.load(str(result.path))
        props = {p.key: p.value for p in proto.metadata_props}
        assert props["embedding_dim"] == "256" and props["model_fingerprint"] == art.fingerprint
        # The STFT the metadata names is the one in the graph: the ONNX operator, matrix products
        # fed straight from the waveform's frames, or a convolution (cpu_small has Conv layers anyway).
        ops = {node.op_type for node in proto.graph.node}
        assert ("STFT" in ops) == (meta["stft"] == "onnx")
        assert ((64, 64, 34) in constant_shapes(proto)) == (meta["stft"] == "matmul")  # stage-2 DFT matrices
        assert ("Conv" in ops) and meta["stft"] in ("matmul", "onnx", "conv")
    else:
        assert meta["stft"] == "fft"


def test_batches_run_in_pieces_give_whole_batch_embeddings(exported):
    _, result = exported
    wave = parity_inputs(11025, 9, seed=8)
    whole = load_exported(result.path, piece=None)(wave)
    np.testing.assert_allclose(load_exported(result.path, piece=4)(wave), whole, atol=1e-5)
    with pytest.raises(ConfigError, match="piece=0"):
        load_exported(result.path, piece=0)


def test_parity_check_detects_a_different_model(small, exported, tmp_path):
    _, result = exported
    other = _artifact(tmp_path / "other", seed=1)
    assert check_parity(other, result.path, lengths=(11025,), batch_sizes=(1,)) > PARITY_TOLERANCE


def test_failed_parity_writes_nothing(small, tmp_path, monkeypatch):
    import singerid.export.formats as export

    monkeypatch.setattr(export, "check_parity", lambda *a, **k: 1.0)
    out = tmp_path / "model.ts"
    with pytest.raises(CheckpointError, match="differs from eager"):
        export.export_model(small, out, "torchscript")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_format_is_an_error(small, tmp_path, capsys):
    with pytest.raises(ConfigError, match="onnx, torchscript"):
        export_model(small, tmp_path / "m.tflite", "tflite")
    with pytest.raises(SystemExit):
        main(["export", "--model", str(small), "--format", "tflite", "--out", str(tmp_path / "m")])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="matmul, onnx, conv"):
        export_model(small, tmp_path / "m.onnx", "onnx", onnx_stft="wavelet")


def test_the_output_name_must_not_say_another_format(small, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"x.ts: a .ts file is torchscript, but the format asked is onnx; name it x.onnx"):
        export_model(small, tmp_path / "x.ts", "onnx")
    with pytest.raises(ConfigError, match=r"name it y.ts or ask for onnx"):
        export_model(small, tmp_path / "y.onnx", "torchscript")
    assert main(["export", "--model", str(small), "--format", "onnx", "--out", str(tmp_path / "x.ts")]) == 2
    assert "name it x.onnx" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_exports_and_reports_parity(small, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code = main([
        "export", "--model", str(small), "--format", "onnx", "--out", str(out),
        "--parity-lengths", "9000", "--parity-batch-sizes", "1", "2",
    ])
    text = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "parity vs eager PyTorch: max |diff|" in text
    reported = float(text.split("max |diff| ")[1].split()[0])
    assert reported < PARITY_TOLERANCE


@pytest.mark.slow
def test_official_compat_export_keeps_batch_dependence(tmp_path):
    art = _artifact(tmp_path / "official", mode="official-compat")
    result = export_model(art, tmp_path / "official.ts", "torchscript", lengths=(11025,), batch_sizes=(1, 2))
    assert result.max_abs_diff < PARITY_TOLERANCE and result.metadata["batch_dependent"] is True
    run = load_exported(result.path)
    wave = parity_inputs(11025, 2, seed=3)
    wave[0] *= 0.01  # a louder batch-mate moves the batch maximum of the log-mel
    alone = run(wave[:1])
    together = run(wave)[:1]
    # Far above the float noise of the parity check (about 1e-7).
    assert np.max(np.abs(alone - together)) > 1e-5
    with pytest.raises(AudioError, match="too short for reflect padding"):
        run(np.zeros((1, 500), np.float32))
    onnx_result = export_model(art, tmp_path / "official.onnx", "onnx", lengths=(11025,), batch_sizes=(1, 2))
    assert onnx_result.max_abs_diff < PARITY_TOLERANCE
    np.testing.assert_allclose(load_exported(onnx_result.path)(wave), run(wave), atol=1e-5)
    # Asked to run one clip at a time, a batch-dependent model still sees the whole batch.
    for path in (result.path, onnx_result.path):
        np.testing.assert_allclose(load_exported(path, piece=1)(wave), together_all := run(wave), atol=1e-5)
        assert np.max(np.abs(together_all[:1] - alone)) > 1e-5


@pytest.mark.slow
def test_efficientnet_torchscript_parity(tmp_path):
    art = _artifact(tmp_path / "effnet", backbone="efficientnet_b0")
    # One call only: TorchScript's optimising second run of a network this size costs seconds.
    result = export_model(art, tmp_path / "effnet.ts", "torchscript", lengths=(8192,), batch_sizes=(2,))
    assert result.max_abs_diff < PARITY_TOLERANCE
    assert read_metadata(result.path)["embedding_dim"] == 1000
