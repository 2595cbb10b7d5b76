"""Models by name: fetched from a local test hub through huggingface_hub, converted once, used offline."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import official_state_dict
from hubserver import HubServer, go_offline, use_hub

from singerid.cli import main
from singerid.errors import CheckpointError, SingerIdError
from singerid.export.formats import parity_inputs
from singerid.infer import load_model
from singerid.model.artifact import weights_file
from singerid.model.hub import OFFICIAL_REPO, parse_model_spec, resolve_model
from singerid.model.official import import_official

HPARAMS = b"feature_extractor:\n  spec_layer: melspectogram\n  n_fft: 2048\n  hop_length: 512\nencoder:\n  backbone: efficientnet_b0\n  embedding_dim: 1000\n"


@pytest.fixture(scope="module")
def model_pt() -> bytes:
    buf = io.BytesIO()
    torch.save(official_state_dict(seed=1), buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return parity_inputs(44100, 1, seed=0)


@pytest.fixture(scope="module")
def reference(model_pt, clip, tmp_path_factory):
    """What `import-official` gives on the same files: the embeddings loading by name must reproduce."""
    folder = tmp_path_factory.mktemp("byol")
    (folder / "model.pt").write_bytes(model_pt)
    (folder / "hyperparams.yaml").write_bytes(HPARAMS)
    out = import_official(folder, folder.parent / "imported").path
    return out, load_model(out).embed(clip)


@pytest.fixture
def hub(model_pt, monkeypatch, tmp_path):
    repos = {
        OFFICIAL_REPO: {
            "byol/model.pt": model_pt,
            "byol/hyperparams.yaml": HPARAMS,
            "unif-align/model.pt": model_pt,
            "unif-align/hyperparams.yaml": HPARAMS,
        }
    }
    with HubServer(repos) as server:
        server.env = use_hub(monkeypatch, server.url, tmp_path)
        yield server


def _one_line_error(fn, *args) -> str:
    with pytest.raises(SingerIdError) as err:
        fn(*args)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.slow
def test_name_gives_the_import_official_embeddings_then_works_offline(hub, clip, reference, monkeypatch):
    imported, expected = reference
    enc = load_model("byol")
    np.testing.assert_array_equal(enc.embed(clip), expected)
    provenance = enc.artifact.meta["hub"]
    assert provenance["repo"] == OFFICIAL_REPO and provenance["folder"] == "byol"
    assert provenance["commit"] == hub.commits[OFFICIAL_REPO]
    assert provenance["files_sha256"]["model.pt"] == hashlib.sha256(hub.repos[OFFICIAL_REPO]["byol/model.pt"]).hexdigest()
    assert str(enc.artifact.path).startswith(os.environ["SINGERID_HOME"])
    # A second load makes no request at all; with the hub gone and offline mode on it still works.
    asked = len(hub.requests)
    np.testing.assert_array_equal(load_model("byol").embed(clip), expected)
    assert len(hub.requests) == asked
    hub.stop()
    go_offline(monkeypatch)
    np.testing.assert_array_equal(load_model("byol").embed(clip), expected)


def test_uniformity_is_found_under_unif_align(hub, clip, reference):
    enc = load_model("uniformity")
    assert enc.artifact.meta["hub"]["folder"] == "unif-align"
    np.testing.assert_array_equal(enc.embed(clip), reference[1])
    assert load_model("unif-align").artifact.path == enc.artifact.path


def test_hf_spec_in_singerid_layout(monkeypatch, tmp_path, clip):
    from singerid.model.artifact import save_artifact
    from singerid.model.backbones import EncoderConfig, build_encoder

    torch.manual_seed(0)
    config = EncoderConfig(backbone="cpu_small", embedding_dim=32)
    local = save_artifact(tmp_path / "local", build_encoder(config).eval(), config)
    files = {f"sub/{n}": (local / n).read_bytes() for n in ("config.json", "weights.safetensors")}
    with HubServer({"me/mine": files}) as server:
        use_hub(monkeypatch, server.url, tmp_path)
        commit = server.commits["me/mine"]
        enc = load_model(f"hf:me/mine/sub@{commit}")
        np.testing.assert_array_equal(enc.embed(clip), load_model(local).embed(clip))
        assert enc.artifact.meta["hub"]["layout"] == "singerid" and enc.artifact.meta["hub"]["revision"] == commit
        message = _one_line_error(load_model, "hf:me/mine/sub@v9")
        assert "revision 'v9' not found" in message


def test_an_existing_path_wins_over_a_name(tmp_path, monkeypatch):
    (tmp_path / "byol").mkdir()
    monkeypatch.chdir(tmp_path)
    assert parse_model_spec("byol") == tmp_path.joinpath("byol").relative_to(tmp_path)
    assert "not a singerid model folder" in _one_line_error(load_model, "byol")


def test_an_audio_file_as_model_is_named_as_such(tmp_path, capsys):
    wav = tmp_path / "song.wav"
    wav.write_bytes(b"RIFF")
    with pytest.raises(CheckpointError, match=r"song.wav: is an audio file, not a model"):
        resolve_model(wav)
    assert main(["verify", str(wav), str(wav), "--model", str(wav)]) == 1
    assert "is an audio file, not a model" in capsys.readouterr().err


def test_unknown_name_lists_the_known_names(capsys, tmp_path, clip):
    from singerid.audio import write_audio

    wav = write_audio(tmp_path / "clip.wav", clip[0])
    assert main(["embed", str(wav), "--model", "byl", "--out", str(tmp_path / "e.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    for name in ("byol", "contrastive", "contrastive-vc", "uniformity", "vicreg"):
        assert name in err


def test_hub_failures_are_one_line_each(hub, monkeypatch):
    assert "HTTP 404" in _one_line_error(load_model, "hf:nobody/nothing/byol")
    assert "has no byol2/model.pt nor byol2/config.json" in _one_line_error(load_model, "hf:BernardoTorres/singer-identity/byol2")
    hub.status = 401
    assert "HTTP 401" in _one_line_error(load_model, "byol")
    hub.status = None
    go_offline(monkeypatch)
    message = _one_line_error(load_model, "contrastive")
    assert "'contrastive' is not cached and HF_HUB_OFFLINE is set" in message and "local model folder" in message


def test_a_timeout_is_one_line():
    # huggingface_hub retries a timed-out request with back-off before giving up, so the test
    # builds the exception it finally raises (a cache miss caused by the timeout) instead of waiting.
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from singerid.model.hub import _hub_error

    try:
        try:
            raise httpx2.ReadTimeout("timed out")
        except httpx2.ReadTimeout as cause:
            raise LocalEntryNotFoundError("An error happened while trying to locate the file") from cause
    except LocalEntryNotFoundError as exc:
        message = _hub_error(parse_model_spec("byol"), "byol/model.pt", exc)
    assert f"did not answer within {constants.HF_HUB_ETAG_TIMEOUT} s" in message and "\n" not in message


@pytest.mark.slow
def test_a_corrupt_cache_is_refetched_online_and_refused_offline(hub, clip, reference, monkeypatch):
    enc = load_model("byol")
    weights = weights_file(enc.artifact.path)
    good = weights.read_bytes()
    weights.write_bytes(good[:-10] + bytes(10))
    np.testing.assert_array_equal(load_model("byol").embed(clip), reference[1])
    assert weights.read_bytes() == good
    # The downloaded blob in huggingface_hub's cache is checked against its ETag (its SHA-256) too.
    blob = next(p for p in (enc.artifact.path.parents[4] / "hf" / "hub").rglob("blobs/*") if p.stat().st_size > 1024)
    blob.write_bytes(blob.read_bytes()[:-10] + bytes(10))
    weights.write_bytes(good[:-10] + bytes(10))
    gets = sum(method == "GET" for method, _ in hub.requests)
    np.testing.assert_array_equal(load_model("byol").embed(clip), reference[1])
    assert sum(method == "GET" for method, _ in hub.requests) == gets + 1
    weights.write_bytes(good[:-10] + bytes(10))
    go_offline(monkeypatch)
    assert "no longer matches its recorded hash" in _one_line_error(load_model, "byol")


def test_models_command_lists_downloads_and_describes(hub, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "byol" in out and "not cached" in out.splitlines()[0]
    assert main(["models", "download", "byol"]) == 0
    path = capsys.readouterr().out.split(" -> ")[1].strip()
    assert main(["models"]) == 0
    assert f"cached at {path}" in capsys.readouterr().out.splitlines()[0]
    assert main(["models", "info", "byol"]) == 0
    info = capsys.readouterr().out
    for field in ("fingerprint", "frontend_mode: official-compat", "sample_rate: 44100", "window_seconds", "calibration: None"):
        assert field in info
    assert json.dumps(hub.commits[OFFICIAL_REPO]) in info


def authors_embedding(audio: np.ndarray, model_pt: bytes) -> np.ndarray:
    """The authors' IdentityEncoder, written out independently: nnAudio's mel spectrogram (a
    22,050 Hz filterbank on the 44.1 kHz STFT, reflect padding, power 2), log(x + 1e-8), division
    by the maximum, three ImageNet-normalised channels, torchvision's EfficientNet-B0."""
    import librosa
    from torchvision.models import efficientnet_b0

    mel = librosa.feature.melspectrogram(y=audio.astype(np.float64), sr=22050, n_fft=2048, hop_length=512, n_mels=128, pad_mode="reflect")
    x = torch.from_numpy(np.log(mel + 1e-8)).float()[None]
    x = x / x.max()
    mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    x = (x.expand(3, *x.shape[1:]) - mean) / std
    net = efficientnet_b0(weights=None, num_classes=1000)
    state = torch.load(io.BytesIO(model_pt), weights_only=True)
    net.load_state_dict({k[len("encoder.net.2."):]: v for k, v in state.items() if k.startswith("encoder.net.2.")})
    with torch.no_grad():
        h = net.eval()(x[None])[0].numpy()
    return h / np.linalg.norm(h)


