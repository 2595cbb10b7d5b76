"""Encoder networks: shapes, sizes, batch independence, ImageNet weight loading, heads, config, ONNX."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from torchvision.models import efficientnet_b0

from singerid.errors import CheckpointError, ConfigError
from singerid.model.backbones import (
    EFFICIENTNET_PREFIX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderConfig,
    Predictor,
    ProjectionHead,
    SingerEncoderNet,
    build_encoder,
    count_parameters,
)
from singerid.model.frontend import FrontendConfig

SR = 44100
B0_IMAGENET_PARAMS = 5_288_548  # torchvision EfficientNet-B0 with its 1000-class head


def clips(n: int, seconds: float, seed: int) -> torch.Tensor:
    """Harmonic tones at different pitches and levels plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    rows = []
    for _ in range(n):
        f0, level = rng.uniform(120, 400), rng.uniform(0.05, 0.5)
        x = sum(np.sin(2 * np.pi * f0 * k * t) * k ** -rng.uniform(0.5, 2.0) for k in range(1, 20))
        rows.append(level * x / np.max(np.abs(x)) + 0.01 * rng.standard_normal(t.size))
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def small_net(seed: int = 0, **kwargs) -> SingerEncoderNet:
    torch.manual_seed(seed)
    return build_encoder(EncoderConfig(backbone="cpu_small", **kwargs)).eval()


def calibrated(net: SingerEncoderNet, seed: int = 0) -> SingerEncoderNet:
    """Set BatchNorm running statistics from one batch, so eval-mode outputs are not near zero."""
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: one batch sets the statistics
    net.train()
    with torch.no_grad():
        net(clips(4, 0.3, seed=seed))
    return net.eval()


@pytest.fixture(scope="module")
def b0_net() -> SingerEncoderNet:
    # Left at initialisation: eval-mode outputs are tiny (~1e-14) but float32 keeps their relative
    # precision, so comparisons below are relative to the output scale. (Calibrating BatchNorm on
    # one batch makes this random network numerically chaotic instead.)
    torch.manual_seed(0)
    return build_encoder(EncoderConfig()).eval()


