from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest

from singerid.cli import main
from singerid.errors import TrialsError
from singerid.eval.trials import (
    Trial,
    TrialsShortfallWarning,
    check_trials_against,
    make_trials,
    read_trials,
    score_trials,
    trial_labels,
    write_trials,
)
from singerid.records import Segment, write_segments


def corpus(n_singers=4, songs=3, files_per_song=1, segs_per_file=4, techniques=("belt", "breathy")) -> list[Segment]:
    """Singer ``sK``; song ``sK_songJ``; files ``sK_songJ_F.wav``; technique alternates by file."""
    out = []
    for k in range(n_singers):
        for j in range(songs):
            for f in range(files_per_song):
                path = f"s{k}_song{j}_{f}.wav"
                for o in range(segs_per_file):
                    out.append(
                        Segment(path, f"s{k}", f"s{k}_song{j}", 4.0 * o, 4.0, techniques[(j + f) % len(techniques)],
                                "f" if k % 2 else "m")
                    )
    return out


def by_id(segments):
    return {s.id: s for s in segments}


def test_no_self_duplicate_or_mirrored_pairs():
    segs = corpus(n_singers=5)
    trials = make_trials(segs, n_target=30, n_nontarget=30, seed=3)
    keys = [frozenset((t.enroll, t.test)) for t in trials]
    assert all(t.enroll != t.test for t in trials)
    assert len(set(keys)) == len(keys)
    labels = by_id(segs)
    for t in trials:
        assert t.target == (labels[t.enroll].singer == labels[t.test].singer)


def test_mirrored_pairs_excluded_when_pool_is_exhausted():
    # Two singers, 2 segments each: 4 non-target pairs exist in total. Singer s0 takes them
    # all as enrolment side, so s1 must get none (its pool holds only their mirrors).
    segs = [Segment(f"{s}_{r}.wav", s, f"{s}_{r}", 0.0, 4.0) for s in ("s0", "s1") for r in range(2)]
    with pytest.warns(TrialsShortfallWarning):
        trials = make_trials(segs, n_target=1, n_nontarget=10, seed=0)
    nontarget = [frozenset((t.enroll, t.test)) for t in trials if not t.target]
    assert len(nontarget) == len(set(nontarget)) == 4
    assert trials.shortfall == {"s0": (0, 6), "s1": (0, 10)}


def test_default_excludes_same_recording_targets_and_any_allows_them():
    segs = corpus(n_singers=3, songs=2, segs_per_file=5)
    labels = by_id(segs)
    with pytest.warns(TrialsShortfallWarning):
        trials = make_trials(segs, n_target=200, n_nontarget=5, seed=0, condition="cross-recording")
    targets = [t for t in trials if t.target]
    assert targets and all(labels[t.enroll].path != labels[t.test].path for t in targets)
    # Per singer: 2 files x 5 segments -> 25 cross-file pairs, all taken.
    assert Counter(labels[t.enroll].singer for t in targets) == {"s0": 25, "s1": 25, "s2": 25}
    with pytest.warns(TrialsShortfallWarning):
        anything = [t for t in make_trials(segs, n_target=200, n_nontarget=5, condition="any") if t.target]
    assert len(anything) == 3 * 45 and any(labels[t.enroll].path == labels[t.test].path for t in anything)


@pytest.mark.parametrize(
    "condition, holds",
    [
        ("cross-recording", lambda a, b: a.path != b.path),
        ("cross-song", lambda a, b: a.song != b.song and a.path != b.path),
        ("cross-technique", lambda a, b: a.technique != b.technique and a.path != b.path),
        ("same-song", lambda a, b: a.song == b.song),
        ("any", lambda a, b: a.id != b.id),
    ],
)
def test_condition_holds_for_every_target_pair(condition, holds):
    segs = corpus(songs=3, files_per_song=2, segs_per_file=3)
    labels = by_id(segs)
    trials = make_trials(segs, n_target=15, n_nontarget=15, condition=condition, seed=1)
    targets = [t for t in trials if t.target]
    assert len(targets) == 4 * 15
    assert all(holds(labels[t.enroll], labels[t.test]) for t in targets)


def test_cross_song_counts_songs_not_files():
    # Each singer sings one song spread over two files: cross-recording pairs exist,
    # cross-song pairs do not.
    segs = corpus(songs=1, files_per_song=2)
    assert sum(t.target for t in make_trials(segs, n_target=5, n_nontarget=5)) == 20
    with pytest.raises(TrialsError, match="no singer has two songs.*s0: 1"):
        make_trials(segs, n_target=5, n_nontarget=5, condition="cross-song")


def test_balanced_per_singer():
    segs = corpus(n_singers=6)
    labels = by_id(segs)
    trials = make_trials(segs, n_target=12, n_nontarget=9, seed=5)
    assert trials.shortfall == {}
    target = Counter(labels[t.enroll].singer for t in trials if t.target)
    nontarget = Counter(labels[t.enroll].singer for t in trials if not t.target)
    assert target == {f"s{k}": 12 for k in range(6)}
    assert nontarget == {f"s{k}": 9 for k in range(6)}


def test_shortfall_takes_all_and_reports():
    # s0 has two files of one segment: exactly one cross-recording target pair.
    # z has a single segment: no target pair at all.
    segs = corpus(n_singers=3) + [Segment(f"x_{r}.wav", "x", f"x_{r}", 0.0, 4.0) for r in range(2)]
    segs.append(Segment("z.wav", "z", "z", 0.0, 4.0))
    with pytest.warns(TrialsShortfallWarning, match="x \\(-4 target"):
        trials = make_trials(segs, n_target=5, n_nontarget=5)
    assert trials.shortfall == {"x": (4, 0), "z": (5, 0)}
    assert sum(t.target and t.enroll.startswith("x_") for t in trials) == 1


