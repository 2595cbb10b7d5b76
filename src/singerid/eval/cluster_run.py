"""``singerid cluster``: group a folder or a catalogue by singer and report on it.

Writes ``clusters.csv`` (``path,cluster,confidence``), ``clustering.json``, ``report.md`` with the
cluster sizes and a 2-D map coloured by cluster, and, when the recordings carry singer labels
(folder-per-singer, or labelled catalogue entries), purity, inverse purity, ARI and NMI next to
the same numbers for MFCC statistics, with every way of choosing the cut compared.
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
from ..errors import ConfigError
from ..fileio import atomic_path, write_text
from ..records import Segment
from .clustering import (
    CUT_METHODS,
    Clustering,
    best_cut,
    cluster_embeddings,
    clustering_scores,
    linkage_tree,
)

BASELINE = "mfcc"
"""The system every labelled clustering is compared with."""


@dataclass
class ClusterRun:
    """What :func:`cluster_collection` found and wrote."""

    out: Path
    clustering: Clustering
    paths: list[str]
    results: dict
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        c = self.clustering
        thr = "" if c.threshold is None else f" at cosine distance {c.threshold:.4f}"
        lines = [f"{len(self.paths)} recordings in {c.n_clusters} clusters (cut by {c.method}{thr}); sizes {c.sizes()}"]
        for name, r in self.results.get("scores", {}).items():
            lines.append(
                f"{name}: ARI {r['ari']:.3f}, NMI {r['nmi']:.3f}, purity {r['purity']:.3f}, inverse purity "
                f"{r['inverse_purity']:.3f} ({r['n_clusters']} clusters for {r['n_classes']} singers); best ARI over all cuts "
                f"{r['best_cut']['ari']:.3f} at {r['best_cut']['n_clusters']} clusters"
            )
        lines.append(f"wrote {', '.join(str(p) for p in self.written)}")
        return "\n".join(lines)


def folder_segments(inputs: Sequence[str | os.PathLike]) -> tuple[list[Segment], bool]:
    """Whole-recording segments of the files and folders in ``inputs``; labelled (the first
    sub-folder's name, folder-per-singer) when every file sits inside a sub-folder of one folder given."""
    from ..extract import expand_inputs

    files = expand_inputs(inputs)
    root = Path(inputs[0]) if len(inputs) == 1 and Path(inputs[0]).is_dir() else None
    labelled = root is not None and all(len(f.relative_to(root).parts) >= 2 for f in files)
    segments = []
    for f in files:
        singer = f.relative_to(root).parts[0] if labelled else ""
        segments.append(Segment(str(f), singer, f.stem, 0.0, audio_info(f).duration))
    return segments, labelled


def catalog_segments(catalog) -> tuple[list[Segment], bool, np.ndarray]:
    """Segments of a catalogue's entries, whether all carry a singer label, and their stored vectors."""
    ids, vectors = catalog.vectors()
    # Entries added or removed by another process meanwhile are left out; both lists follow the same ids.
    by_id = {r.id: r for r in catalog.records()}
    keep = np.array([int(i) in by_id for i in ids], bool)
    records, vectors = [by_id[int(i)] for i in ids[keep]], vectors[keep]
    if not records:
        raise ConfigError(f"{catalog.folder}: the catalogue is empty; add recordings with `singerid catalog add`.")
    segments = [
        Segment(r.path, r.singer or "", r.song or Path(r.path).stem, r.offset, r.duration if r.duration is not None else audio_info(r.path).duration)
        for r in records
    ]
    return segments, all(r.singer for r in records), vectors


def embed_with(spec: str, segments: Sequence[Segment], device: str = "cpu", progress: bool = True):
    """Embeddings of ``segments`` by the system ``spec``, and the model's calibration when it has one."""
    from .baselines.systems import make_system

    calibration = None
    kind, _, arg = spec.partition(":")
    if kind == "model":
        from ..infer import load_model

        calibration = load_model(arg, device=device).calibration
    return make_system(spec, device=device).embed(segments, progress=progress), calibration


def cluster_collection(
    *,
    inputs: Sequence[str | os.PathLike] | None = None,
    catalog: str | os.PathLike | None = None,
    system: str | None = None,
    out: str | os.PathLike,
    n_clusters: int | None = None,
    method: str | None = None,
    compare: bool = True,
    device: str = "cpu",
    seed: int = 0,
    progress: bool = True,
) -> ClusterRun:
    """Cluster the recordings of ``inputs`` (files/folders) or of a ``catalog`` folder by singer.

    ``system`` is a spec as in ``singerid evaluate`` (``model:PATH``, ``mfcc``, ``resemblyzer``, ...);
    for a catalogue it defaults to the vectors stored there. The cut is fixed by ``n_clusters``, or
    automatic: the model's calibration when it has one, else ``method`` (see :data:`CUT_METHODS`).
    With singer labels and ``compare``, MFCC statistics are clustered the same way for comparison.
    """
    if (inputs is None) == (catalog is None):
        raise ConfigError("cluster either files/folders or a catalogue (--catalog), not both.")
    stored = None
    if catalog is not None:
        from ..catalog import Catalog

        with Catalog.open(catalog, readonly=True) as cat:
            segments, labelled, stored = catalog_segments(cat)
            fingerprint = cat.model_fingerprint
    else:
        if system is None:
            raise ConfigError("name the system to embed with: --model M or --system SPEC.")
        segments, labelled = folder_segments(inputs)
    calibration = None
    if system is None:
        x, name = np.asarray(stored), f"catalogue ({fingerprint[:12]})"
    else:
        x, calibration = embed_with(system, segments, device=device, progress=progress)
        name = system
    use_calibration = calibration if method is None else None
    seconds = float(np.median([s.duration for s in segments]))
    result = cluster_embeddings(x, n_clusters=n_clusters, calibration=use_calibration, method=method, seed=seed, seconds=seconds)
    results: dict = {
        "system": name,
        "n_recordings": len(segments),
        "method": result.method,
        "threshold": result.threshold,
        "median_seconds": seconds,
        "n_clusters": result.n_clusters,
        "sizes": result.sizes(),
    }
    if labelled and len(segments) >= 2:
        truth = [s.singer for s in segments]
        results["scores"] = {name: {**clustering_scores(truth, result.labels), "best_cut": best_cut(linkage_tree(x), truth)}}
        results["cuts"] = {name: _cuts(x, truth, calibration, seed, seconds)}
        if compare and system != BASELINE:
            base, _ = embed_with(BASELINE, segments, device=device, progress=progress)
            base_result = cluster_embeddings(base, n_clusters=n_clusters, method=method, seed=seed)
            results["scores"][BASELINE] = {**clustering_scores(truth, base_result.labels), "best_cut": best_cut(linkage_tree(base), truth)}
            results["cuts"][BASELINE] = _cuts(base, truth, None, seed)
    run = ClusterRun(Path(out), result, [s.path for s in segments], results)
    _write(run, x, segments, seed)
    return run


def _cuts(x: np.ndarray, truth: Sequence[str], calibration, seed: int, seconds: float | None = None) -> dict:
    """ARI of each automatic cut (the calibrated one, for items of ``seconds``, when there is a calibration)."""
    cuts = {how: clustering_scores(truth, cluster_embeddings(x, method=how, seed=seed).labels)["ari"] for how in CUT_METHODS}
    if calibration is not None:
        cuts["calibration"] = clustering_scores(truth, cluster_embeddings(x, calibration=calibration, seconds=seconds).labels)["ari"]
    return cuts


def _write(run: ClusterRun, x: np.ndarray, segments: Sequence[Segment], seed: int) -> None:
    out = run.out
    out.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "cluster", "confidence"])
    for seg, label, conf in zip(segments, run.clustering.labels, run.clustering.confidence):
        writer.writerow([seg.path, int(label), f"{conf:.4f}"])
    run.written = [write_text(out / "clusters.csv", buf.getvalue()), write_text(out / "clustering.json", json.dumps(run.results, indent=2) + "\n")]
    plot = _plot_map(out / "clusters.png", x, run.clustering.labels, seed) if len(x) >= 3 else None
    run.written.append(write_text(out / "report.md", _markdown(run, plot)))
    if plot is not None:
        run.written.append(plot)


