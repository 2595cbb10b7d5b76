from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from conftest import write_tone_corpus

from singerid.audio import SAMPLE_RATE
from singerid.data.signals import voiced_clip
from singerid.errors import DatasetError
from singerid.eval.invariance import (
    TRANSFORMS,
    Transform,
    TransformUnsupported,
    codec_roundtrip,
    invariance_markdown,
    invariance_probe,
    invariance_report,
    select_clips,
    transform_rng,
)
from singerid.eval.metrics import eer
from singerid.records import Segment

SR = SAMPLE_RATE
SINGERS = ["a", "a", "b", "b", "c", "c"]


@pytest.fixture(scope="module")
def clips():
    # Short voiced clips: singer = spectral slope, clip = pitch.
    slope = {"a": 0.6, "b": 1.2, "c": 1.8}
    return [voiced_clip(180.0 + 37 * i, 0.4, slope[s], seed=i) for i, s in enumerate(SINGERS)]


def spectrum_embed(clips):
    """An identity-like embedding: the clip's mean magnitude spectrum (1024-point frames)."""
    from scipy.signal import welch

    return np.stack([np.sqrt(welch(c, fs=SR, nperseg=1024)[1]) for c in clips]).astype(np.float32)


def test_exactly_invariant_embedding_scores_one_everywhere(clips):
    vectors = np.eye(3, 8)
    codes = np.array([ord(s) - ord("a") for s in SINGERS])

    def by_order(batch):
        # Ignores the audio: the i-th clip of every call is clip i (all clips are usable, checked below).
        assert len(batch) == len(SINGERS)
        return vectors[codes]

    rep = invariance_probe(by_order, clips, SINGERS, seed=0)
    assert rep["clean_eer"] == 0.0 and rep["n_singers"] == 3
    assert set(rep["transforms"]) == set(TRANSFORMS)
    for name, e in rep["transforms"].items():
        if "skipped" in e:
            assert name in ("mp3", "ogg"), name  # only a codec may be missing from libsndfile
            continue
        assert e["unusable_clips"] == [], name
        assert e["cosine_mean"] == pytest.approx(1.0) and e["cosine_std"] == pytest.approx(0.0, abs=1e-12)
        assert e["eer"] == 0.0 and e["eer_delta"] == 0.0
    json.dumps(rep)


def test_spectrum_similarity_falls_with_snr(clips):
    rep = invariance_probe(spectrum_embed, clips, SINGERS, transforms=["noise20db", "noise10db", "noise0db"], seed=1)
    cos = [rep["transforms"][n]["cosine_mean"] for n in ("noise20db", "noise10db", "noise0db")]
    assert 1.0 > cos[0] > cos[1] > cos[2]
    # EER of transformed trials, recomputed from scratch for one transform
    t = TRANSFORMS["noise0db"]
    base = spectrum_embed(clips)
    moved = spectrum_embed([t.apply(c, SR, transform_rng(1, t.name, i)) for i, c in enumerate(clips)])
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    moved /= np.linalg.norm(moved, axis=1, keepdims=True)
    scores, labels = [], []
    for i in range(len(clips)):
        for j in range(len(clips)):
            if i != j:
                scores.append(base[i] @ moved[j])
                labels.append(SINGERS[i] == SINGERS[j])
    assert rep["transforms"]["noise0db"]["eer"] == pytest.approx(eer(scores, labels)[0])
    assert rep["transforms"]["noise0db"]["eer_clean"] == pytest.approx(rep["clean_eer"])


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_transform_length_and_seeding(name, clips):
    t = TRANSFORMS[name]
    x = clips[0]
    try:
        y1 = t.apply(x, SR, transform_rng(0, name, 0))
    except TransformUnsupported as exc:
        assert name in ("mp3", "ogg")
        pytest.skip(str(exc))
    y2 = t.apply(x, SR, transform_rng(0, name, 0))
    assert y1 is not None and y1.dtype == np.float32 and np.all(np.isfinite(y1))
    np.testing.assert_array_equal(y1, y2)
    if t.keeps_length:
        assert len(y1) == len(x)
    else:
        factor = float(name.removeprefix("duration"))
        assert len(y1) / len(x) == pytest.approx(factor, rel=0.01)
    assert not np.allclose(y1[: len(x)], x[: len(y1)], atol=1e-4)  # it changed something
    if name.startswith(("noise", "reverb")):
        assert not np.array_equal(y1, t.apply(x, SR, transform_rng(1, name, 0)))


def _median_f0(x):
    import parselmouth
    from parselmouth.praat import call

    pitch = parselmouth.Sound(x.astype(np.float64), sampling_frequency=SR).to_pitch(pitch_floor=75, pitch_ceiling=600)
    return call(pitch, "Get quantile", 0.0, 0.0, 0.5, "Hertz")


