from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from singerid.audio import (
    SAMPLE_RATE,
    audio_info,
    fit_length,
    load_audio,
    peak_normalize,
    write_audio,
)
from singerid.cli import main
from singerid.data.datasets import discover
from singerid.data.shards import (
    INDEX_NAME,
    read_index,
    read_shard,
    split_shards,
    validation_set,
    write_shards,
)
from singerid.data.signals import voiced_clip
from singerid.errors import ConfigError, DatasetError
from singerid.model.artifact import load_artifact
from singerid.records import Recording, write_recordings
from singerid.training import load_config, train
from singerid.training.augment import AugmentConfig, Augmenter
from singerid.training.shard_stream import (
    ShardPairStream,
    batches_before,
    stream_augmenter,
)

NO_AUG = AugmentConfig(pitch_p=0.0, noise_p=0.0, gain_p=0.0, mask_p=0.0)
SECONDS = [1.3, 0.6, 1.5, 1.2, 1.4, 1.1, 1.6, 1.25, 1.35, 1.45, 1.15, 1.55]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Recording]:
    """12 files of 4 singers, lengths 0.6-1.6 s, with technique and gender, read back from a manifest."""
    root = tmp_path_factory.mktemp("shard_corpus")
    rows = []
    for i, seconds in enumerate(SECONDS):
        singer = f"s{i % 4}"
        path = write_audio(root / singer / f"take{i}.wav", voiced_clip(140 + 15 * i, seconds, 0.6 + 0.4 * (i % 4), i))
        rows.append(Recording(str(path), singer, f"song{i // 4}", "belt" if i % 2 else "breathy", "f" if i % 4 < 2 else "m"))
    write_recordings(root / "manifest.csv", rows)
    return discover(root / "manifest.csv", "manifest")


@pytest.fixture(scope="module")
def shard_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(corpus, out, max_files_per_shard=2, seed=3, progress=False)
    return out


def _stream(shard_dir, **kwargs) -> ShardPairStream:
    kwargs.setdefault("buffer_size", 3)
    return ShardPairStream(read_index(shard_dir).shards, Augmenter(NO_AUG), SAMPLE_RATE, seed=kwargs.pop("seed", 0), **kwargs)


def _keys(stream: ShardPairStream, **where) -> list[str]:
    return [rec.key for _, rec in stream.records(**where)]


def test_shards_hold_each_file_once_with_its_audio_and_metadata(corpus, shard_dir):
    wds = pytest.importorskip("webdataset")  # an independent reader: the shards must be WebDataset-compatible

    index = read_index(shard_dir)
    assert [s.files for s in index.shards] == [2] * 6 and index.files == 12
    assert index.hours == pytest.approx(sum(audio_info(r.path).duration for r in corpus) / 3600, abs=1e-6)
    by_path = {r.path: r for r in corpus}
    seen = []
    urls = [str(s.path) for s in index.shards]
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        source = by_path[meta["path"]]
        assert (meta["singer"], meta["song"], meta["technique"], meta["gender"]) == (
            source.singer, source.song, source.technique, source.gender)
        audio, rate = sf.read(io.BytesIO(sample["flac"]), dtype="float32")
        assert rate == SAMPLE_RATE and sf.info(io.BytesIO(sample["flac"])).subtype == "PCM_16"
        expected = load_audio(source.path)
        assert meta["frames"] == len(audio) == len(expected)
        np.testing.assert_allclose(audio, expected, rtol=0, atol=1.01 / 32768)
        seen.append(meta["path"])
    assert sorted(seen) == sorted(by_path)


def test_shard_size_limit_and_seeded_shuffle(corpus, shard_dir, tmp_path):
    limit = 2 * int(3.0 * SAMPLE_RATE)  # about two files of 16-bit audio
    paths = write_shards(corpus, tmp_path / "small", max_shard_bytes=limit, progress=False)
    assert len(paths) > 4 and all(p.stat().st_size <= limit for p in paths)
    again = write_shards(corpus, tmp_path / "same", max_files_per_shard=2, seed=3, progress=False)
    assert [p.read_bytes() for p in again] == [s.path.read_bytes() for s in read_index(shard_dir).shards]
    other = write_shards(corpus, tmp_path / "other", max_files_per_shard=2, seed=4, progress=False)
    contents = [[rec.meta["path"] for rec in read_shard(p)] for p in other]
    assert contents != [[rec.meta["path"] for rec in read_shard(s.path)] for s in read_index(shard_dir).shards]
    assert sorted(sum(contents, [])) == sorted(r.path for r in corpus)