def _plot_map(path: Path, x: np.ndarray, labels: np.ndarray, seed: int) -> Path:
    from .report import _pyplot, map_2d

    points, how = map_2d(x, method="pca" if len(x) < 10 else "auto", seed=seed)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    cmap = plt.get_cmap("tab20")
    ax.scatter(points[:, 0], points[:, 1], c=[cmap(int(k) % 20) for k in labels], s=14)
    ax.set_title(f"Recordings by cluster ({how})")
    ax.set_xticks([])
    ax.set_yticks([])
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def _markdown(run: ClusterRun, plot: Path | None) -> str:
    r, c = run.results, run.clustering
    thr = "–" if c.threshold is None else f"{c.threshold:.4f}"
    parts = [
        "# Clustering by singer\n",
        f"- system: {r['system']}\n- recordings: {r['n_recordings']}\n- cut: {c.method} (cosine distance {thr})\n"
        f"- clusters: {c.n_clusters}; sizes {', '.join(map(str, c.sizes()))}\n",
    ]
    if "scores" in r:
        parts += [
            "## Against the singer labels\n",
            "| System | clusters | ARI | NMI | purity | inverse purity | best ARI over all cuts (clusters) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in r["scores"].items():
            parts.append(
                f"| {name} | {s['n_clusters']} | {s['ari']:.3f} | {s['nmi']:.3f} | {s['purity']:.3f} | {s['inverse_purity']:.3f} "
                f"| {s['best_cut']['ari']:.3f} ({s['best_cut']['n_clusters']}) |"
            )
        n_classes = next(iter(r["scores"].values()))["n_classes"]
        parts.append(f"\n{n_classes} singers. ARI of each automatic cut:\n")
        methods = sorted({m for cuts in r["cuts"].values() for m in cuts})
        parts += ["| System | " + " | ".join(methods) + " |", "|---|" + "---:|" * len(methods)]
        for name, cuts in r["cuts"].items():
            parts.append(f"| {name} | " + " | ".join(f"{cuts[m]:.3f}" if m in cuts else "–" for m in methods) + " |")
        parts.append("")
    if plot is not None:
        parts.append(f"## Map\n\n![Recordings by cluster]({plot.name})\n")
    return "\n".join(parts)


def evaluation_clustering(arrays, calibration=None, seed: int = 0) -> dict:
    """Clustering numbers of every system of an evaluation (its segments, against their singers):
    the automatic cut (``calibration`` for the first system when given, else the silhouette), the
    index each automatic cut reaches, and the best index over all cuts."""
    truth = np.asarray(arrays.singers)
    out = {}
    for i, (name, system) in enumerate(arrays.systems.items()):
        x = system.embeddings
        cal = calibration if i == 0 else None
        result = cluster_embeddings(x, calibration=cal, seed=seed)
        out[name] = {
            **clustering_scores(truth, result.labels),
            "method": result.method,
            "best_cut": best_cut(linkage_tree(x), truth),
            "cuts": _cuts(x, truth, cal, seed),
        }
    return out


def clustering_markdown(clustering: dict) -> str:
    """The evaluation report's clustering table."""
    lines = [
        "| System | cut | clusters | ARI | NMI | purity | inverse purity | ARI silhouette / gap cut | best ARI (clusters) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in clustering.items():
        lines.append(
            f"| {name} | {s['method']} | {s['n_clusters']} | {s['ari']:.3f} | {s['nmi']:.3f} | {s['purity']:.3f} | "
            f"{s['inverse_purity']:.3f} | {s['cuts']['silhouette']:.3f} / {s['cuts']['gap']:.3f} | "
            f"{s['best_cut']['ari']:.3f} ({s['best_cut']['n_clusters']}) |"
        )
    n = next(iter(clustering.values()))["n_classes"] if clustering else 0
    lines.append(
        f"\nSegments clustered by singer without labels ({n} singers): average-linkage agglomerative clustering on "
        "cosine distance, cut at the calibrated threshold (first system, when calibrated) or at the best silhouette. "
        "ARI: adjusted Rand index (1 perfect, 0 chance); best ARI: over all cut heights."
    )
    return "\n".join(lines) + "\n"