@pytest.mark.parametrize("semitones", [2, -2, 4, -4])
def test_pitch_shift_moves_f0_by_the_ratio(semitones):
    x = voiced_clip(220.0, 0.6, 1.0, seed=4)
    y = TRANSFORMS[f"pitch{semitones:+d}"].apply(x, SR, transform_rng(0, "p", 0))
    assert _median_f0(y) / _median_f0(x) == pytest.approx(2 ** (semitones / 12), rel=0.03)


def test_formant_and_duration_keep_pitch():
    x = voiced_clip(240.0, 0.6, 1.0, seed=5)
    for name in ("formant1.1", "formant0.9", "duration0.9", "duration1.1"):
        y = TRANSFORMS[name].apply(x, SR, transform_rng(0, name, 0))
        assert _median_f0(y) / _median_f0(x) == pytest.approx(1.0, rel=0.03), name


def test_unsupported_and_unusable_are_reported(clips):
    missing = Transform("nocodec", "a codec this build lacks", codec_roundtrip("NOSUCHFORMAT", "PCM_16"))
    calls = itertools.count()

    def only_even(x, sr, rng):  # the probe transforms clips in order
        return x * 0.5 if next(calls) % 2 == 0 else None

    partial = Transform("partial", "only even clips", only_even)
    rep = invariance_probe(spectrum_embed, clips, SINGERS, transforms=[missing, partial])
    assert "NOSUCHFORMAT" in rep["transforms"]["nocodec"]["skipped"]
    e = rep["transforms"]["partial"]
    assert e["unusable_clips"] == [1, 3, 5] and e["n_clips"] == 3
    # spectra are scale-free after normalisation, so halving the level leaves them in place
    assert e["cosine_mean"] == pytest.approx(1.0)
    table = invariance_markdown({**rep, "system": "spec"})
    assert "| spec | nocodec | skipped |" in table and "3 clip(s) could not be transformed" in table


def test_probe_input_errors(clips):
    with pytest.raises(DatasetError, match="singer labels"):
        invariance_probe(spectrum_embed, clips, SINGERS[:-1])
    with pytest.raises(DatasetError, match="2 singers"):
        invariance_probe(spectrum_embed, clips[:3:2], ["a", "b"])
    with pytest.raises(DatasetError, match="unknown invariance transform"):
        invariance_probe(spectrum_embed, clips, SINGERS, transforms=["nope"])


class _SpectrumSystem:
    """A system in the baselines.systems sense: embeds segments by loading their audio."""

    name = "spectrum"

    def __init__(self):
        self.calls = 0

    def embed(self, segments):
        from singerid.audio import load_audio

        self.calls += 1
        return spectrum_embed([load_audio(s.path, offset=s.offset, duration=s.duration) for s in segments])


def _segments(paths):
    segs = []
    for p in paths:
        singer, song = p.parent.name, p.stem
        segs += [Segment(str(p), singer, song, offset=o, duration=0.5) for o in (0.0, 1.0)]
    return segs


def test_select_clips_is_seeded_and_spreads_songs(tmp_path):
    segs = _segments(write_tone_corpus(tmp_path, n_singers=3, n_songs=2, seconds=2.0))
    a = select_clips(segs, max_singers=2, clips_per_singer=2, seed=3)
    assert [s.id for s in a] == [s.id for s in select_clips(segs[::-1], max_singers=2, clips_per_singer=2, seed=3)]
    assert len(a) == 4 and len({s.singer for s in a}) == 2
    for singer in {s.singer for s in a}:
        assert len({s.song for s in a if s.singer == singer}) == 2
    with pytest.raises(DatasetError, match="2 singers"):
        select_clips([s for s in segs if s.singer == "singer0"])


def test_invariance_report_through_a_segment_system(tmp_path):
    segs = _segments(write_tone_corpus(tmp_path, n_singers=3, n_songs=2, seconds=2.0))
    system = _SpectrumSystem()
    rep = invariance_report(system, segs, transforms=["noise10db", "bandlimit16k"], clips_per_singer=3, seed=0)
    assert rep["system"] == "spectrum" and rep["n_clips"] == 9 and len(rep["segments"]) == 9
    assert system.calls == 3  # originals, then one call per transform
    # the files the system read back are the same audio the probe embeds directly
    picked = {s.id: s for s in segs}
    from singerid.audio import load_audio

    clips = [load_audio(picked[i].path, offset=picked[i].offset, duration=picked[i].duration) for i in rep["segments"]]
    direct = invariance_probe(spectrum_embed, clips, [picked[i].singer for i in rep["segments"]], ["noise10db", "bandlimit16k"], seed=0)
    for name in ("noise10db", "bandlimit16k"):
        assert rep["transforms"][name]["cosine_mean"] == pytest.approx(direct["transforms"][name]["cosine_mean"], abs=1e-6)
    table = invariance_markdown([rep, rep])
    assert table.count("| spectrum | noise10db |") == 2
    json.dumps(rep)