def test_every_file_once_per_epoch_across_two_ranks_and_two_workers(shard_dir):
    stream = _stream(shard_dir)
    all_keys = sorted(rec.key for s in read_index(shard_dir).shards for rec in read_shard(s.path))
    splits = {}
    for epoch in (0, 1):
        parts = [_keys(stream, rank=r, world=2, worker=w, num_workers=2, epoch=epoch) for r in (0, 1) for w in (0, 1)]
        assert sorted(sum(parts, [])) == all_keys
        splits[epoch] = parts
    assert splits[0] != splits[1]  # set_epoch re-deals and reshuffles
    assert _keys(stream, rank=1, world=2, worker=0, num_workers=2, epoch=1) == splits[1][2]
    assert _keys(_stream(shard_dir, seed=1), rank=0, world=1, worker=0, num_workers=1) != _keys(
        stream, rank=0, world=1, worker=0, num_workers=1)
    stream.set_epoch(1)
    assert [rec.key for _, rec in stream.records(rank=0, world=1, worker=0, num_workers=1)] == _keys(
        stream, rank=0, world=1, worker=0, num_workers=1, epoch=1)


def _crop_start(view: np.ndarray, source: np.ndarray) -> int:
    corr = scipy.signal.correlate(source, view, mode="valid", method="fft")
    return int(np.argmax(corr))


def test_pairs_are_crops_of_their_file_and_independent_of_the_split(corpus, shard_dir):
    stream = _stream(shard_dir)
    single = {rec.key: stream.pair(rec, 0) for _, rec in stream.records(rank=0, world=1, worker=0, num_workers=1)}
    for r in (0, 1):
        for e, rec in stream.records(rank=r, world=2, worker=1, num_workers=2):
            for a, b in zip(stream.pair(rec, e), single[rec.key]):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
    n = SAMPLE_RATE
    for key, (v1, v2) in single.items():
        record = next(rec for s in read_index(shard_dir).shards for rec in read_shard(s.path) if rec.key == key)
        source = load_audio(record.meta["path"])
        for view in (v1.numpy(), v2.numpy()):
            if len(source) < n:
                expected = peak_normalize(fit_length(source, n, pad="repeat"))
            else:
                start = _crop_start(view, source)
                expected = peak_normalize(source[start:start + n])
            np.testing.assert_allclose(view, expected, rtol=0, atol=1e-4)
    other = _stream(shard_dir, seed=5)
    rec = next(rec for _, rec in other.records(rank=0, world=1, worker=0, num_workers=1) if rec.frames > 1.4 * n)
    assert not torch.equal(other.pair(rec, 0)[0], stream.pair(rec, 0)[0])


def test_endless_stream_is_the_epochs_in_turn_and_skipping_resumes_exactly(shard_dir):
    finite = _stream(shard_dir)
    epochs = [_keys(finite, rank=0, world=2, worker=1, num_workers=1, epoch=e) for e in range(3)]
    endless = _stream(shard_dir, infinite=True)
    where = dict(rank=0, world=2, worker=1, num_workers=1)
    total = sum(map(len, epochs))
    got = [rec.key for _, (_, rec) in zip(range(total), endless.records(**where))]
    assert got == sum(epochs, [])
    skip = len(epochs[0]) + 2
    resumed = [rec.key for _, (_, rec) in zip(range(total - skip), endless.records(**where, skip=skip))]
    assert resumed == got[skip:]


def test_batches_before_counts_round_robin_batches():
    assert [batches_before(5, w, 2) for w in (0, 1)] == [3, 2]  # steps 0, 2, 4 and 1, 3
    assert [batches_before(0, w, 3) for w in range(3)] == [0, 0, 0]
    assert batches_before(7, 0, 1) == 7


@pytest.mark.slow
def test_dataloader_workers_resume_at_the_same_batches(shard_dir):
    def batches(first: int, count: int) -> list[torch.Tensor]:
        stream = ShardPairStream(read_index(shard_dir).shards, Augmenter(NO_AUG), 2048, infinite=True, rank=0, world=1)
        stream.resume_at(first, 2)
        loader = DataLoader(stream, batch_size=2, num_workers=2)
        return [b[0] for _, b in zip(range(count), loader)]

    straight = batches(0, 7)
    resumed = batches(3, 4)
    for a, b in zip(straight[3:], resumed):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(straight[0], straight[1])


def test_validation_crops_match_the_crops_read_from_the_source_files(shard_dir):
    from singerid.training.data import SegmentDataset

    index = read_index(shard_dir)
    train_shards, val_shards = split_shards(index, 0.34)
    assert train_shards == list(index.shards[:4]) and val_shards == list(index.shards[4:])
    segments, crops = validation_set(val_shards, 1.0, 2)
    assert {s.path for s in segments} == {rec.meta["path"] for s in val_shards for rec in read_shard(s.path)}
    from_files = SegmentDataset(segments, SAMPLE_RATE)
    assert len(crops) == len(from_files) == len(segments) >= 4
    for i in range(len(crops)):
        torch.testing.assert_close(crops[i], from_files[i], rtol=0, atol=1e-6)
    assert split_shards(index, 0.05)[1] == []


