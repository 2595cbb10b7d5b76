"""Open-set identification as a user meets it: enrol a few singers from whole songs, then ask
who sings other songs, some by enrolled singers and some by singers never enrolled.

One draw (seeded): ``n_enrolled`` singers with at least ``enroll_songs + 1`` songs are enrolled
from ``enroll_songs`` songs each and queried with a further song each; ``n_others`` other
singers are queried with one song each and should come back ``"unknown"``. Decisions use the
model's own calibrated threshold (:meth:`singerid.infer.SingerEncoder.identify`), as
``singerid identify`` does.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ..errors import DatasetError
from ..profiles import UNKNOWN, Gallery
from ..records import Recording


def draw_open_set(
    recordings: Sequence[Recording], *, n_enrolled: int = 3, enroll_songs: int = 2, n_others: int = 5, seed: int = 0
) -> tuple[dict[str, list[Recording]], list[Recording]]:
    """The enrolment songs of each enrolled singer and the query songs (seeded; no song on both sides)."""
    songs: dict[str, list[Recording]] = defaultdict(list)
    for r in sorted(recordings, key=lambda r: (r.singer, r.song, r.path)):
        songs[r.singer].append(r)
    eligible = sorted(s for s, rs in songs.items() if len(rs) > enroll_songs)
    if len(eligible) < n_enrolled or len(songs) < n_enrolled + n_others:
        raise DatasetError(
            f"open-set identification needs {n_enrolled} singers with {enroll_songs + 1}+ songs and {n_others} more "
            f"singers; found {len(eligible)} and {len(songs) - min(len(eligible), n_enrolled)}."
        )
    rng = np.random.default_rng([seed, 15])
    enrolled = [eligible[i] for i in sorted(rng.choice(len(eligible), n_enrolled, replace=False))]
    rest = sorted(set(songs) - set(enrolled))
    others = [rest[i] for i in sorted(rng.choice(len(rest), n_others, replace=False))]
    enrolment, queries = {}, []
    for singer in enrolled:
        order = rng.permutation(len(songs[singer]))
        enrolment[singer] = [songs[singer][i] for i in order[:enroll_songs]]
        queries.append(songs[singer][order[enroll_songs]])
    queries += [songs[singer][int(rng.integers(len(songs[singer])))] for singer in others]
    return enrolment, queries


def open_set_identification(
    encoder, recordings: Sequence[Recording], *, n_enrolled: int = 3, enroll_songs: int = 2, n_others: int = 5, seed: int = 0
) -> dict:
    """Enrol, identify and count: enrolled singers named correctly, others answered ``"unknown"``."""
    enrolment, queries = draw_open_set(recordings, n_enrolled=n_enrolled, enroll_songs=enroll_songs, n_others=n_others, seed=seed)
    gallery = Gallery(encoder.artifact.fingerprint)
    for singer, recs in enrolment.items():
        gallery.add(encoder.enroll(singer, [r.path for r in recs]))
    rows = []
    for r in queries:
        answer = encoder.identify(r.path, gallery, top=1)
        rows.append({
            "query": r.path, "singer": r.singer, "enrolled": r.singer in enrolment, "answer": answer.singer,
            "best": answer.matches[0].name, "score": answer.matches[0].score, "threshold": answer.threshold,
        })  # fmt: skip
    named = sum(row["answer"] == row["singer"] for row in rows if row["enrolled"])
    rejected = sum(row["answer"] == UNKNOWN for row in rows if not row["enrolled"])
    return {
        "enrolled": {singer: [r.path for r in recs] for singer, recs in enrolment.items()},
        "queries": rows,
        "named_correctly": named,
        "n_enrolled": n_enrolled,
        "unknown_correctly": rejected,
        "n_others": n_others,
        "seed": seed,
    }


def open_set_markdown(result: dict) -> str:
    """The enrolled singers, every query with its answer, and the two counts."""
    lines = [
        f"Enrolled {result['n_enrolled']} singers from {len(next(iter(result['enrolled'].values())))} whole songs each "
        f"({', '.join(result['enrolled'])}); queried one further song of each and one song of "
        f"{result['n_others']} singers never enrolled, at the model's calibrated threshold.",
        "",
        "| Query song | Singer | Enrolled | Answer | Best match | Score | Threshold |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for row in result["queries"]:
        ok = row["answer"] == (row["singer"] if row["enrolled"] else UNKNOWN)
        lines.append(
            f"| {row['query'].rsplit('/', 1)[-1]} | {row['singer']} | {'yes' if row['enrolled'] else 'no'} "
            f"| {row['answer']}{'' if ok else ' (wrong)'} | {row['best']} | {row['score']:.4f} | {row['threshold']:.4f} |"
        )
    lines += [
        "",
        f"Enrolled singers named correctly: {result['named_correctly']} of {result['n_enrolled']}; "
        f"singers never enrolled answered unknown: {result['unknown_correctly']} of {result['n_others']}.",
    ]
    return "\n".join(lines) + "\n"
