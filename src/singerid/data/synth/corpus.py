"""Writing the corpus: songs rendered in parallel, ``metadata.csv`` and ``sections.csv``, resumable."""

from __future__ import annotations

import csv
import os
from dataclasses import astuple, fields
from pathlib import Path

from ...audio import SAMPLE_RATE, audio_info, write_audio
from ...errors import AudioError, ConfigError
from ...fileio import atomic_path
from ...workers import pool_map
from .params import (
    Section,
    SingerParams,
    SongParams,
    _compose,
    _draw_song,
    _song_rng,
    sample_singer,
)
from .render import SYNTH_VERSION, sing_song


def _params_row(prefix: str, params) -> dict:
    row = {}
    for f, value in zip(fields(params), astuple(params)):
        if f.name in ("index", "name"):
            continue
        if isinstance(value, tuple):
            value = " ".join(f"{v:.6g}" for v in value)
        elif isinstance(value, float):
            value = f"{value:.6g}"
        row[f.name if f.name.startswith(f"{prefix}_") else f"{prefix}_{f.name}"] = str(value)
    return row


def _song_row(singer: SingerParams, song: SongParams, seed: int) -> dict:
    row = {
        "path": f"{singer.name}/{song.name}.wav",
        "singer": singer.name,
        "song": song.name,
        "technique": "",
        "duration": f"{song.seconds:.6g}",
        "sample_rate": str(SAMPLE_RATE),
        "seed": str(seed),
        "synth_version": str(SYNTH_VERSION),
    }
    row.update(_params_row("singer", singer))
    row.update(_params_row("song", song))
    return row


def _render_job(job: tuple) -> tuple[dict, list[Section]]:
    out_dir, seed, i, j, seconds = job
    singer = sample_singer(seed, i)
    audio, sections, song = sing_song(singer, seed, j, seconds)
    row = _song_row(singer, song, seed)
    write_audio(Path(out_dir) / row["path"], audio, SAMPLE_RATE)
    return row, sections


def _is_current(out_dir: Path, row: dict, old_rows: dict) -> bool:
    old = old_rows.get(row["path"])
    if old != row:
        return False
    try:
        info = audio_info(out_dir / row["path"])
    except AudioError:
        return False
    return info.sample_rate == SAMPLE_RATE and info.frames == int(round(float(row["duration"]) * SAMPLE_RATE))


def _read_old_rows(path: Path) -> dict:
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh) if "path" in r}


def _write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def generate_corpus(
    out_dir: str | os.PathLike,
    n_singers: int,
    n_songs: int,
    song_seconds: float = 40.0,
    seed: int = 0,
    first_singer: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
    first_song: int = 0,
) -> Path:
    """Write ``out_dir/<singer>/<song>.wav`` (16-bit mono 44.1 kHz), ``metadata.csv`` and ``sections.csv``.

    Singers ``first_singer .. first_singer + n_singers - 1`` with songs ``first_song ..
    first_song + n_songs - 1`` each (a singer's song ``j`` is the same whatever else is
    generated); ``metadata.csv`` lists exactly these songs. Songs already on disk whose row in an
    existing ``metadata.csv`` matches are kept, so a re-run with the same arguments is
    cheap, and an interrupted run resumes where it stopped. ``n_jobs`` worker processes
    render songs in parallel (the files do not depend on it). Returns ``metadata.csv``'s path.
    """
    from tqdm import tqdm

    if n_singers < 1 or n_songs < 1:
        raise ConfigError(f"need at least one singer and one song, got {n_singers} singers x {n_songs} songs.")
    if first_singer < 0 or first_song < 0 or n_jobs < 1:
        raise ConfigError(
            f"first_singer and first_song must be >= 0 and n_jobs >= 1 (got {first_singer}, {first_song}, {n_jobs})."
        )
    if not song_seconds >= 1.0:
        raise ConfigError(f"song_seconds must be at least 1 s, got {song_seconds}.")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder. Choose another --out folder.")
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "metadata.csv"
    old_rows = _read_old_rows(meta_path)
    results: dict[tuple[int, int], tuple[dict, list[Section]]] = {}
    todo = []
    for i in range(first_singer, first_singer + n_singers):
        singer = sample_singer(seed, i)
        for j in range(first_song, first_song + n_songs):
            rng = _song_rng(singer, seed, j)
            song = _draw_song(rng, j, song_seconds)
            row = _song_row(singer, song, seed)
            if _is_current(out, row, old_rows):
                results[(i, j)] = (row, _compose(singer, song, rng)[1])
            else:
                todo.append((str(out), seed, i, j, float(song_seconds)))
    try:
        with tqdm(total=len(todo), desc=f"synth -> {out}", unit="song", disable=not progress) as bar:
            if n_jobs == 1 or len(todo) <= 1:
                for job in todo:
                    results[(job[2], job[3])] = _render_job(job)
                    bar.update()
            else:
                for job, result in zip(todo, pool_map(_render_job, todo, n_jobs)):
                    results[(job[2], job[3])] = result
                    bar.update()
    finally:
        # Also on interruption: the songs finished so far are listed, so a re-run skips them.
        if results:
            _write_manifests(out, results)
    return meta_path


def _write_manifests(out: Path, results: dict) -> None:
    rows, section_rows = [], []
    for key in sorted(results):
        row, sections = results[key]
        rows.append(row)
        section_rows += [
            {"path": row["path"], "start": f"{s.start:.4f}", "end": f"{s.end:.4f}", "technique": s.technique}
            for s in sections
        ]
    _write_csv(out / "sections.csv", ["path", "start", "end", "technique"], section_rows)
    _write_csv(out / "metadata.csv", list(rows[0]), rows)
