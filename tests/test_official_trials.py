"""The authors' speaker_pairs.txt mapped onto fake VocalSet and M4Singer trees."""

from __future__ import annotations

import numpy as np
import pytest

from singerid.audio import SAMPLE_RATE, load_audio, write_audio
from singerid.cli import main
from singerid.errors import TrialsError
from singerid.eval.official_trials import map_official_trials
from singerid.eval.trials import Trial, read_trials
from singerid.records import read_segments

VOCALSET = {
    "female1/arpeggios/belt/f1_arpeggios_belt_c_a.wav": 10.0,
    "female1/long_tones/straight/f1_long_a.wav": 9.0,
    "male2/scales/slow/m2_scales_x.wav": 12.5,
}
VOCALSET_LINES = [
    "1,female1/f1_arpeggios_belt_c_a_0_4_4s.wav,female1/f1_long_a_4_8_4s.wav",
    "0,female1/f1_arpeggios_belt_c_a_4_8_4s.wav,male2/m2_scales_x_8_12_4s.wav",
    "1,female1/f1_long_a_0_4_4s.wav,female1/f1_long_a_0_4_4s.wav",  # self-pair
    "1,female1/f1_arpeggios_belt_c_a_0_4_4s.wav,female1/f1_long_a_4_8_4s.wav",  # duplicate of line 1
    "0,male2/m2_scales_x_8_12_4s.wav,female1/f1_arpeggios_belt_c_a_4_8_4s.wav",  # mirror of line 2
    "0,male2/m2_scales_x_0_4_4s.wav,female1/f1_long_a_0_4_4s.wav",
]
M4SINGER = {"Alto-1#美 错/0000.wav": 9.0, "Tenor-2#Song,One/0001.wav": 6.0}
M4SINGER_LINES = [
    "0,Alto-1/Alto-1#美错-0000_4_8_4s.wav,Tenor-2/Tenor-2#SongOne-0001_0_4_4s.wav",
    "1,Alto-1/Alto-1#美错-0000_0_4_4s.wav,Alto-1/Alto-1#美错-0000_4_8_4s.wav",
]


