"""The bad-input matrix: every command that reads files x every kind of bad input.

Each bad input must give a non-zero exit, exactly one error line naming the file, no
traceback, no partial output, and nothing that existed before changed. Valid but unusual
formats (8-bit, 24-bit, float, stereo WAV; a CSV with a byte-order mark) must simply work.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from singerid.audio import SAMPLE_RATE, write_audio
from singerid.cli import main
from singerid.data.signals import voiced_clip

# -- bad audio ---------------------------------------------------------------------------------


def _good(path: Path, seconds: float = 2.0, seed: int = 0) -> Path:
    return write_audio(path, voiced_clip(200 + 10 * seed, seconds, 0.8, seed))


def _bad_audio(kind: str, folder: Path) -> Path:
    """A file (or folder) of the given bad kind, named so the error must name it."""
    path = folder / f"bad-{kind}.wav"
    if kind == "missing":
        return path
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        _good(path)
        path.write_bytes(path.read_bytes()[:60])
    elif kind == "corrupt-header":
        data = bytearray(_good(path).read_bytes())
        data[8:16] = b"JUNKJUNK"
        path.write_bytes(bytes(data))
    elif kind == "wrong-extension":
        path.write_text("this is a text file, not audio\n")
    elif kind in ("nan", "inf"):
        clip = voiced_clip(200, 2.0, 0.8, 0)
        clip[1000:1100] = np.nan if kind == "nan" else np.inf
        sf.write(path, clip, SAMPLE_RATE, subtype="FLOAT")
    elif kind == "silent":
        sf.write(path, np.zeros(2 * SAMPLE_RATE, np.float32), SAMPLE_RATE, subtype="PCM_16")
    elif kind == "too-short":
        _good(path, seconds=0.2)
    elif kind == "folder":
        path.mkdir()
    else:  # pragma: no cover - a typo in the matrix
        raise ValueError(kind)
    return path


BAD_AUDIO = ["missing", "empty", "truncated", "corrupt-header", "wrong-extension", "nan", "inf", "silent", "too-short", "folder"]


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _assert_one_error_line(code: int, err: str, command: str, names: str) -> None:
    assert code in (1, 2), code
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    assert errors[0].startswith(f"singerid {command}: error: ") and names in errors[0], errors[0]


@pytest.fixture(scope="module")
def profiles(model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles")
    out = folder / "p.npz"
    assert main(["enroll", "ann", str(_good(folder / "ann.wav", seed=1)), "--model", str(model_dir), "--profiles", str(out)]) == 0
    return out


def _audio_commands(model_dir: Path, profiles: Path, bad: Path, out: Path) -> dict[str, list[str]]:
    good = _good(out.parent / "good.wav", seed=2)
    return {
        "verify": ["verify", str(good), str(bad), "--model", str(model_dir), "--threshold", "0.5"],
        "embed": ["embed", str(bad), "--model", str(model_dir), "--out", str(out / "e.npz")],
        "enroll": ["enroll", "bob", str(bad), "--model", str(model_dir), "--profiles", str(out / "p.npz")],
        "identify": ["identify", str(bad), "--model", str(model_dir), "--profiles", str(profiles)],
    }


# embed takes folders, so a folder is not a bad input there (an empty one is: see below).
AUDIO_CASES = [(c, k) for c in ("verify", "embed", "enroll", "identify") for k in BAD_AUDIO if (c, k) != ("embed", "folder")]


@pytest.mark.parametrize("command,kind", AUDIO_CASES)
def test_bad_audio(command, kind, model_dir, profiles, tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("existing output")
    bad = _bad_audio(kind, inputs)
    before, profiles_before = _snapshot(out), profiles.read_bytes()
    code = main(_audio_commands(model_dir, profiles, bad, out)[command])
    _assert_one_error_line(code, capsys.readouterr().err, command, bad.name)
    assert _snapshot(out) == before and profiles.read_bytes() == profiles_before


def test_embed_an_empty_folder(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["embed", str(tmp_path / "empty"), "--model", str(model_dir), "--out", str(tmp_path / "e.npz")])
    _assert_one_error_line(code, capsys.readouterr().err, "embed", "empty")
    assert not (tmp_path / "e.npz").exists()


@pytest.mark.parametrize("subtype,channels", [("PCM_U8", 1), ("PCM_24", 1), ("FLOAT", 1), ("PCM_16", 2)])
def test_unusual_but_valid_wavs_work(subtype, channels, model_dir, tmp_path, capsys):
    clip = voiced_clip(220, 2.0, 0.8, 3)
    path = tmp_path / f"x-{subtype}.wav"
    sf.write(path, np.stack([clip] * channels, 1) if channels == 2 else clip, SAMPLE_RATE, subtype=subtype)
    reference = _good(tmp_path / "ref.wav", seed=3)
    assert main(["verify", str(reference), str(path), "--model", str(model_dir), "--threshold", "0.5", "--json"]) == 0
    import json

    score = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["score"]
    tolerance = 0.05 if subtype == "PCM_U8" else 1e-3  # 8-bit quantisation moves the embedding a little
    assert score == pytest.approx(1.0, abs=tolerance)


# -- bad model and profiles files ----------------------------------------------------------------


def _bad_model(kind: str, folder: Path, model_dir: Path) -> Path:
    path = folder / f"model-{kind}"
    if kind == "missing":
        return path
    if kind == "empty-folder":
        path.mkdir()
    elif kind == "truncated-weights":
        path.mkdir()
        (path / "config.json").write_bytes((model_dir / "config.json").read_bytes())
        (path / "weights.safetensors").write_bytes((model_dir / "weights.safetensors").read_bytes()[:1000])
    elif kind == "bad-json":
        path.mkdir()
        (path / "config.json").write_text("{not json")
        (path / "weights.safetensors").write_bytes((model_dir / "weights.safetensors").read_bytes())
    elif kind == "not-utf8-json":
        path.mkdir()
        (path / "config.json").write_bytes(b"\xff\xfe{}")
        (path / "weights.safetensors").write_bytes((model_dir / "weights.safetensors").read_bytes())
    elif kind == "text-file":
        path = folder / "model.pt"
        path.write_text("hello")
    return path


@pytest.mark.parametrize("kind", ["missing", "empty-folder", "truncated-weights", "bad-json", "not-utf8-json", "text-file"])
def test_bad_model(kind, model_dir, tmp_path, capsys):
    wav = _good(tmp_path / "a.wav")
    bad = _bad_model(kind, tmp_path, model_dir)
    code = main(["verify", str(wav), str(wav), "--model", str(bad), "--threshold", "0.5"])
    _assert_one_error_line(code, capsys.readouterr().err, "verify", bad.name)


@pytest.mark.parametrize("kind", ["missing", "text", "truncated", "folder", "empty"])
def test_bad_profiles(kind, model_dir, profiles, tmp_path, capsys):
    path = tmp_path / "profiles.npz"
    if kind == "text":
        path.write_text("name,clip\nann,a.wav\n")
    elif kind == "truncated":
        path.write_bytes(profiles.read_bytes()[:200])
    elif kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    code = main(["identify", str(_good(tmp_path / "q.wav")), "--model", str(model_dir), "--profiles", str(path)])
    err = capsys.readouterr().err
    _assert_one_error_line(code, err, "identify", path.name)
    if kind == "text":
        assert "not an .npz archive written by `singerid enroll`" in err


# -- bad manifests (text inputs) -----------------------------------------------------------------


def _manifest(folder: Path, n: int = 4) -> tuple[str, list[Path]]:
    files = [_good(folder / f"s{i % 2}-{i}.wav", seed=i) for i in range(n)]
    rows = [f"{f},{f.stem}-0,s{i % 2},song{i},0.0,2.0" for i, f in enumerate(files)]
    return "path,id,singer,song,offset,duration\n" + "\n".join(rows) + "\n", files


@pytest.mark.parametrize("kind", ["missing", "empty", "not-utf8", "folder", "no-columns", "malformed"])
def test_bad_manifest(kind, tmp_path, capsys):
    path = tmp_path / "segments.csv"
    text, _ = _manifest(tmp_path)
    if kind == "empty":
        path.write_text("")
    elif kind == "not-utf8":
        path.write_bytes(text.replace("song1", "sang\xe91").encode("latin-1"))
    elif kind == "folder":
        path.mkdir()
    elif kind == "no-columns":
        path.write_text("file,who\nx.wav,a\n")
    elif kind == "malformed":
        path.write_text(text.replace("song1", '"song1'))
    out = tmp_path / "trials.txt"
    code = main(["trials", "--manifest", str(path), "--out", str(out)])
    _assert_one_error_line(code, capsys.readouterr().err, "trials", path.name)
    assert not out.exists()


def test_a_manifest_with_a_byte_order_mark_works(tmp_path, capsys):
    text, _ = _manifest(tmp_path)
    path = tmp_path / "segments.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert main(["trials", "--manifest", str(path), "--out", str(tmp_path / "t.txt"), "--condition", "any"]) == 0
    assert len((tmp_path / "t.txt").read_text().splitlines()) > 0


# -- outputs that cannot be written ------------------------------------------------------------


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_an_output_that_cannot_be_written(failure, model_dir, tmp_path, capsys, monkeypatch):
    wav = _good(tmp_path / "a.wav")
    profiles = tmp_path / "p.npz"
    assert main(["enroll", "ann", str(wav), "--model", str(model_dir), "--profiles", str(profiles)]) == 0
    before = _snapshot(tmp_path)
    real_replace = os.replace

    def refuse(src, dst):
        if str(dst).endswith(".npz"):
            raise OSError(failure, os.strerror(failure), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    code = main(["enroll", "bob", str(wav), "--model", str(model_dir), "--profiles", str(profiles)])
    err = capsys.readouterr().err
    _assert_one_error_line(code, err, "enroll", "p.npz")
    assert {errno.ENOSPC: "no space left", errno.EROFS: "read-only", errno.EACCES: "permission denied"}[failure] in err
    assert _snapshot(tmp_path) == before


def test_out_naming_a_folder_where_a_file_is_expected(model_dir, tmp_path, capsys):
    wav = _good(tmp_path / "a.wav")
    (tmp_path / "out.npz").mkdir()
    code = main(["embed", str(wav), "--model", str(model_dir), "--out", str(tmp_path / "out.npz")])
    _assert_one_error_line(code, capsys.readouterr().err, "embed", "out.npz")
    assert list((tmp_path / "out.npz").iterdir()) == []


# -- folders with bad files ----------------------------------------------------------------------


def test_embed_a_folder_with_an_unreadable_file(model_dir, tmp_path, capsys):
    folder = tmp_path / "songs"
    folder.mkdir()
    good = [_good(folder / f"g{i}.wav", seed=i) for i in range(2)]
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    (folder / "phone.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A ")
    out = tmp_path / "e.npz"
    code = main(["embed", str(folder), "--model", str(model_dir), "--out", str(out)])
    _assert_one_error_line(code, capsys.readouterr().err, "embed", "broken.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["songs"]  # no output, no parts, no lock
    assert main(["embed", str(folder), "--model", str(model_dir), "--out", str(out), "--skip-unreadable"]) == 0
    printed = capsys.readouterr().out
    assert "skipped:" in printed and "broken.wav" in printed and "phone.m4a" in printed
    assert "embedded 2 files (2 skipped)" in printed
    from singerid.extract import load_embeddings

    ids, emb, meta = load_embeddings(out)
    assert ids == [str(g) for g in good] and emb.shape[0] == 2
    assert sorted(Path(p).name for p in meta["skipped"]) == ["broken.wav", "phone.m4a"]


# -- CLI usage ---------------------------------------------------------------------------------


def test_mistyped_commands_and_options_get_a_suggestion_and_the_commands_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["embd"])
    assert exit_info.value.code == 2 and "did you mean 'embed'?" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["trials", "--manifest", "m.csv", "--out", "t.txt", "--condtion", "any"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("usage: singerid trials") and "did you mean '--condition' for '--condtion'?" in err
    with pytest.raises(SystemExit):
        main(["embed", "a.wav", "--modle", "m", "--out", "e.npz"])
    err = capsys.readouterr().err
    assert err.startswith("usage: singerid embed") and "did you mean '--model' for '--modle'?" in err


def test_debug_shows_the_traceback(tmp_path):
    from singerid.errors import DatasetError

    with pytest.raises(DatasetError):
        main(["--debug", "trials", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "t.txt")])


def test_every_user_error_class_maps_to_one_line_and_its_exit_code():
    import csv
    import json
    import zipfile

    import yaml

    from singerid.cli._errors import describe
    from singerid.errors import AudioError, ConfigError

    worker = AudioError(
        "Caught AudioError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nsingerid.errors.AudioError: /data/a.wav: audio is silent.'
    )
    assert describe(worker) == (1, "/data/a.wav: audio is silent.")
    assert describe(ConfigError("bad --window"))[0] == 2
    assert describe(OSError(errno.ENOSPC, "No space left on device", "/out/e.npz")) == (
        1, "/out/e.npz: no space left on the device; free some space or write --out to another disk."
    )
    assert "read-only" in describe(OSError(errno.EROFS, "Read-only file system", "/ro/x"))[1]
    assert "is a folder" in describe(IsADirectoryError(errno.EISDIR, "Is a directory", "/d"))[1]
    assert describe(MemoryError())[1].startswith("out of memory")
    assert "not UTF-8" in describe(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"))[1]
    assert "invalid JSON" in describe(json.JSONDecodeError("Expecting value", "{x", 1))[1]
    assert ".npz archive" in describe(zipfile.BadZipFile("File is not a zip file"))[1]
    assert "malformed CSV" in describe(csv.Error("field larger than field limit"))[1]
    assert describe(yaml.YAMLError("mapping values are not allowed here"))[0] == 2
    assert describe(KeyError("a bug")) is None  # bugs keep their traceback
    assert all("\n" not in line for _, line in filter(None, [describe(worker), describe(MemoryError())]))
