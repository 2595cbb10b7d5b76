"""Singer similarity of generated audio (singing synthesis, voice conversion) to reference recordings.

The singing counterpart of the speaker-encoder cosine similarity used to evaluate TTS and VC.
Each generated file is scored by the cosine between its embedding and

* the embedding of the reference file it is paired with (``pairs``: a CSV with columns
  ``generated,reference``), or
* the mean embedding (re-normalised) of the references of its singer, when both sides are
  folder-per-singer trees (singers matched by folder name), or
* the mean embedding of all references otherwise (flat folders, file lists).

Outputs: a per-file CSV (cosine, and the same-singer probability where the model carries a
calibration), a JSON summary (mean, median, bootstrap 95 % interval of the mean, share at or above
the threshold), and :meth:`SimilarityResult.line` for a one-line report.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..audio import audio_info
from ..data.datasets import AUDIO_EXTENSIONS
from ..errors import ConfigError, DatasetError
from ..fileio import atomic_path, read_text, write_text
from ..vectors import l2_normalize

CSV_NAME = "similarity.csv"
SUMMARY_NAME = "similarity.json"
PAIR_COLUMNS = ("generated", "reference")

Inputs = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class SimilarityResult:
    """Per-file rows, the summary, and where both were written."""

    rows: list[dict]
    summary: dict
    csv_path: Path
    summary_path: Path
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line: mean, interval, median, count, and the share above the threshold when there is one."""
        s = self.summary
        ci = f" (95 % CI {s['ci95'][0]:.3f}-{s['ci95'][1]:.3f})" if s["ci95"] else ""
        text = f"singer similarity: mean {s['mean']:.3f}{ci}, median {s['median']:.3f} over {s['n']} generated files ({s['mode']})"
        if s["threshold"] is not None:
            lo, hi = s["threshold_range"]
            at = f"{lo:.3f}" if lo == hi else f"{lo:.3f}-{hi:.3f}"
            text += f"; {100 * s['share_above']:.0f} % at or above the threshold ({at}, {s['threshold_source']})"
        return f"{text} -> {self.csv_path.parent}"


def _is_audio(path: Path) -> bool:
    return path.suffix.lower().lstrip(".") in AUDIO_EXTENSIONS


