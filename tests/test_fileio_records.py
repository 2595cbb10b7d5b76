from __future__ import annotations

import pytest

from singerid.errors import DatasetError
from singerid.fileio import atomic_path
from singerid.records import (
    Recording,
    Segment,
    read_recordings,
    read_segments,
    write_recordings,
    write_segments,
)


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_recording_manifest_round_trip_with_relative_paths(tmp_path):
    recs = [
        Recording("a/x.wav", "alice", "s1", "belt", "f", {"key": "3"}),
        Recording("b/y.wav", "bob", "s2", extra={"key": "5"}),
    ]
    path = write_recordings(tmp_path / "m.csv", recs)
    back = read_recordings(path)
    assert [r.path for r in back] == [str(tmp_path / "a/x.wav"), str(tmp_path / "b/y.wav")]
    assert [(r.singer, r.song, r.technique, r.gender) for r in back] == [("alice", "s1", "belt", "f"), ("bob", "s2", "", "")]
    assert back[1].extra == {"key": "5"}


def test_segment_manifest_round_trip_and_ids(tmp_path):
    segs = [Segment("/d/a.wav", "alice", "s1", 4.0, 4.0, "belt"), Segment("/d/a.wav", "alice", "s1", 8.0, 4.0)]
    back = read_segments(write_segments(tmp_path / "s.csv", segs))
    assert back == segs
    assert [s.id for s in back] == ["/d/a.wav@4.00", "/d/a.wav@8.00"]


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_recordings(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\nx.wav,a\n")
    with pytest.raises(DatasetError, match="bad.csv.*path, singer"):
        read_recordings(bad)


def test_atomic_output_gets_the_usual_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