def test_resumed_writing_rewrites_only_the_missing_shard(corpus, tmp_path):
    out = tmp_path / "s"
    paths = write_shards(corpus, out, max_files_per_shard=3, progress=False)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in paths}
    missing = paths[2]
    missing.unlink()
    (out / INDEX_NAME).unlink()
    (out / ".shard-000001.tar.tmp123.tar").write_bytes(b"partial")  # left by a killed run
    assert write_shards(corpus, out, max_files_per_shard=3, progress=False) == paths
    for p in paths:
        ino, mtime, data = before[p.name]
        assert p.read_bytes() == data
        assert ((p.stat().st_ino, p.stat().st_mtime_ns) == (ino, mtime)) == (p != missing)
    assert not list(out.glob(".shard-*")) and read_index(out).files == len(corpus)
    with pytest.raises(DatasetError, match="another file list"):
        write_shards(corpus[:-1], out, max_files_per_shard=3, progress=False)


@pytest.mark.slow
def test_parallel_writing_gives_the_same_bytes(corpus, shard_dir, tmp_path):
    paths = write_shards(corpus, tmp_path / "p", max_files_per_shard=2, seed=3, workers=2, progress=False)
    assert [p.read_bytes() for p in paths] == [s.path.read_bytes() for s in read_index(shard_dir).shards]


def test_clear_errors(corpus, shard_dir, tmp_path, capsys):
    with pytest.raises(ConfigError, match="pitch_mode=praat"):
        stream_augmenter(AugmentConfig(pitch_mode="bank"))
    assert main(["train", "--config", "demo", "--data", str(shard_dir), "--out", str(tmp_path / "run")]) == 2
    assert "set augment.pitch_mode=praat" in capsys.readouterr().err
    assert stream_augmenter(AugmentConfig(pitch_mode="bank", pitch_p=0.0)).cfg.pitch_p == 0.0
    stream = _stream(shard_dir, infinite=True)
    with pytest.raises(ConfigError, match="6 training shard"):
        next(stream.records(rank=0, world=4, worker=0, num_workers=2))
    with pytest.raises(DatasetError, match="no shards.json"):
        read_index(tmp_path)
    broken = tmp_path / "broken"
    paths = write_shards(corpus[:4], broken, max_files_per_shard=2, progress=False)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[:700])  # cut inside the first member
    with pytest.raises(DatasetError, match="shard-000001.tar"):
        list(read_shard(paths[1]))
    paths[1].unlink()
    with pytest.raises(DatasetError, match="re-run the same `singerid shard`"):
        read_index(broken)


def test_cli_writes_shards(corpus, tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    write_recordings(manifest, corpus)
    assert main(["shard", str(manifest), "--out", str(tmp_path / "c"), "--max-files", "5"]) == 0
    assert "wrote 12 files" in capsys.readouterr().out
    assert [s.files for s in read_index(tmp_path / "c").shards] == [5, 5, 2]


TINY = [
    "model.backbone=cpu_small", "model.embedding_dim=32", "crop_seconds=1.0", "batch_size=4", "num_workers=0",
    "val_fraction=0.5", "optim.lr=3e-3", "augment.pitch_p=0.0", "augment.gain_p=0.0", "augment.mask_p=0.0",
    "augment.noise_p=0.5", "method=vicreg",
]


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "logs" / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_streaming_training_validates_and_resumes_exactly(corpus, tmp_path):
    # Two shards of 6 files: one trains, one validates (4 singers in 6 files: some singer has two songs).
    shards = tmp_path / "shards"
    write_shards(corpus, shards, max_files_per_shard=6, progress=False)

    def cfg(steps: int):
        return load_config("demo", [*TINY, f"max_steps={steps}", "checkpoint_every=2"])

    straight = train(cfg(3), str(shards), tmp_path / "a", progress=False)
    rows = _metrics(tmp_path / "a")
    assert straight.steps == 3 and len([r for r in rows if r.get("train/loss")]) == 3
    assert len([r for r in rows if r.get("val/eer")]) == 1  # after step 2
    assert train(cfg(2), shards, tmp_path / "b", progress=False).steps == 2
    resumed = train(cfg(3), shards, tmp_path / "b", resume=True, progress=False)
    a = load_artifact(straight.artifact).net.state_dict()
    b = load_artifact(resumed.artifact).net.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    with pytest.raises(DatasetError, match="no shards.json"):
        train(cfg(2), tmp_path, tmp_path / "c", progress=False)