@pytest.mark.slow
def test_cli_embed_by_name_gives_the_authors_embedding_online_then_offline(hub, clip, model_pt, tmp_path, monkeypatch):
    from singerid.audio import load_audio, write_audio

    wav = write_audio(tmp_path / "clip.wav", clip[0])
    expected = authors_embedding(load_audio(wav), model_pt)
    for attempt in ("online", "offline"):
        out = tmp_path / f"{attempt}.npz"
        assert main(["embed", str(wav), "--model", "byol", "--out", str(out)]) == 0
        np.testing.assert_allclose(np.load(out)["embeddings"][0], expected, atol=1e-5)
        if attempt == "online":
            hub.stop()
            go_offline(monkeypatch)


@pytest.mark.slow
def test_two_processes_loading_at_once_share_one_conversion(hub, tmp_path):
    code = "import singerid; print(singerid.load_model('byol').artifact.fingerprint)"
    env = {**os.environ, **hub.env}
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert outs[0][0] == outs[1][0]
    cache = next((tmp_path / "singerid" / "models").rglob("ref.json")).parent
    assert len([p for p in cache.iterdir() if p.is_dir()]) == 1
    assert sum(method == "GET" and path.endswith("model.pt") for method, path in hub.requests) == 1


@pytest.mark.parametrize(
    "spec, repo, folders, revision",
    [
        ("byol", OFFICIAL_REPO, ("byol",), "main"),
        ("unif-align", OFFICIAL_REPO, ("unif-align", "uniformity"), "main"),
        ("hf:a/b", "a/b", ("",), "main"),
        ("hf:a/b/c/d@v2", "a/b", ("c/d",), "v2"),
    ],
)
def test_specs_parse_to_their_hub_source(spec, repo, folders, revision):
    source = parse_model_spec(spec)
    assert (source.repo, source.folders, source.revision) == (repo, folders, revision)


@pytest.mark.parametrize("spec", ["hf:onlyowner", "hf:a/b@"])
def test_malformed_hf_specs_are_refused(spec):
    assert "hf:OWNER/REPO[/SUBFOLDER][@REVISION]" in _one_line_error(parse_model_spec, spec)
