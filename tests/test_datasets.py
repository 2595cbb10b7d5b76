"""Discovery of every layout on small fake trees, segmenting arithmetic, and error reporting."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from singerid.audio import write_audio
from singerid.cli import main
from singerid.data.datasets import (
    discover,
    discover_folder,
    load_manifest,
    segment_recordings,
)
from singerid.data.signals import noisy_tone
from singerid.errors import ConfigError, DatasetError
from singerid.records import Recording, Segment, read_recordings, read_segments

SR = 8000  # small files keep the tests fast; segmenting works at each file's own rate


def voice(path: Path, seconds: float, silent: tuple[tuple[float, float], ...] = (), seed: int = 0) -> str:
    """Write a tone plus noise of ``seconds`` with digital silence over the ``silent`` spans."""
    audio = noisy_tone(220.0, seconds, seed, sample_rate=SR, n_harmonics=1, peak=0.2)
    for a, b in silent:
        audio[int(a * SR) : int(b * SR)] = 0.0
    write_audio(path, audio, SR)
    return str(path)


def tree(root: Path, files: dict[str, float]) -> Path:
    """Create ``root`` holding one short audio file per relative path (value: seconds)."""
    for i, (rel, seconds) in enumerate(files.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        voice(root / rel, seconds, seed=i)
    return root


def rows(recordings: list[Recording], base: Path) -> list[tuple]:
    return [
        (str(Path(r.path).relative_to(base)), r.singer, r.song, r.technique, r.gender, r.extra) for r in recordings
    ]


# ---------------------------------------------------------------- discovery


def test_folder_layout_singers_songs_order_and_left_out_files(tmp_path, caplog):
    root = tree(
        tmp_path / "data",
        {
            "bob/take.flac": 0.5,
            "alice/b.wav": 0.5,
            "alice/live/2019/a.WAV": 0.5,
            "alice/x/y/z/deep.wav": 0.5,
            "alice/x/y/z/w/deeper.wav": 0.5,
            "loose.wav": 0.5,
            "bob/.hidden.wav": 0.5,
        },
    )
    (root / "bob" / "notes.txt").write_text("not audio")
    with caplog.at_level(logging.WARNING, logger="singerid.data.datasets"):
        recordings = discover_folder(root)
    assert rows(recordings, root) == [
        ("alice/b.wav", "alice", "b", "", "", {}),
        ("alice/live/2019/a.WAV", "alice", "live/2019/a", "", "", {}),
        ("alice/x/y/z/deep.wav", "alice", "x/y/z/deep", "", "", {}),
        ("bob/take.flac", "bob", "take", "", "", {}),
    ]
    assert all(Path(r.path).is_absolute() for r in recordings)
    text = caplog.text
    assert "left out 1 audio file(s) that lie directly in the root" in text and "loose.wav" in text
    assert "more than 3 sub-folders" in text and "alice/x/y/z/w/deeper.wav" in text
    shallow = discover_folder(root, max_depth=0)
    assert [r.song for r in shallow] == ["b", "take"]


def test_folder_layout_errors_name_the_problem(tmp_path):
    (tmp_path / "empty" / "alice").mkdir(parents=True)
    (tmp_path / "empty" / "alice" / "lyrics.txt").write_text("la la")
    with pytest.raises(DatasetError, match=r"no audio files found \(searched for \.wav, \.flac"):
        discover_folder(tmp_path / "empty")
    root = tree(tmp_path / "data", {"alice/a.wav": 0.5})
    (root / "carol").mkdir()
    (root / "dave" / "docs").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"2 singer folder\(s\) hold no usable audio: carol, dave"):
        discover_folder(root)
    with pytest.raises(DatasetError, match="not a folder"):
        discover_folder(tmp_path / "missing")
    with pytest.raises(ConfigError, match="unknown layout"):
        discover(root, "timit")


def test_vocalset_layout(tmp_path, caplog):
    root = tree(
        tmp_path / "FULL",
        {
            "female1/arpeggios/belt/f1_arpeggios_belt_a.wav": 0.5,
            "female1/arpeggios/straight/f1_arpeggios_straight_a.wav": 0.5,
            "female1/long_tones/vocal_fry/f1_long_vocal_fry_i.wav": 0.5,
            "male10/excerpts/straight/m10_caro_straight.wav": 0.5,
            "male10/excerpts/stray.wav": 0.5,
        },
    )
    with caplog.at_level(logging.WARNING, logger="singerid.data.datasets"):
        recordings = discover(root, "vocalset")
    assert rows(recordings, root) == [
        ("female1/arpeggios/belt/f1_arpeggios_belt_a.wav", "female1", "arpeggios/a", "belt", "female", {"context": "arpeggios"}),
        ("female1/arpeggios/straight/f1_arpeggios_straight_a.wav", "female1", "arpeggios/a", "straight", "female", {"context": "arpeggios"}),
        ("female1/long_tones/vocal_fry/f1_long_vocal_fry_i.wav", "female1", "long_tones/i", "vocal_fry", "female", {"context": "long_tones"}),
        ("male10/excerpts/straight/m10_caro_straight.wav", "male10", "excerpts/caro", "straight", "male", {"context": "excerpts"}),
    ]
    assert "left out 1 audio file(s) that do not fit the vocalset layout" in caplog.text
    assert "male10/excerpts/stray.wav" in caplog.text
    # One level too high: nothing fits, and the error says where ROOT should point.
    with pytest.raises(DatasetError, match=r"no audio file fits the vocalset layout.*FULL/"):
        discover(tmp_path, "vocalset")


def test_nus48e_layout_sung_and_read_share_the_song(tmp_path):
    root = tree(tmp_path / "nus", {"ADIZ/sing/01.wav": 0.5, "ADIZ/read/01.wav": 0.5, "JLEE/sing/15.wav": 0.5})
    (root / "ADIZ" / "sing" / "01.txt").write_text("phonemes")
    assert rows(discover(root, "nus48e"), root) == [
        ("ADIZ/read/01.wav", "ADIZ", "01", "read", "", {}),
        ("ADIZ/sing/01.wav", "ADIZ", "01", "sing", "", {}),
        ("JLEE/sing/15.wav", "JLEE", "15", "sing", "", {}),
    ]


def test_m4singer_layout(tmp_path):
    root = tree(
        tmp_path / "m4",
        {"Alto-1#newboy/0000.wav": 0.5, "Alto-1#newboy/0001.wav": 0.5, "Tenor-2#blue sky/0000.wav": 0.5},
    )
    assert rows(discover(root, "m4singer"), root) == [
        ("Alto-1#newboy/0000.wav", "Alto-1", "newboy", "", "female", {"part": "0000"}),
        ("Alto-1#newboy/0001.wav", "Alto-1", "newboy", "", "female", {"part": "0001"}),
        ("Tenor-2#blue sky/0000.wav", "Tenor-2", "blue sky", "", "male", {"part": "0000"}),
    ]


def test_vctk_layout_mic_choice_and_genders(tmp_path):
    root = tree(
        tmp_path / "VCTK",
        {
            "wav48_silence_trimmed/p225/p225_001_mic1.flac": 0.5,
            "wav48_silence_trimmed/p225/p225_001_mic2.flac": 0.5,
            "wav48_silence_trimmed/p225/p225_002_mic2.flac": 0.5,
            "wav48_silence_trimmed/p226/p226_001_mic1.flac": 0.5,
        },
    )
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION\np225  23  F  English  Southern England\np226  22  M  English  Surrey\n")
    mic1 = [(r.singer, r.song, r.gender, r.extra["mic"]) for r in discover(root, "vctk")]
    assert mic1 == [("p225", "p225_001", "female", "mic1"), ("p225", "p225_002", "female", "mic2"), ("p226", "p226_001", "male", "mic1")]
    mic2 = [(r.song, r.extra["mic"]) for r in discover(root, "vctk", mic="mic2")]
    assert mic2 == [("p225_001", "mic2"), ("p225_002", "mic2"), ("p226_001", "mic1")]
    assert len(discover(root, "vctk", mic="both")) == 4
    inner = [(r.singer, r.song, r.gender) for r in discover(root / "wav48_silence_trimmed", "vctk")]
    assert inner == [(s, u, g) for s, u, g, _ in mic1]


def test_vctk_old_layout_and_ambiguous_root(tmp_path):
    root = tree(tmp_path / "VCTK", {"wav48/p225/p225_001.wav": 0.5})
    (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION\n225  23  F    English    Southern  England\n")
    assert [(r.singer, r.song, r.gender) for r in discover(root, "vctk")] == [("p225", "p225_001", "female")]
    (root / "wav48_silence_trimmed").mkdir()
    with pytest.raises(DatasetError, match="several VCTK audio folders"):
        discover(root, "vctk")


def test_manifest_layout_resolves_paths_and_rejects_bad_rows(tmp_path):
    root = tree(tmp_path / "data", {"alice/a.wav": 0.5, "bob/b.wav": 0.5})
    manifest = tmp_path / "data" / "m.csv"
    manifest.write_text("path,singer,song,technique,gender,take\nalice/a.wav,alice,s1,belt,female,3\nbob/b.wav,bob,,,,\n")
    assert rows(discover(manifest, "manifest"), root) == [
        ("alice/a.wav", "alice", "s1", "belt", "female", {"take": "3"}),
        ("bob/b.wav", "bob", "b", "", "", {"take": ""}),
    ]
    manifest.write_text("path,singer\nalice/a.wav,alice\nbob/b.wav,\n")
    with pytest.raises(DatasetError, match=r"row\(s\) 3 have no singer"):
        load_manifest(manifest)
    manifest.write_text("path,singer\nalice/a.wav,alice\n./alice/a.wav,alice\n")
    with pytest.raises(DatasetError, match="listed more than once"):
        load_manifest(manifest)


# ---------------------------------------------------------------- segmenting


def rec(path: str, singer: str = "alice") -> Recording:
    return Recording(path=path, singer=singer, song=Path(path).stem)


def spans(result) -> list[tuple[str, float, float]]:
    return [(Path(s.path).name, s.offset, s.duration) for s in result.segments]


def test_segment_counts_and_offsets(tmp_path):
    long = voice(tmp_path / "long.wav", 10.5)
    short = voice(tmp_path / "short.wav", 3.0)
    exact = voice(tmp_path / "exact.wav", 8.0)
    result = segment_recordings([rec(long), rec(short), rec(exact)], seconds=4.0, progress=False)
    # 10.5 s -> [0, 4) and [4, 8); the last 2.5 s are dropped. 8 s -> exactly two.
    assert spans(result) == [("long.wav", 0.0, 4.0), ("long.wav", 4.0, 4.0), ("exact.wav", 0.0, 4.0), ("exact.wav", 4.0, 4.0)]
    assert result.too_short == [short] and result.silent == 0 and result.unreadable == [] and result.files == 3
    assert result.segments[1] == Segment(long, "alice", "long", 4.0, 4.0)
    hopped = segment_recordings([rec(long)], seconds=4.0, hop=2.0, progress=False)
    # floor((10.5 - 4) / 2) + 1 = 4 starts.
    assert [s.offset for s in hopped.segments] == [0.0, 2.0, 4.0, 6.0]
    assert [s.offset for s in segment_recordings([rec(long)], seconds=2.5, progress=False).segments] == [0.0, 2.5, 5.0, 7.5]


def test_silent_middle_loses_exactly_that_segment(tmp_path):
    path = voice(tmp_path / "gap.wav", 12.0, silent=((4.0, 8.0),))
    result = segment_recordings([rec(path)], seconds=4.0, progress=False)
    assert [s.offset for s in result.segments] == [0.0, 8.0]
    assert result.silent == 1


def test_min_active_threshold_on_partly_silent_segments(tmp_path):
    # First segment silent over 1 of 4 s (active 0.75), second over 3 of 4 s (active 0.25).
    path = voice(tmp_path / "partly.wav", 8.0, silent=((0.0, 1.0), (4.0, 7.0)))
    assert [s.offset for s in segment_recordings([rec(path)], min_active=0.5, progress=False).segments] == [0.0]
    assert [s.offset for s in segment_recordings([rec(path)], min_active=0.75, progress=False).segments] == [0.0]
    assert segment_recordings([rec(path)], min_active=0.2, progress=False).silent == 0
    with pytest.raises(DatasetError, match=r"alice \(1 silent\)"):
        segment_recordings([rec(path)], min_active=0.8, progress=False)


def test_unreadable_files_raise_or_are_skipped_and_reported(tmp_path, caplog):
    good = voice(tmp_path / "good.wav", 4.5)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    recordings = [rec(good), rec(str(junk)), rec(str(empty), singer="bob"), rec(good.replace("good", "gone"))]
    with pytest.raises(DatasetError, match=r"3 unreadable audio file\(s\)") as info:
        segment_recordings(recordings, progress=False)
    assert all(name in str(info.value) for name in ("junk.wav", "empty.wav", "gone.wav", "--skip-unreadable"))
    # bob's only file is unreadable, so bob has no usable audio left.
    with pytest.raises(DatasetError, match=r"bob \(1 unreadable\)"):
        segment_recordings(recordings, on_error="skip", progress=False)
    with caplog.at_level(logging.WARNING, logger="singerid.data.datasets"):
        result = segment_recordings([r for r in recordings if r.singer == "alice"], on_error="skip", progress=False)
    assert spans(result) == [("good.wav", 0.0, 4.0)]
    assert sorted(Path(p).name for p, _ in result.unreadable) == ["gone.wav", "junk.wav"]
    assert "skipped 2 unreadable audio file(s)" in caplog.text and "junk.wav" in caplog.text


def test_truncated_file_fails_while_decoding(tmp_path):
    good = voice(tmp_path / "good.wav", 4.5)
    path = voice(tmp_path / "cut.flac", 9.0)
    whole = Path(path).read_bytes()
    Path(path).write_bytes(whole[: len(whole) * 2 // 3])  # the header still announces 9 s
    with pytest.raises(DatasetError, match=r"1 unreadable audio file\(s\).*cut.flac: decoding failed near 4.00 s"):
        segment_recordings([rec(good), rec(path)], progress=False)
    result = segment_recordings([rec(good), rec(path)], on_error="skip", progress=False)
    assert spans(result) == [("good.wav", 0.0, 4.0)]
    assert [Path(p).name for p, _ in result.unreadable] == ["cut.flac"]


def test_segment_options_are_validated(tmp_path):
    path = voice(tmp_path / "a.wav", 4.0)
    for kwargs in ({"seconds": 0}, {"hop": -1.0}, {"min_active": 1.5}, {"on_error": "ignore"}):
        with pytest.raises(ConfigError):
            segment_recordings([rec(path)], progress=False, **kwargs)
    with pytest.raises(DatasetError, match="no recordings"):
        segment_recordings([], progress=False)


# ---------------------------------------------------------------- command line


def test_cli_prepare_and_segment_write_readable_manifests(tmp_path, capsys):
    root = tree(tmp_path / "FULL", {"female1/arpeggios/belt/f1_arpeggios_belt_a.wav": 9.0, "male2/scales/breathy/m2_scales_breathy_e.wav": 4.2})
    manifest, segments = tmp_path / "out" / "recs.csv", tmp_path / "out" / "segs.csv"
    assert main(["prepare", "--layout", "vocalset", str(root), "--out", str(manifest)]) == 0
    assert read_recordings(manifest) == discover(root, "vocalset")
    assert main(["segment", str(manifest), "--seconds", "4", "--out", str(segments), "--no-progress"]) == 0
    read = read_segments(segments)
    assert [(s.singer, s.song, s.technique, s.gender, s.offset, s.duration) for s in read] == [
        ("female1", "arpeggios/a", "belt", "female", 0.0, 4.0),
        ("female1", "arpeggios/a", "belt", "female", 4.0, 4.0),
        ("male2", "scales/e", "breathy", "male", 0.0, 4.0),
    ]
    # A folder works directly too, with the same result.
    direct = tmp_path / "out" / "direct.csv"
    assert main(["segment", str(root), "--layout", "vocalset", "--out", str(direct), "--no-progress"]) == 0
    assert read_segments(direct) == read
    assert "3 segments of 2 singers from 2 files" in capsys.readouterr().out


def test_cli_segment_unreadable_needs_the_skip_flag(tmp_path, capsys):
    root = tree(tmp_path / "data", {"alice/a.wav": 4.5})
    (root / "alice" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    out = tmp_path / "segs.csv"
    assert main(["segment", str(root), "--out", str(out), "--no-progress"]) == 1
    assert "1 unreadable audio file(s)" in capsys.readouterr().err and not out.exists()
    assert main(["segment", str(root), "--out", str(out), "--no-progress", "--skip-unreadable"]) == 0
    assert "broken.wav" in capsys.readouterr().out
    assert [(Path(s.path).name, s.offset) for s in read_segments(out)] == [("a.wav", 0.0)]
    assert main(["segment", str(out), "--layout", "vctk", "--out", str(out)]) == 2
    assert main(["prepare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.csv")]) == 1
    assert "not a folder" in capsys.readouterr().err