def relative_diff(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Largest |a - b| relative to the largest |b|."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


# --- shapes and sizes -----------------------------------------------------------------------


def test_cpu_small_shapes_and_size() -> None:
    net = small_net()
    assert net.embedding_dim == 256
    assert net(clips(3, 0.5, seed=0)).shape == (3, 256)
    assert 100_000 <= count_parameters(net) <= 1_000_000
    assert small_net(embedding_dim=64)(clips(2, 0.5, seed=0)).shape == (2, 64)


def test_efficientnet_shapes_and_size(b0_net: SingerEncoderNet) -> None:
    with torch.no_grad():
        assert b0_net(clips(2, 0.5, seed=1)).shape == (2, 1000)
    # The paper's model: exactly torchvision's EfficientNet-B0 (the frontend has no parameters).
    assert count_parameters(b0_net) == count_parameters(efficientnet_b0(weights=None)) == B0_IMAGENET_PARAMS
    net = build_encoder(EncoderConfig(embedding_dim=128))
    assert count_parameters(net) == B0_IMAGENET_PARAMS - (1280 * 1000 + 1000) + (1280 * 128 + 128)


def test_count_parameters_trainable_only() -> None:
    net = small_net()
    net.frontend.requires_grad_(False)
    net.backbone.embed.requires_grad_(False)
    frozen = sum(p.numel() for p in net.backbone.embed.parameters())
    assert count_parameters(net, trainable_only=True) == count_parameters(net) - frozen


def test_state_dict_keys_follow_torchvision(b0_net: SingerEncoderNet) -> None:
    keys = set(b0_net.state_dict())
    tv_keys = {EFFICIENTNET_PREFIX + k for k in efficientnet_b0(weights=None).state_dict()}
    assert keys == tv_keys
    assert f"{EFFICIENTNET_PREFIX}classifier.1.weight" in keys and f"{EFFICIENTNET_PREFIX}features.0.0.weight" in keys


# --- batch independence ------------------------------------------------------------------------


def test_cpu_small_embedding_is_batch_independent_in_eval() -> None:
    net = calibrated(small_net(seed=1))
    x = clips(6, 0.3, seed=2)
    with torch.no_grad():
        batch = net(x)
        assert batch.abs().max() > 0.1
        for i in (0, 5):
            torch.testing.assert_close(net(x[i : i + 1]), batch[i : i + 1], rtol=1e-5, atol=1e-5)
        net.train()  # BatchNorm on batch statistics: now the batch matters
        assert (net(x[:2])[0] - net(x[:3])[0]).abs().max() > 1e-3


def test_efficientnet_embedding_is_batch_independent_in_eval(b0_net: SingerEncoderNet) -> None:
    x = clips(3, 0.4, seed=3)
    with torch.no_grad():
        batch = b0_net(x)
        assert relative_diff(b0_net(x[1:2]), batch[1:2]) < 1e-5


def test_official_compat_uses_imagenet_normalisation(b0_net: SingerEncoderNet) -> None:
    torch.manual_seed(0)
    net = build_encoder(EncoderConfig(frontend=FrontendConfig(mode="official-compat"))).eval()
    seen = []
    net.backbone.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    x = clips(2, 0.3, seed=4)
    with torch.no_grad():
        net(x)
    raw = net.frontend.log_mel(x)
    scaled = (raw / raw.max()).unsqueeze(1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen[0], (scaled - mean) / std)
    # Standard mode feeds the standardised log-mel unchanged to all three channels.
    seen.clear()
    hook = b0_net.backbone.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        b0_net(x)
    hook.remove()
    feats = b0_net.frontend(x)
    for c in range(3):
        torch.testing.assert_close(seen[0][:, c], feats)


# --- ImageNet weights from a local file -----------------------------------------------------


def test_imagenet_weights_load_from_local_file(tmp_path) -> None:
    torch.manual_seed(123)
    source = efficientnet_b0(weights=None)
    path = tmp_path / "b0.pth"
    torch.save(source.state_dict(), path)
    net = build_encoder(EncoderConfig(imagenet_weights=str(path)))
    torch.testing.assert_close(net.backbone.net.features[0][0].weight, source.features[0][0].weight, rtol=0, atol=0)
    torch.testing.assert_close(net.backbone.net.classifier[1].bias, source.classifier[1].bias, rtol=0, atol=0)
    # Another embedding size keeps its own classifier and takes only the features.
    net = build_encoder(EncoderConfig(embedding_dim=64, imagenet_weights=str(path)))
    torch.testing.assert_close(net.backbone.net.features[8][0].weight, source.features[8][0].weight, rtol=0, atol=0)
    assert net.backbone.net.classifier[1].weight.shape == (64, 1280)


def test_imagenet_weights_errors(tmp_path) -> None:
    missing = EncoderConfig(imagenet_weights=str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder(missing)
    # A checkpoint about to overwrite the weights does not need the ImageNet file.
    assert build_encoder(missing, load_imagenet=False).embedding_dim == 1000
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read"):
        build_encoder(EncoderConfig(imagenet_weights=str(garbage)))
    state = efficientnet_b0(weights=None).state_dict()
    del state["features.1.0.block.0.0.weight"]
    state["classifier.1.weight"] = torch.zeros(10, 1280)
    broken = tmp_path / "broken.pth"
    torch.save(state, broken)
    expected = r"missing: features\.1\.0\.block\.0\.0\.weight.*wrong shape: classifier\.1\.weight"
    with pytest.raises(CheckpointError, match=expected):
        build_encoder(EncoderConfig(imagenet_weights=str(broken)))
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        build_encoder(EncoderConfig(imagenet_weights=str(not_a_dict)))


# --- heads -------------------------------------------------------------------------------------


def test_projection_head_unit_norm() -> None:
    torch.manual_seed(0)
    head = ProjectionHead(256, 32)
    z = head(torch.randn(5, 256) * 10)
    assert z.shape == (5, 32)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(5))
    # SiLU comes before the Linear: the head is Linear(silu(h)), then normalised.
    h = torch.randn(3, 256)
    raw = torch.nn.functional.silu(h) @ head.net[1].weight.T + head.net[1].bias
    torch.testing.assert_close(head(h), raw / raw.norm(dim=1, keepdim=True))


def test_predictor_shapes_and_batchnorm() -> None:
    torch.manual_seed(0)
    predictor = Predictor()
    assert predictor(torch.randn(8, 128)).shape == (8, 128)
    assert count_parameters(predictor) == 128 * 1024 + 2 * 1024 + 1024 * 128 + 128
    predictor.train()
    hidden = predictor.net[1](predictor.net[0](torch.randn(16, 128) * 5 + 3))
    torch.testing.assert_close(hidden.mean(dim=0), torch.zeros(1024), rtol=0, atol=1e-5)


# --- configuration -------------------------------------------------------------------------


def test_encoder_config_round_trip() -> None:
    cfg = EncoderConfig(backbone="cpu_small", embedding_dim=96, frontend=FrontendConfig(n_mels=64, mode="official-compat"))
    data = cfg.to_dict()
    assert data["frontend"]["n_mels"] == 64
    assert EncoderConfig.from_dict(data) == cfg
    assert EncoderConfig.from_dict({"backbone": "cpu_small"}).embedding_dim == 256
    assert EncoderConfig().embedding_dim == 1000


def test_encoder_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown key.*colour"):
        EncoderConfig.from_dict({"backbone": "cpu_small", "colour": "red"})
    with pytest.raises(ConfigError, match="unknown key.*hop"):
        EncoderConfig.from_dict({"frontend": {"hop": 256}})
    with pytest.raises(ConfigError, match="backbone"):
        EncoderConfig(backbone="resnet50")
    with pytest.raises(ConfigError, match="embedding_dim"):
        EncoderConfig(embedding_dim=0)
    with pytest.raises(ConfigError, match="imagenet_weights"):
        EncoderConfig(backbone="cpu_small", imagenet_weights="b0.pth")



def test_pooled_norm_centres_the_embeddings_of_a_training_batch() -> None:
    torch.manual_seed(0)
    net = build_encoder(EncoderConfig(backbone="cpu_small", embedding_dim=32, pooled_norm=True)).train()
    x = clips(6, 0.3, seed=2)
    with torch.no_grad():
        h = net(x)
        # BatchNorm makes every pooled statistic zero-mean over the batch, so the batch mean of a
        # Linear layer's output is its bias.
        torch.testing.assert_close(h.mean(0), net.backbone.embed.bias, rtol=0, atol=1e-5)
        plain = build_encoder(EncoderConfig(backbone="cpu_small", embedding_dim=32)).train()
        assert (plain(x).mean(0) - plain.backbone.embed.bias).abs().max() > 1e-2


def test_input_stats_pool_each_band_of_the_log_mel_input() -> None:
    torch.manual_seed(0)
    net = build_encoder(EncoderConfig(backbone="cpu_small", embedding_dim=32, input_stats=True)).eval()
    seen = {}
    net.backbone.embed.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0]))
    x = clips(3, 0.3, seed=4)
    with torch.no_grad():
        net(x)
        mel = net.frontend(x).double().numpy()
    tail = seen["x"][:, -2 * 128 :].double().numpy()
    np.testing.assert_allclose(tail[:, :128], mel.mean(axis=2), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(tail[:, 128:], mel.std(axis=2), rtol=1e-4, atol=1e-3)
    assert net.backbone.embed.in_features == 2 * 256 + 2 * 128


def test_cpu_small_options_are_refused_elsewhere_and_default_off_in_older_configs() -> None:
    for name in ("pooled_norm", "input_stats"):
        with pytest.raises(ConfigError, match=f"{name} applies to the cpu_small backbone only"):
            EncoderConfig(**{name: True})
    cfg = EncoderConfig.from_dict({"backbone": "cpu_small", "embedding_dim": 16})
    assert not cfg.pooled_norm and not cfg.input_stats
    assert EncoderConfig.from_dict(EncoderConfig(backbone="cpu_small", pooled_norm=True, input_stats=True).to_dict()).input_stats

# --- export -----------------------------------------------------------------------------------


def onnx_parity(net: SingerEncoderNet, x: torch.Tensor, stft: str) -> float:
    """Export ``net`` (STFT backend ``stft``) with dynamic batch and length; largest |onnx - eager|
    relative to the output scale."""
    ort = pytest.importorskip("onnxruntime")
    with torch.no_grad():
        eager = net(x).numpy()
    net.frontend.set_stft_backend(stft)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, 8192),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["waveform"],
            output_names=["embedding"],
            dynamic_axes={"waveform": {0: "batch", 1: "samples"}, "embedding": {0: "batch"}},
        )
    net.frontend.set_stft_backend("fft")
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"waveform": x.numpy()})
    assert out.shape == eager.shape
    return relative_diff(out, eager)


@pytest.mark.slow
def test_cpu_small_torchscript_matches_eager() -> None:
    net = calibrated(small_net(seed=3), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is marked deprecated
        scripted = torch.jit.script(net)
    x = clips(3, 0.4, seed=7)
    with torch.no_grad():
        assert relative_diff(scripted(x), net(x)) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("stft", ["onnx", "matmul", "conv"])
def test_cpu_small_onnx_matches_eager(stft: str) -> None:
    assert onnx_parity(calibrated(small_net(seed=2)), clips(3, 0.6, seed=5), stft) < 1e-4


@pytest.mark.slow
def test_efficientnet_onnx_matches_eager(b0_net: SingerEncoderNet) -> None:
    assert onnx_parity(b0_net, clips(3, 0.3, seed=6), "matmul") < 1e-4
