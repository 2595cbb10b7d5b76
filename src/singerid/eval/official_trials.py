"""The authors' trial lists (``speaker_pairs.txt``) mapped onto segments of the original files.

Their lines read ``label,<singer>/<piece>,<singer>/<piece>`` with ``label`` 1 (same singer) or 0,
and each piece ``<stem>_<start>_<end>_<n>s.wav`` is an ``n``-second crop that their preprocessing
cut from the start of an original file in steps of ``n`` (integer seconds), after flattening the
dataset into one folder per singer:

* VocalSet: the original is ``ROOT/<singer>/**/<stem>.wav``; the piece sits in ``<singer>``.
* M4Singer: the original ``ROOT/<Singer>#<Song>/<NNNN>.wav`` became the stem
  ``<Singer>#<Song>-<NNNN>`` with commas and spaces removed; the piece sits in ``<Singer>``.

:func:`map_official_trials` turns each piece into a :class:`~singerid.records.Segment` of the
original (path, offset ``start``, duration ``end - start``) and each line into a
:class:`~singerid.eval.trials.Trial`, and counts self-pairs, repeated lines and mirrored pairs
(``b,a`` after ``a,b``); ``clean`` drops them, keeping each pair's first line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError, TrialsError
from ..fileio import read_text
from ..records import Segment
from .trials import Trial

LAYOUTS = ("vocalset", "m4singer")
PIECE = re.compile(r"^(?P<stem>.+)_(?P<start>\d+)_(?P<end>\d+)_(?P<n>\d+)s\.wav$")
SHOWN = 5
"""How many unresolved names an error or report lists."""


@dataclass
class OfficialTrials:
    """The mapped trial list and what was found on the way."""

    trials: list[Trial]
    segments: list[Segment]
    n_lines: int
    self_pairs: int = 0
    duplicates: int = 0
    mirrored: int = 0
    missing: list[str] = field(default_factory=list)
    """Piece names that match no original file (with ``skip_missing``: their lines are dropped)."""
    dropped_missing: int = 0

    def summary(self) -> str:
        """One line: counts of lines, pairs kept, self-pairs, duplicates, mirrored pairs, unresolved names."""
        n_target = sum(t.target for t in self.trials)
        line = (
            f"{self.n_lines} lines: {self.self_pairs} self-pairs, {self.duplicates} duplicates, {self.mirrored} mirrored pairs; "
            f"wrote {len(self.trials)} trials ({n_target} target, {len(self.trials) - n_target} non-target) "
            f"over {len(self.segments)} segments"
        )
        if self.missing:
            line += (
                f"; skipped {self.dropped_missing} lines naming {len(self.missing)} pieces with no original file "
                f"(e.g. {', '.join(self.missing[:SHOWN])})"
            )
        return line


def _clean_name(name: str) -> str:
    return name.replace(",", "").replace(" ", "")


def index_originals(root: str | os.PathLike, layout: str) -> dict[tuple[str, str], list[tuple[Path, str]]]:
    """``(piece folder, stem) -> [(original file, song)]`` for every WAV file under ``root``, named as the authors' script names them.

    The song is the file's stem for VocalSet and its ``<Singer>#<Song>`` folder for M4Singer.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"layout {layout!r}: the authors' trial lists exist for {', '.join(LAYOUTS)}.")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder; pass the {layout} root that holds one folder per {'singer' if layout == 'vocalset' else 'Singer#Song'}.")
    index: dict[tuple[str, str], list[tuple[Path, str]]] = {}
    for top in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(top.rglob("*.wav")):
            if layout == "vocalset":
                key, song = (top.name, path.stem), path.stem
            else:
                middle = path.relative_to(top).parent.parts
                key, song = (top.name.split("#")[0], _clean_name("-".join((top.name, *middle, path.stem)))), top.name
            index.setdefault(key, []).append((path, song))
    if not index:
        raise DatasetError(f"{root}: no audio files found below it; pass the {layout} root folder.")
    return index


def _segment(piece: str, layout: str, index: dict, source: Path, number: int) -> Segment | None:
    folder, _, name = piece.strip().rpartition("/")
    match = PIECE.match(name)
    if not folder or match is None:
        raise TrialsError(
            f"{source}:{number}: {piece!r} is not a piece name '<singer>/<stem>_<start>_<end>_<n>s.wav' of the authors' lists."
        )
    start, end, n = (int(match[k]) for k in ("start", "end", "n"))
    if end - start != n or start % n:
        raise TrialsError(f"{source}:{number}: {piece!r}: a piece spans n seconds from a multiple of n; got {start}-{end} for {n} s.")
    originals = index.get((folder, match["stem"]))
    if not originals:
        return None
    if len(originals) > 1:
        raise TrialsError(
            f"{source}:{number}: {piece!r} matches {len(originals)} files ({', '.join(str(p) for p, _ in originals[:3])}); "
            "keep one of them under the dataset root."
        )
    path, song = originals[0]
    gender = next((g for g in ("female", "male") if layout == "vocalset" and folder.startswith(g)), "")
    return Segment(path=str(path.resolve()), singer=folder, song=song, offset=float(start), duration=float(n), gender=gender)


def map_official_trials(
    trials_file: str | os.PathLike, layout: str, root: str | os.PathLike, *, clean: bool = False, skip_missing: bool = False
) -> OfficialTrials:
    """Map the authors' ``speaker_pairs.txt`` onto segments of the original files under ``root``.

    Names that resolve to no file raise :class:`TrialsError` listing the first few, unless
    ``skip_missing`` (their lines are then dropped and counted).
    """
    source = Path(trials_file)
    if not source.is_file():
        raise TrialsError(f"{source}: trial list not found; pass the authors' speaker_pairs.txt.")
    index = index_originals(root, layout)
    segments: dict[str, Segment] = {}
    missing: dict[str, None] = {}
    seen: set[tuple[str, str]] = set()
    result = OfficialTrials(trials=[], segments=[], n_lines=0)
    for number, line in enumerate(read_text(source, "Download the official list again.").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 3 or parts[0].strip() not in ("0", "1"):
            raise TrialsError(f"{source}:{number}: expected 'label,<singer>/<piece>,<singer>/<piece>' with label 0 or 1, got {line.strip()!r}.")
        result.n_lines += 1
        a, b = parts[1].strip(), parts[2].strip()
        kind = "self_pairs" if a == b else "duplicates" if (a, b) in seen else "mirrored" if (b, a) in seen else ""
        seen.add((a, b))
        if kind:
            setattr(result, kind, getattr(result, kind) + 1)
            if clean:
                continue
        pair = [_segment(p, layout, index, source, number) for p in (a, b)]
        if None in pair:
            for piece, seg in zip((a, b), pair):
                if seg is None:
                    missing.setdefault(piece)
            result.dropped_missing += 1
            continue
        for seg in pair:
            segments.setdefault(seg.id, seg)
        result.trials.append(Trial(pair[0].id, pair[1].id, parts[0].strip() == "1"))
    result.missing = list(missing)
    if result.missing and not skip_missing:
        raise TrialsError(
            f"{source}: {len(result.missing)} piece names match no file under {root} as {layout} "
            f"(e.g. {', '.join(result.missing[:SHOWN])}); check the root and --layout, or pass --skip-missing."
        )
    if not result.trials:
        raise TrialsError(f"{source}: no trial left to write; check the root and --layout.")
    result.segments = list(segments.values())
    return result
