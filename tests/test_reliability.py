"""Crash safety and refusals: fsync'd atomic writes, kept permissions, output locks, refused
mixing of settings, verified artefact hashes, crash-safe artefact folders, metadata reads that
run no model code."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from singerid import fileio
from singerid.errors import CheckpointError, DatasetError, OutputError
from singerid.fileio import (
    atomic_path,
    check_settings,
    output_lock,
    read_text,
    write_text,
)
from singerid.model import artifact as artifact_module
from singerid.model.artifact import (
    load_artifact,
    save_artifact,
    update_calibration,
    weights_file,
)
from singerid.model.backbones import EncoderConfig, build_encoder


def test_atomic_write_fsyncs_file_and_folder_before_and_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("replace", str(b))), real_replace(a, b))[1])
    target = tmp_path / "out.txt"
    write_text(target, "hello")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".out.txt."))  # the temporary file, flushed before the rename
    assert events[2][1] == str(tmp_path)  # the folder, so the rename itself is on disk
    assert target.read_text() == "hello"


def test_a_replaced_file_keeps_its_permissions_and_the_umask_is_never_touched(tmp_path, monkeypatch):
    target = tmp_path / "profiles.npz"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda m: (calls.append(m), real_umask(m))[1])
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_bytes() == b"new"
    assert calls == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_a_second_job_on_the_same_output_is_refused_and_the_lock_goes_away(tmp_path):
    out = tmp_path / "emb.npz"
    with output_lock(out) as lock_file:
        assert lock_file.is_file()
        with pytest.raises(OutputError, match="another singerid run is writing"):
            with output_lock(out):
                pass
    assert not lock_file.exists()
    with output_lock(out):  # free again
        pass


def test_a_lock_held_by_another_process_is_respected(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "emb.npz"
    code = (
        "import sys, time; from singerid.fileio import output_lock\n"
        f"with output_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(30)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(OutputError):
            with output_lock(out):
                pass
    finally:
        child.kill()
        child.wait()
    with output_lock(out):  # SIGKILL released it
        pass


def test_settings_are_stored_then_other_settings_are_refused_naming_the_keys(tmp_path):
    parts = tmp_path / "job.parts"
    check_settings(parts, {"window": 4.0, "hop": 2.0, "model": "abc"})
    assert json.loads((parts / fileio.SETTINGS_FILE).read_text()) == {"hop": 2.0, "model": "abc", "window": 4.0}
    check_settings(parts, {"window": 4.0, "hop": 2.0, "model": "abc"})  # same settings: resume
    with pytest.raises(OutputError) as err:
        check_settings(parts, {"window": 3.0, "hop": 2.0, "model": "abc", "pad": True})
    message = str(err.value)
    assert "pad None -> True" in message and "window 4.0 -> 3.0" in message and "hop" not in message
    assert "\n" not in message


def test_text_files_with_a_byte_order_mark_or_not_utf8(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffpath,singer\n".encode("utf-8"))
    assert read_text(bom, "").splitlines()[0] == "path,singer"
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,singer\nb\xe9.wav,x\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin.csv: not UTF-8 text .* at byte 13"):
        read_text(latin, "")


@pytest.fixture
def net_and_config():
    torch.manual_seed(0)
    config = EncoderConfig(backbone="cpu_small", embedding_dim=32)
    return build_encoder(config).eval(), config


def test_artefacts_are_safetensors_and_their_hash_is_checked(tmp_path, net_and_config):
    import hashlib

    net, config = net_and_config
    folder = save_artifact(tmp_path / "m", net, config, extra={"source": "unit"})
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.safetensors"]
    meta = json.loads((folder / "config.json").read_text())
    assert meta["format_version"] == 2
    assert meta["weights_sha256"] == hashlib.sha256((folder / "weights.safetensors").read_bytes()).hexdigest()
    single = save_artifact(tmp_path / "m.safetensors", net, config)
    assert load_artifact(single).fingerprint == load_artifact(folder).fingerprint
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"m: weights.safetensors does not match the SHA-256"):
        load_artifact(folder)


def test_old_pt_artefacts_still_load(tmp_path, net_and_config):
    import hashlib
    import io

    net, config = net_and_config
    state = {k: v.detach() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    old = tmp_path / "old"
    old.mkdir()
    (old / "weights.pt").write_bytes(buf.getvalue())
    meta = json.loads((save_artifact(tmp_path / "new", net, config) / "config.json").read_text())
    meta.update(format_version=1, weights_sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    (old / "config.json").write_text(json.dumps(meta))
    art = load_artifact(old)
    assert weights_file(old).name == "weights.pt"
    for key, value in net.state_dict().items():
        torch.testing.assert_close(art.net.state_dict()[key], value)


def test_a_crash_at_any_rename_leaves_the_old_or_the_new_artefact_whole(tmp_path, monkeypatch, net_and_config):
    net, config = net_and_config
    path = save_artifact(tmp_path / "m", net, config)
    old_fp = load_artifact(path).fingerprint
    torch.manual_seed(1)
    other = build_encoder(config).eval()
    new_fp = load_artifact(save_artifact(tmp_path / "ref", other, config)).fingerprint
    assert new_fp != old_fp
    real_replace = os.replace
    for crash_at in (0, 1):
        calls = []

        def flaky(a, b):
            calls.append(b)
            if len(calls) - 1 == crash_at:
                raise OSError(28, "No space left on device", str(b))
            return real_replace(a, b)

        monkeypatch.setattr(artifact_module.os, "replace", flaky)
        with pytest.raises(OSError):
            save_artifact(path, other, config)
        monkeypatch.setattr(artifact_module.os, "replace", real_replace)
        assert load_artifact(path).fingerprint in (old_fp, new_fp)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.new-")]
    assert load_artifact(path).fingerprint == old_fp  # neither crash got as far as the new one
    save_artifact(path, other, config)
    assert load_artifact(path).fingerprint == new_fp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "ref"]


def test_calibration_updates_keep_provenance_and_touch_only_the_metadata(tmp_path, net_and_config):
    net, config = net_and_config
    path = save_artifact(tmp_path / "m", net, config, extra={"hub": {"repo": "me/x"}})
    weights = path / "weights.safetensors"
    before = (weights.stat().st_ino, weights.stat().st_mtime_ns, weights.read_bytes())
    update_calibration(path, {"thresholds": {"eer": 0.5}})
    art = load_artifact(path)
    assert art.meta["hub"] == {"repo": "me/x"} and art.calibration == {"thresholds": {"eer": 0.5}}
    assert (weights.stat().st_ino, weights.stat().st_mtime_ns, weights.read_bytes()) == before


def test_metadata_that_is_not_a_mapping_is_one_clear_error(tmp_path, net_and_config):
    net, config = net_and_config
    path = save_artifact(tmp_path / "m", net, config)
    (path / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="not a JSON object"):
        load_artifact(path)


@pytest.mark.slow
def test_torchscript_metadata_is_read_without_loading_the_model(tmp_path, monkeypatch, net_and_config):
    from singerid.export.formats import export_model, read_metadata

    net, config = net_and_config
    model = save_artifact(tmp_path / "m", net, config)
    exported = export_model(model, tmp_path / "m.ts", "torchscript", verify=False).path

    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    meta = read_metadata(exported)
    assert meta["model_fingerprint"] == load_artifact(model).fingerprint and meta["embedding_dim"] == 32


def test_embed_resume_refuses_other_settings_and_keeps_finished_parts(tmp_path, model_dir):
    from singerid.audio import write_audio
    from singerid.extract import extract_to_npz, job_settings, load_embeddings
    from singerid.infer import load_model

    rng = np.random.default_rng(0)
    files = [write_audio(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(44100 * 2)).astype(np.float32)) for i in range(3)]
    out = tmp_path / "e.npz"
    encoder = load_model(model_dir)
    parts = tmp_path / "e.npz.parts"
    # An interrupted run: part 0 done, part 1 not.
    extract_to_npz(encoder, files[:1], tmp_path / "one.npz", shard_size=1, progress=False)
    parts.mkdir()
    check_settings(parts, job_settings(encoder, False, "raise", 1))
    os.replace(tmp_path / "one.npz", parts / "part-00000.npz")
    before = (parts / "part-00000.npz").stat().st_mtime_ns
    with pytest.raises(OutputError, match=r"other settings \(hop 4.0 -> 1.0, window 4.0 -> 2.0\)"):
        extract_to_npz(load_model(model_dir, window=2.0, hop=1.0), files, out, shard_size=1, progress=False)
    assert not out.exists() and (parts / "part-00000.npz").stat().st_mtime_ns == before
    extract_to_npz(encoder, files, out, shard_size=1, progress=False)
    ids, emb, meta = load_embeddings(out)
    assert ids == [str(f) for f in files] and not parts.exists() and not (tmp_path / "e.npz.lock").exists()
    np.testing.assert_allclose(emb, encoder.embed_files(files, progress=False), atol=1e-6)


def test_a_damaged_part_is_embedded_again(tmp_path, model_dir):
    from singerid.audio import write_audio
    from singerid.extract import extract_to_npz, job_settings, load_embeddings
    from singerid.infer import load_model

    rng = np.random.default_rng(1)
    files = [write_audio(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(44100 * 2)).astype(np.float32)) for i in range(2)]
    encoder = load_model(model_dir)
    parts = tmp_path / "e.npz.parts"
    check_settings(parts, job_settings(encoder, False, "raise", 1))
    (parts / "part-00000.npz").write_bytes(b"PK\x03\x04 truncated")
    extract_to_npz(encoder, files, tmp_path / "e.npz", shard_size=1, progress=False)
    ids, emb, _ = load_embeddings(tmp_path / "e.npz")
    np.testing.assert_allclose(emb, encoder.embed_files(files, progress=False), atol=1e-6)