def collect(inputs: Inputs, what: str) -> tuple[list[Path], list[str | None]]:
    """Files and their singers (folder name below the root; None when flat or listed).

    ``inputs`` is a folder (folder-per-singer or flat), a text file listing one path per line
    (relative to the list's folder), one audio file, or a sequence of audio files.
    """
    if not isinstance(inputs, (str, os.PathLike)):
        files = [Path(p) for p in inputs]
        if not files:
            raise DatasetError(f"{what}: no files given.")
        return files, [None] * len(files)
    root = Path(inputs)
    if root.is_dir():
        files = sorted(f for f in root.rglob("*") if f.is_file() and _is_audio(f))
        if not files:
            raise DatasetError(f"{root}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in this {what} folder.")
        depth = {len(f.relative_to(root).parts) for f in files}
        if depth == {1}:
            return files, [None] * len(files)
        if 1 in depth:
            raise DatasetError(
                f"{root}: {what} folder mixes files at the top with singer sub-folders; use one layout (folder per singer, or flat)."
            )
        return files, [f.relative_to(root).parts[0] for f in files]
    if not root.is_file():
        raise DatasetError(f"{root}: {what} not found; pass a folder, a file list or audio files.")
    if _is_audio(root):
        return [root], [None]
    lines = [ln.strip() for ln in root.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise DatasetError(f"{root}: {what} list is empty; list one audio path per line.")
    files = [p if p.is_absolute() else root.parent / p for p in map(Path, lines)]
    return files, [None] * len(files)


def _read_pairs(path: Path, generated: Inputs | None, reference: Inputs | None) -> list[tuple[Path, Path]]:
    """``(generated, reference)`` paths; relative ones against the ``generated``/``reference`` folders, else the CSV's folder."""
    if not path.is_file():
        raise DatasetError(f"{path}: pairs file not found; write a CSV with columns generated,reference.")
    text = read_text(path, "Write a CSV with columns generated,reference.")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in PAIR_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise DatasetError(f"{path}: lacks column(s) {', '.join(missing)}; write a CSV with columns generated,reference.")
    rows = list(reader)
    if not rows:
        raise DatasetError(f"{path}: no pairs listed.")

    def base(root: Inputs | None) -> Path:
        return Path(root) if isinstance(root, (str, os.PathLike)) and Path(root).is_dir() else path.parent

    gen_base, ref_base = base(generated), base(reference)
    return [
        tuple(p if p.is_absolute() else b / p for p, b in ((Path(r["generated"]), gen_base), (Path(r["reference"]), ref_base)))
        for r in rows
    ]


def _embed(encoder, files: list[Path], progress: bool) -> dict[Path, np.ndarray]:
    unique = list(dict.fromkeys(files))
    missing = [str(f) for f in unique if not f.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} audio file(s) not found (e.g. {', '.join(missing[:3])}); fix the paths.")
    emb = encoder.embed_files(unique, progress=progress)
    return dict(zip(unique, emb))


def _seconds(files) -> float:
    return float(sum(audio_info(f).duration for f in files))


def _centroid(vectors: list[np.ndarray]) -> np.ndarray:
    return l2_normalize(np.mean(vectors, axis=0))


def similarity(
    reference: Inputs | None,
    generated: Inputs | None,
    model,
    out: str | os.PathLike,
    *,
    pairs: str | os.PathLike | None = None,
    threshold: float | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> SimilarityResult:
    """Score generated files against references with ``model`` (a name, path or :class:`~singerid.infer.SingerEncoder`).

    ``threshold`` defaults to the model's calibrated EER threshold for each pair's lengths (a mean of
    references counts as their total length; none if the model has no calibration).
    Writes ``out/similarity.csv`` and ``out/similarity.json``.
    """
    from ..infer import SingerEncoder, load_model

    if n_boot < 0:
        raise ConfigError(f"n_boot={n_boot}: use 0 (no interval) or more.")
    encoder = model if isinstance(model, SingerEncoder) else load_model(model, device=device)
    if pairs is not None:
        listed = _read_pairs(Path(pairs), generated, reference)
        emb = _embed(encoder, [p for pair in listed for p in pair], progress)
        scored = [(g, str(r), "", float(np.dot(emb[g], emb[r]))) for g, r in listed]
        ref_seconds_of = {str(r): _seconds([r]) for _, r in listed}
        mode = "pairs"
    else:
        if reference is None or generated is None:
            raise ConfigError("pass reference and generated audio, or a pairs file.")
        ref_files, ref_singers = collect(reference, "reference")
        gen_files, gen_singers = collect(generated, "generated")
        emb = _embed(encoder, ref_files + gen_files, progress)
        if None not in ref_singers and None not in gen_singers:
            mode = "per-singer mean of references"
            absent = sorted(set(gen_singers) - set(ref_singers))
            if absent:
                raise DatasetError(
                    f"{generated}: singer folder(s) {', '.join(absent[:5])} have no references in {reference}; "
                    "add them, or pass --pairs."
                )
            targets = {s: _centroid([emb[f] for f, fs in zip(ref_files, ref_singers) if fs == s]) for s in set(gen_singers)}
            scored = [(g, f"mean of {s}", s, float(np.dot(emb[g], targets[s]))) for g, s in zip(gen_files, gen_singers)]
            ref_seconds_of = {f"mean of {s}": _seconds([f for f, fs in zip(ref_files, ref_singers) if fs == s]) for s in targets}
        else:
            mode = "mean of all references"
            target = _centroid([emb[f] for f in ref_files])
            scored = [(g, "mean of all", s or "", float(np.dot(emb[g], target))) for g, s in zip(gen_files, gen_singers)]
            ref_seconds_of = {"mean of all": _seconds(ref_files)}
    # Thresholds and probabilities follow the lengths compared: a mean of references counts as their total length.
    durations = [(_seconds([g]), ref_seconds_of[r]) for g, r, _, _ in scored]
    decided = [encoder.decision_threshold(threshold, d) for d in durations]
    thresholds = None if decided[0][0] is None else np.array([t for t, _ in decided])
    source = {"calibration": "calibrated EER threshold for these lengths"}.get(decided[0][1], decided[0][1])
    scores = np.array([s[3] for s in scored], dtype=np.float64)
    cal = encoder.calibration
    prob = cal.probability(scores, durations) if cal is not None else None
    rows = [
        {
            "generated": str(g), "reference": r, "singer": s, "cosine": c,
            **({"threshold": float(thresholds[i])} if thresholds is not None else {}),
            **({"p_same": float(prob[i])} if prob is not None else {}),
        }
        for i, (g, r, s, c) in enumerate(scored)
    ]  # fmt: skip
    summary = {
        "n": len(rows),
        "mode": mode,
        "mean": float(scores.mean()),
        "median": float(np.median(scores)),
        "ci95": bootstrap_ci(scores, n_boot, seed),
        "n_boot": n_boot,
        "seed": seed,
        "threshold": float(np.median(thresholds)) if thresholds is not None else None,
        "threshold_range": [float(thresholds.min()), float(thresholds.max())] if thresholds is not None else None,
        "threshold_source": source if thresholds is not None else None,
        "share_above": float(np.mean(scores >= thresholds)) if thresholds is not None else None,
        "mean_p_same": float(np.mean(prob)) if prob is not None else None,
        "model": str(encoder.artifact.path),
        "model_fingerprint": encoder.artifact.fingerprint,
    }
    out = Path(out)
    csv_path = out / CSV_NAME
    with atomic_path(csv_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary_path = write_text(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return SimilarityResult(rows=rows, summary=summary, csv_path=csv_path, summary_path=summary_path)


def bootstrap_ci(scores: np.ndarray, n_boot: int, seed: int) -> list[float] | None:
    """Percentile 95 % interval of the mean over ``n_boot`` seeded resamples of the files; None for ``n_boot=0``."""
    if n_boot == 0:
        return None
    rng = np.random.default_rng(seed)
    means = scores[rng.integers(0, len(scores), size=(n_boot, len(scores)))].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
