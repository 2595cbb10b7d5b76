"""Verification trial lists: build them from segments, write/read them, score them.

A trial pairs an enrolment segment with a test segment; it is a *target* trial when both
come from the same singer. Lists built here never contain self-pairs or the same pair twice
(``(a, b)`` and ``(b, a)`` are one pair), and by default never pair two crops of the same
source file as a target, which would let recording cues pass for singer identity.

Sampling rule: for every singer (in sorted order) up to ``n_target`` target pairs and up to
``n_nontarget`` non-target pairs (with that singer on the enrolment side) are drawn uniformly
without replacement from the pairs that satisfy the condition. When fewer unique pairs exist,
all of them are taken; the shortfall is attached to the result (:attr:`TrialList.shortfall`)
and announced with a :class:`TrialsShortfallWarning`.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import TrialsError
from ..fileio import atomic_path, read_text
from ..records import Segment
from ..vectors import l2_normalize

CONDITIONS = ("cross-recording", "cross-song", "cross-technique", "same-song", "any")
"""Which same-singer pairs count as target trials:

- ``cross-recording``: different source files (the default).
- ``cross-song``: different songs (hence different files).
- ``cross-technique``: different, known techniques and different files.
- ``same-song``: same song, different segment; the same file is allowed. An analysis
  control that shows how much recording and song cues help.