def test_matched_nontargets_share_metadata():
    segs = corpus(n_singers=6)
    labels = by_id(segs)
    for field in ("gender", "technique"):
        trials = make_trials(segs, n_target=5, n_nontarget=20, match=(field,), seed=2)
        nontarget = [t for t in trials if not t.target]
        assert len(nontarget) == 6 * 20
        assert all(getattr(labels[t.enroll], field) == getattr(labels[t.test], field) for t in nontarget)
    # Unmatched lists do cross genders, so the test above can fail.
    trials = make_trials(segs, n_target=5, n_nontarget=20, seed=2)
    assert any(labels[t.enroll].gender != labels[t.test].gender for t in trials if not t.target)


def test_match_impossible_for_lone_gender_is_shortfall():
    segs = corpus(n_singers=3)  # s1 is the only "f" singer
    with pytest.warns(TrialsShortfallWarning):
        trials = make_trials(segs, n_target=2, n_nontarget=4, match=("gender",))
    assert trials.shortfall == {"s1": (0, 4)}


def test_seeded_and_order_independent():
    segs = corpus()
    a = make_trials(segs, n_target=10, n_nontarget=10, seed=7)
    b = make_trials(list(reversed(segs)), n_target=10, n_nontarget=10, seed=7)
    c = make_trials(segs, n_target=10, n_nontarget=10, seed=8)
    assert list(a) == list(b)
    assert list(a) != list(c)


@pytest.mark.parametrize("fmt", ["kaldi", "voxceleb"])
def test_round_trip(tmp_path, fmt):
    trials = make_trials(corpus(), n_target=5, n_nontarget=5)
    path = write_trials(tmp_path / "t.txt", trials, format=fmt)
    first = path.read_text().splitlines()[0].split()
    assert (first[2] in ("target", "nontarget")) if fmt == "kaldi" else (first[0] in ("0", "1"))
    assert read_trials(path) == list(trials)


def test_read_errors_name_line(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("a b target\nc d maybe\n")
    with pytest.raises(TrialsError, match=r"t.txt:2: malformed"):
        read_trials(p)
    p.write_text("1 a b\n\n2 c d\n")
    with pytest.raises(TrialsError, match=r"t.txt:3: malformed"):
        read_trials(p)
    p.write_text("")
    with pytest.raises(TrialsError, match="empty"):
        read_trials(p)
    with pytest.raises(TrialsError, match="not found"):
        read_trials(tmp_path / "missing.txt")


def test_build_errors():
    segs = corpus()
    with pytest.raises(TrialsError, match="at least 2 singers"):
        make_trials([s for s in segs if s.singer == "s0"], n_target=1, n_nontarget=1)
    with pytest.raises(TrialsError, match="unknown trial condition"):
        make_trials(segs, n_target=1, n_nontarget=1, condition="cross-planet")
    with pytest.raises(TrialsError, match="technique is empty"):
        make_trials(corpus(techniques=("",)), n_target=1, n_nontarget=1, condition="cross-technique")
    with pytest.raises(TrialsError, match="no singer has two techniques"):
        make_trials(corpus(techniques=("belt",)), n_target=1, n_nontarget=1, condition="cross-technique")
    with pytest.raises(TrialsError, match="occur more than once"):
        make_trials(segs + segs[:1], n_target=1, n_nontarget=1)
    with pytest.raises(TrialsError, match="whitespace"):
        make_trials(segs + [Segment("my song.wav", "s0", "x", 0.0, 4.0)], n_target=1, n_nontarget=1)


def test_check_trials_against_lists_missing():
    trials = [Trial("a", "b", True), Trial("a", "zz", False), Trial("yy", "b", False)]
    check_trials_against(trials, ["a", "b", "yy", "zz"])
    with pytest.raises(TrialsError, match=r"2 segment id\(s\).*yy, zz"):
        check_trials_against(trials, ["a", "b"])


def test_score_trials_matches_loop():
    rng = np.random.default_rng(0)
    ids = [f"seg{i}" for i in range(6)]
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    trials = [Trial("seg0", "seg3", True), Trial("seg5", "seg1", False), Trial("seg2", "seg2", True)]
    scores = score_trials(trials, ids, emb)
    for t, s in zip(trials, scores):
        a, b = emb[ids.index(t.enroll)], emb[ids.index(t.test)]
        assert s == pytest.approx(float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)), abs=1e-6)
    assert trial_labels(trials).tolist() == [True, False, True]
    with pytest.raises(TrialsError, match="not in the data"):
        score_trials([Trial("seg0", "nope", True)], ids, emb)


def test_cli_writes_trials(tmp_path, capsys):
    manifest = write_segments(tmp_path / "segments.csv", corpus())
    out = tmp_path / "trials.txt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["trials", "--manifest", str(manifest), "--out", str(out), "--n-target", "4",
                     "--n-nontarget", "6", "--format", "voxceleb", "--condition", "cross-song"])
    assert code == 0
    trials = read_trials(out)
    assert len(trials) == 4 * 10 and sum(t.target for t in trials) == 16
    assert "40 trials" in capsys.readouterr().out
    assert main(["trials", "--manifest", str(tmp_path / "nope.csv"), "--out", str(out)]) == 1
