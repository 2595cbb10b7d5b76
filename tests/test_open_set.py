"""Open-set identification check: the draw, the decisions, the report section."""

from __future__ import annotations

import pytest
from serve_helpers import VOICES, write_voice

from singerid.errors import DatasetError
from singerid.eval.open_set import draw_open_set, open_set_identification, open_set_markdown
from singerid.records import Recording


def _catalogue(n_singers: int, n_songs: int) -> list[Recording]:
    return [Recording(f"/d/s{i}/song{j}.wav", f"s{i}", f"song{j}") for i in range(n_singers) for j in range(n_songs)]


def test_the_draw_enrols_and_queries_disjoint_songs_and_is_seeded():
    recordings = _catalogue(10, 3)
    enrolment, queries = draw_open_set(recordings, seed=4)
    assert len(enrolment) == 3 and all(len(songs) == 2 for songs in enrolment.values())
    enrolled_paths = {r.path for songs in enrolment.values() for r in songs}
    assert not enrolled_paths & {q.path for q in queries}
    assert [q.singer for q in queries[:3]] == list(enrolment)
    others = [q.singer for q in queries[3:]]
    assert len(set(others)) == 5 and not set(others) & set(enrolment)
    assert draw_open_set(recordings, seed=4) == (enrolment, queries)
    assert draw_open_set(recordings, seed=5) != (enrolment, queries)


def test_the_draw_needs_enough_singers_with_enough_songs():
    with pytest.raises(DatasetError, match="needs 3 singers with 3\\+ songs"):
        draw_open_set(_catalogue(10, 2))
    with pytest.raises(DatasetError, match="and 5 more singers"):
        draw_open_set(_catalogue(7, 3))


def test_enrolled_voices_are_named_and_a_stranger_is_unknown(voice_model, tmp_path):
    from singerid.infer import load_model

    recordings = [
        Recording(str(write_voice(tmp_path / f"{name}{k}.wav", name, 100 * k + i)), name, f"song{k}")
        for i, name in enumerate(VOICES)
        for k in range(3)
    ]
    encoder = load_model(voice_model)
    result = open_set_identification(encoder, recordings, n_enrolled=2, n_others=1, seed=0)
    assert (result["named_correctly"], result["unknown_correctly"]) == (2, 1)
    stranger = result["queries"][-1]
    assert not stranger["enrolled"] and stranger["answer"] == "unknown"
    assert stranger["score"] < stranger["threshold"] == pytest.approx(encoder.threshold("eer"))
    text = open_set_markdown(result)
    assert "named correctly: 2 of 2" in text and "answered unknown: 1 of 1" in text
    assert text.count("| no | unknown |") == 1 and "(wrong)" not in text