def _tree(root, files, seed=0):
    """Seeded noise files; returns {relative path: samples} to check the offsets against."""
    rng = np.random.default_rng(seed)
    audio = {}
    for rel, seconds in files.items():
        x = (0.3 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
        write_audio(root / rel, x)
        audio[rel] = load_audio(root / rel)
    return audio


def _pairs(tmp_path, lines):
    path = tmp_path / "speaker_pairs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _seg(root, rel, start):
    return f"{(root / rel).resolve()}@{float(start):.2f}"


def test_vocalset_pieces_map_to_offsets_of_the_originals(tmp_path):
    root = tmp_path / "FULL"
    audio = _tree(root, VOCALSET)
    result = map_official_trials(_pairs(tmp_path, VOCALSET_LINES), "vocalset", root)
    assert (result.n_lines, result.self_pairs, result.duplicates, result.mirrored) == (6, 1, 1, 1)
    assert len(result.trials) == 6 and not result.missing
    by_id = {s.id: s for s in result.segments}
    arp, long_, scales = VOCALSET
    assert result.trials[0] == Trial(_seg(root, arp, 0), _seg(root, long_, 4), True)
    seg = by_id[_seg(root, scales, 8)]
    assert (seg.singer, seg.song, seg.offset, seg.duration, seg.gender) == ("male2", "m2_scales_x", 8.0, 4.0, "male")
    for s in result.segments:
        rel = str(s.path)[len(str(root.resolve())) + 1 :]
        start = int(s.offset * SAMPLE_RATE)
        np.testing.assert_array_equal(load_audio(s.path, offset=s.offset, duration=s.duration), audio[rel][start : start + 4 * SAMPLE_RATE])


def test_clean_drops_exactly_the_self_duplicate_and_mirrored_lines(tmp_path):
    root = tmp_path / "FULL"
    _tree(root, VOCALSET)
    full = map_official_trials(_pairs(tmp_path, VOCALSET_LINES), "vocalset", root)
    cleaned = map_official_trials(_pairs(tmp_path, VOCALSET_LINES), "vocalset", root, clean=True)
    assert cleaned.trials == [full.trials[i] for i in (0, 1, 5)]
    assert (cleaned.self_pairs, cleaned.duplicates, cleaned.mirrored) == (1, 1, 1)


def test_m4singer_names_lose_commas_and_spaces(tmp_path):
    root = tmp_path / "m4singer"
    _tree(root, M4SINGER)
    result = map_official_trials(_pairs(tmp_path, M4SINGER_LINES), "m4singer", root)
    alto, tenor = M4SINGER
    assert result.trials == [
        Trial(_seg(root, alto, 4), _seg(root, tenor, 0), False),
        Trial(_seg(root, alto, 0), _seg(root, alto, 4), True),
    ]
    singers = {s.id: (s.singer, s.song) for s in result.segments}
    assert singers[_seg(root, tenor, 0)] == ("Tenor-2", "Tenor-2#Song,One")


def test_unresolved_names_are_listed_and_an_error_unless_skipped(tmp_path):
    root = tmp_path / "FULL"
    _tree(root, VOCALSET)
    lines = VOCALSET_LINES + ["1,male2/m2_nothing_0_4_4s.wav,male2/m2_scales_x_0_4_4s.wav"]
    with pytest.raises(TrialsError, match=r"1 piece names match no file .*male2/m2_nothing_0_4_4s.wav"):
        map_official_trials(_pairs(tmp_path, lines), "vocalset", root)
    result = map_official_trials(_pairs(tmp_path, lines), "vocalset", root, skip_missing=True)
    assert len(result.trials) == 6 and result.dropped_missing == 1
    assert "skipped 1 lines naming 1 pieces" in result.summary()
    with pytest.raises(TrialsError, match="multiple of n"):
        map_official_trials(_pairs(tmp_path, ["1,male2/m2_scales_x_2_6_4s.wav,male2/m2_scales_x_0_4_4s.wav"]), "vocalset", root)


def test_cli_writes_trials_and_segments_that_read_back(tmp_path, capsys):
    root = tmp_path / "m4 singer"
    _tree(root, M4SINGER)
    out, segs = tmp_path / "trials.txt", tmp_path / "segments.csv"
    args = ["trials", "--from-official", str(_pairs(tmp_path, M4SINGER_LINES)), "--layout", "m4singer", str(root)]
    assert main([*args, "--out", str(out), "--segments-out", str(segs)]) == 0
    assert "2 lines: 0 self-pairs, 0 duplicates, 0 mirrored pairs; wrote 2 trials (1 target" in capsys.readouterr().out
    segments = read_segments(segs)
    trials = read_trials(out)  # segment ids hold spaces here
    assert {t.enroll for t in trials} | {t.test for t in trials} == {s.id for s in segments}
    assert main([*args, "--out", str(out)]) == 2
    assert "--segments-out" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_scores_the_mapped_pairs(tmp_path):
    root = tmp_path / "FULL"
    _tree(root, VOCALSET)
    out, segs = tmp_path / "trials.txt", tmp_path / "segments.csv"
    assert main(["trials", "--from-official", str(_pairs(tmp_path, VOCALSET_LINES)), "--layout", "vocalset", str(root),
                 "--out", str(out), "--segments-out", str(segs), "--clean"]) == 0  # fmt: skip
    assert main(["evaluate", "--manifest", str(segs), "--trials", str(out), "--baseline", "mfcc", "--probe-folds", "0",
                 "--n-boot", "0", "--no-progress", "--out", str(tmp_path / "eval")]) == 0  # fmt: skip
    import json

    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    protocol = results["protocol"]
    assert (protocol["n_trials"], protocol["n_target"], protocol["n_segments"]) == (3, 1, 6)
    assert "mfcc" in results["systems"]