- ``any``: any two different segments, the same file included.
"""

MATCH_FIELDS = ("gender", "technique", "song")
FORMATS = ("kaldi", "voxceleb")
_KALDI_LABELS = {"target": True, "nontarget": False}


class TrialsShortfallWarning(UserWarning):
    """Some singers could not supply as many pairs as were asked for."""


@dataclass(frozen=True)
class Trial:
    """One verification trial: segment ids of both sides and whether they share a singer."""

    enroll: str
    test: str
    target: bool


class TrialList(list):
    """A list of :class:`Trial` with the per-singer shortfall of the sampling that made it.

    ``shortfall[singer] = (missing_target, missing_nontarget)`` lists only singers that got
    fewer pairs than requested.
    """

    def __init__(self, trials: Iterable[Trial] = (), shortfall: dict[str, tuple[int, int]] | None = None):
        super().__init__(trials)
        self.shortfall: dict[str, tuple[int, int]] = dict(shortfall or {})


def make_trials(
    segments: Sequence[Segment],
    *,
    n_target: int,
    n_nontarget: int,
    condition: str = "cross-recording",
    match: Sequence[str] = (),
    seed: int = 0,
) -> TrialList:
    """Draw a balanced trial list: per singer ``n_target`` target and ``n_nontarget`` non-target pairs.

    ``match`` names segment fields (``gender``, ``technique``, ``song``) on which the two sides
    of every non-target pair must agree; segments whose value is empty are left out of
    matched non-target pairs. The result does not depend on the order of ``segments``.
    """
    if condition not in CONDITIONS:
        raise TrialsError(f"unknown trial condition {condition!r}; choose one of {', '.join(CONDITIONS)}.")
    if n_target < 0 or n_nontarget < 0 or n_target + n_nontarget == 0:
        raise TrialsError(
            f"asked for {n_target} target and {n_nontarget} non-target trials per singer; "
            "both must be >= 0 and at least one > 0."
        )
    bad_fields = [f for f in match if f not in MATCH_FIELDS]
    if bad_fields:
        raise TrialsError(f"cannot match non-target pairs on {', '.join(bad_fields)}; use {', '.join(MATCH_FIELDS)}.")
    segs = sorted(segments, key=lambda s: s.id)
    _check_ids(segs)
    singers = sorted({s.singer for s in segs})
    if len(singers) < 2:
        raise TrialsError(
            f"trials need segments of at least 2 singers, got {len(singers)} ({', '.join(singers) or 'none'}); "
            "add recordings of more singers to the manifest."
        )
    if condition == "cross-technique" and not any(s.technique for s in segs):
        raise TrialsError(
            "condition cross-technique needs the technique column, but every segment's technique is empty; "
            "fill it in the manifest or use --condition cross-recording."
        )
    for f in match:
        if not any(getattr(s, f) for s in segs):
            raise TrialsError(
                f"cannot match non-target pairs on {f}: every segment's {f} is empty; "
                f"fill the {f} column in the manifest or drop --match {f}."
            )

    rng = np.random.default_rng(seed)
    ids = [s.id for s in segs]
    singer_code = _codes([s.singer for s in segs])
    by_singer = [np.flatnonzero(singer_code == code) for code in range(len(singers))]
    pools = [_TargetPool([segs[i] for i in idx], condition) for idx in by_singer]
    if n_target and all(p.size == 0 for p in pools):
        raise TrialsError(_impossible_message(condition, segs, singers))

    match_key = _match_keys(segs, match)
    trials: list[Trial] = []
    shortfall: dict[str, tuple[int, int]] = {}
    taken: set[tuple[int, int]] = set()
    # Non-target pairs already drawn per singer; they all lie in that singer's own pool.
    used = np.zeros(len(singers), dtype=np.int64)
    for code, name in enumerate(singers):
        idx = by_singer[code]
        flat = np.sort(rng.choice(pools[code].size, size=min(n_target, pools[code].size), replace=False))
        trials += [Trial(ids[idx[i]], ids[idx[j]], True) for i, j in pools[code].pairs(flat)]

        picked = _draw_nontarget(idx, singer_code != code, match_key, n_nontarget, taken, int(used[code]), rng)
        for a, b in picked:
            taken.add((min(a, b), max(a, b)))
            used[singer_code[b]] += 1
            trials.append(Trial(ids[a], ids[b], False))
        missing = (n_target - len(flat), n_nontarget - len(picked))
        if any(missing):
            shortfall[name] = missing

    if n_nontarget and all(t.target for t in trials):
        raise TrialsError(
            f"no non-target pairs match on {', '.join(match)}: no two singers share a value; "
            "drop --match or add singers that share it."
        )
    if shortfall:
        warnings.warn(TrialsShortfallWarning(shortfall_message(shortfall, n_target, n_nontarget)), stacklevel=2)
    return TrialList(trials, shortfall)


def shortfall_message(shortfall: dict[str, tuple[int, int]], n_target: int, n_nontarget: int) -> str:
    """One line that says which singers got fewer trials than asked for."""
    names = sorted(shortfall)
    shown = ", ".join(f"{n} (-{shortfall[n][0]} target, -{shortfall[n][1]} non-target)" for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (
        f"{len(names)} singer(s) have fewer unique pairs than the {n_target} target / {n_nontarget} "
        f"non-target asked for; all available pairs were used: {shown}{more}."
    )


def _check_ids(segs: list[Segment]) -> None:
    ids = [s.id for s in segs]
    dup = sorted({a for a, b in zip(ids, ids[1:]) if a == b})
    if dup:
        raise TrialsError(
            f"{len(dup)} segment id(s) occur more than once (e.g. {', '.join(dup[:3])}); "
            "remove duplicate rows from the segment manifest."
        )
    spaced = [i for i in ids if any(c.isspace() for c in i)]
    if spaced:
        raise TrialsError(
            f"{len(spaced)} segment id(s) contain whitespace (e.g. {spaced[0]!r}), which trial files cannot hold; "
            "rename those audio files without spaces."
        )


def _codes(values: Sequence[str]) -> np.ndarray:
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].ravel()


class _TargetPool:
    """The unordered pairs ``(i, j)``, ``i < j``, of one singer's segments that fit a condition.

    Pairs are numbered row by row without being stored, so singers with thousands of
    segments cost memory linear in their segment count.
    """

    _BLOCK_CELLS = 1 << 22

    def __init__(self, segs: list[Segment], condition: str):
        self.condition = condition
        self.path = _codes([s.path for s in segs])
        self.song = _codes([s.song for s in segs])
        self.tech = _codes([s.technique for s in segs])
        self.known_tech = np.array([bool(s.technique) for s in segs])
        n = len(segs)
        counts = np.zeros(n, dtype=np.int64)
        step = max(1, self._BLOCK_CELLS // max(n, 1))
        for start in range(0, n, step):
            counts[start : start + step] = self._mask(np.arange(start, min(n, start + step))).sum(axis=1)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self.size = int(self.starts[-1])

    def _mask(self, rows: np.ndarray) -> np.ndarray:
        """``mask[r, j]``: pair (rows[r], j) is eligible."""
        r = rows[:, None]
        j = np.arange(len(self.path))[None, :]
        keep = j > r
        other_file = self.path[r] != self.path[j]
        if self.condition == "cross-recording":
            keep &= other_file
        elif self.condition == "cross-song":
            keep &= (self.song[r] != self.song[j]) & other_file
        elif self.condition == "cross-technique":
            keep &= (self.tech[r] != self.tech[j]) & self.known_tech[r] & self.known_tech[j] & other_file
        elif self.condition == "same-song":
            keep &= self.song[r] == self.song[j]
        return keep

    def pairs(self, flat: np.ndarray) -> list[tuple[int, int]]:
        """Local index pairs for flat pair numbers."""
        out = []
        for f in flat:
            row = int(np.searchsorted(self.starts, f, side="right") - 1)
            cols = np.flatnonzero(self._mask(np.array([row]))[0])
            out.append((row, int(cols[f - self.starts[row]])))
        return out


def _impossible_message(condition: str, segs: list[Segment], singers: list[str]) -> str:
    count_of = {"cross-recording": ("path", "recording"), "cross-song": ("song", "song"),
                "cross-technique": ("technique", "technique")}
    if condition in count_of:
        attr, unit = count_of[condition]
        counts = {n: len({getattr(s, attr) for s in segs if s.singer == n and getattr(s, attr)}) for n in singers}
        listed = ", ".join(f"{n}: {counts[n]}" for n in singers[:5]) + (" ..." if len(singers) > 5 else "")
        return (
            f"condition {condition} is impossible: no singer has two {unit}s to pair ({unit}s per singer: "
            f"{listed}); use --condition same-song or any, or add more {unit}s per singer."
        )
    unit = "song" if condition == "same-song" else "singer"
    return (
        f"condition {condition} is impossible: every {unit} has a single segment; "
        "cut recordings into more segments or add recordings."
    )


def _match_keys(segs: list[Segment], match: Sequence[str]) -> np.ndarray:
    """Integer key per segment for non-target matching; -1 marks an unknown value."""
    if not match:
        return np.zeros(len(segs), dtype=np.int64)
    tuples = [tuple(getattr(s, f) for f in match) for s in segs]
    codes = _codes(["\x1f".join(t) for t in tuples]).astype(np.int64)
    codes[[not all(t) for t in tuples]] = -1
    return codes


def _draw_nontarget(
    mine: np.ndarray,
    other: np.ndarray,
    key: np.ndarray,
    k: int,
    taken: set[tuple[int, int]],
    n_taken_here: int,
    rng: np.random.Generator,
) -> list[tuple[int, int]]:
    """Up to ``k`` pairs (enroll in ``mine``, test in ``other`` with the same key), none already taken.

    The pool is numbered enrolment segment by enrolment segment, so a draw without
    replacement needs no list of all pairs. ``n_taken_here`` pairs of this pool were taken
    earlier (with this singer on the test side); drawing ``k`` plus that many and dropping the
    taken ones keeps the sample uniform over the pairs still free.
    """
    if k == 0:
        return []
    partners = {v: np.flatnonzero(other & (key == v)) for v in np.unique(key[mine]) if v >= 0}
    sizes = np.array([len(partners[key[a]]) if key[a] >= 0 else 0 for a in mine], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    pool = int(starts[-1])
    out: list[tuple[int, int]] = []
    for f in rng.choice(pool, size=min(pool, k + n_taken_here), replace=False):
        row = int(np.searchsorted(starts, f, side="right") - 1)
        a = int(mine[row])
        b = int(partners[key[a]][f - starts[row]])
        if (min(a, b), max(a, b)) not in taken:
            out.append((a, b))
            if len(out) == k:
                break
    return out


def write_trials(path: str | os.PathLike, trials: Iterable[Trial], format: str = "kaldi") -> Path:
    """Write a trial list atomically: Kaldi ``enroll test target|nontarget`` or VoxCeleb ``1|0 enroll test``."""
    if format not in FORMATS:
        raise TrialsError(f"unknown trial format {format!r}; choose one of {', '.join(FORMATS)}.")
    lines = []
    for t in trials:
        if format == "kaldi":
            lines.append(f"{t.enroll} {t.test} {'target' if t.target else 'nontarget'}")
        else:
            lines.append(f"{int(t.target)} {t.enroll} {t.test}")
    if not lines:
        raise TrialsError(f"{path}: refusing to write an empty trial list; generate trials first.")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def read_trials(path: str | os.PathLike) -> list[Trial]:
    """Read a trial list in Kaldi or VoxCeleb format (detected from its first line)."""
    p = Path(path)
    if not p.is_file():
        raise TrialsError(f"{p}: trial list not found; create one with `singerid trials`.")
    fmt = None
    trials = []
    for number, line in enumerate(read_text(p, "Re-create it with `singerid trials`.").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if fmt is None:
            fmt = "kaldi" if len(parts) >= 3 and parts[-1] in _KALDI_LABELS else "voxceleb"
        if len(parts) > 3:
            parts = _split_spaced(line.strip(), fmt) or parts
        trial = _parse(parts, fmt)
        if trial is None:
            expected = "'enroll test target|nontarget'" if fmt == "kaldi" else "'1|0 enroll test'"
            raise TrialsError(f"{p}:{number}: malformed trial line {line.strip()!r}; expected {expected} ({fmt}).")
        trials.append(trial)
    if not trials:
        raise TrialsError(f"{p}: trial list is empty; create one with `singerid trials`.")
    return trials


_SEGMENT_ID = r"(\S.*?@\d+\.\d+)"
_SPACED = {
    "kaldi": re.compile(rf"^{_SEGMENT_ID}\s+{_SEGMENT_ID}\s+(target|nontarget)$"),
    "voxceleb": re.compile(rf"^([01])\s+{_SEGMENT_ID}\s+{_SEGMENT_ID}$"),
}


def _split_spaced(line: str, fmt: str) -> list[str] | None:
    """A line whose segment ids (``PATH@OFFSET``) hold spaces, split at the ids' ends."""
    match = _SPACED[fmt].match(line)
    return list(match.groups()) if match else None


def _parse(parts: list[str], fmt: str) -> Trial | None:
    if len(parts) != 3:
        return None
    if fmt == "kaldi":
        return Trial(parts[0], parts[1], _KALDI_LABELS[parts[2]]) if parts[2] in _KALDI_LABELS else None
    return Trial(parts[1], parts[2], parts[0] == "1") if parts[0] in ("0", "1") else None


def check_trials_against(trials: Sequence[Trial], ids: Iterable[str]) -> None:
    """Raise :class:`TrialsError` if a trial refers to a segment id absent from ``ids``."""
    known = set(ids)
    missing = sorted({i for t in trials for i in (t.enroll, t.test) if i not in known})
    if missing:
        raise TrialsError(
            f"{len(missing)} segment id(s) in the trial list are not in the data (e.g. {', '.join(missing[:3])}); "
            "embed those segments or regenerate the trials from the same manifest."
        )


def trial_labels(trials: Sequence[Trial]) -> np.ndarray:
    """Boolean target labels, one per trial."""
    return np.array([t.target for t in trials], dtype=bool)


def score_trials(trials: Sequence[Trial], ids: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
    """Cosine score per trial; ``ids[i]`` names row ``i`` of ``embeddings`` (rows are re-normalised)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or len(emb) != len(ids):
        raise TrialsError(f"embeddings of shape {emb.shape} do not match {len(ids)} ids; pass one row per id.")
    row_of = {i: r for r, i in enumerate(ids)}
    if len(row_of) != len(ids):
        raise TrialsError("embedding ids are not unique; each segment must be embedded once.")
    check_trials_against(trials, row_of)
    emb = l2_normalize(emb, what="trial embeddings", error=TrialsError)
    a = np.fromiter((row_of[t.enroll] for t in trials), dtype=np.int64, count=len(trials))
    b = np.fromiter((row_of[t.test] for t in trials), dtype=np.int64, count=len(trials))
    # Chunked so memory stays bounded (1M trials of 1000-d would otherwise gather 8 GB).
    out = np.empty(len(trials), dtype=np.float32)
    step = 4096
    for start in range(0, len(trials), step):
        sl = slice(start, start + step)
        out[sl] = np.einsum("ij,ij->i", emb[a[sl]], emb[b[sl]])
    return out
