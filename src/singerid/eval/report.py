"""Write an evaluation to disk: ``results.json``, ``report.md`` and PNG plots.

Plots (matplotlib, Agg backend, nothing shown on screen):

- ``det.png``: DET curves of all systems on normal-deviate axes, EER points marked.
- ``scores.png``: target vs non-target score histograms, one panel per system.
- ``map.png``: a 2-D map of each system's embeddings coloured by singer (UMAP when the
  ``umap`` package is importable, else scikit-learn t-SNE; both seeded).
- ``loss.png``: the training loss per step, when a Lightning ``metrics.csv`` is given.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..fileio import atomic_path, write_text

MAP_MAX_POINTS = 2000
"""The 2-D map shows at most this many segments (the same seeded subset for every system)."""

MAP_METHODS = ("auto", "umap", "tsne", "pca")
_DET_TICKS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def write_report(
    out_dir: str | os.PathLike,
    results: dict,
    extras=None,
    *,
    training_log: str | os.PathLike | None = None,
    map_method: str = "auto",
    seed: int = 0,
) -> Path:
    """Write ``results.json``, ``report.md`` and the plots into ``out_dir``; return the report path.

    ``results`` is what :func:`singerid.eval.evaluate.evaluate` returned; ``extras`` its arrays
    (:class:`~singerid.eval.evaluate.EvaluationArrays`, by default ``results.arrays``). Without
    arrays only the JSON and the markdown (without plots) are written. ``training_log`` is a
    Lightning ``metrics.csv`` (or the folder holding it) for a loss curve; ``map_method`` is
    passed to :func:`map_2d`.
    """
    if map_method not in MAP_METHODS:
        raise ConfigError(f"unknown map method {map_method!r}; choose one of {', '.join(MAP_METHODS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = extras if extras is not None else getattr(results, "arrays", None)
    write_text(out / "results.json", json.dumps(results, indent=2, allow_nan=False) + "\n")
    plots: list[tuple[str, str]] = []
    if arrays is not None and arrays.systems:
        plots.append(("DET curves", plot_det(out / "det.png", arrays).name))
        plots.append(("Score distributions", plot_scores(out / "scores.png", arrays).name))
        path, method = plot_map(out / "map.png", arrays, method=map_method, seed=seed)
        plots.append((f"Embeddings by singer ({method})", path.name))
    if training_log is not None:
        plots.append(("Training loss", plot_loss(out / "loss.png", training_log).name))
    return write_text(out / "report.md", _markdown(results, plots))


# ---------------------------------------------------------------------------------------------
# Markdown


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def markdown_table(results: dict) -> str:
    """One row per system: EER [95 % CI], minDCF(0.01), MNR, top-1 identification ± std, recall@1."""
    header = "| System | EER % [95% CI] | minDCF (0.01) | MNR | Top-1 ID % (± std) | Recall@1 % |"
    lines = [header, "|" + "|".join(["---"] + ["---:"] * 5) + "|"]
    for name, r in results["systems"].items():
        ci = r["eer"].get("ci95")
        eer = _pct(r["eer"]["value"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")
        ident = r.get("identification")
        top1 = f"{_pct(ident['top1_mean'])} ± {_pct(ident['top1_std'])}" if ident else "–"
        dcf = r["min_dcf"]["0.01"]["value"]
        lines.append(
            f"| {name} | {eer} | {dcf:.3f} | {r['mnr']['value']:.3f} | {top1} | {_pct(r['retrieval']['recall@1'])} |"
        )
    return "\n".join(lines) + "\n"


def decisions_markdown(decisions: dict) -> str:
    """A table of the error rates at the calibrated EER threshold, for clips and whole recordings."""
    lines = [
        f"Decisions of {decisions['system']} at the calibrated EER threshold ({decisions['calibration']}; "
        f"{decisions['threshold_4s']:.4f} for two 4 s clips):",
        "",
        "| Trials | n | median length s | threshold range | EER % | false accept % | false reject % |",
        "|---|---:|---:|---|---:|---:|---:|",
    ]
    for kind, p in decisions["points"].items():
        lo, hi = p["threshold_range"]
        lines.append(
            f"| {kind} | {p['trials']} | {p['median_seconds']:.1f} | {lo:.4f}–{hi:.4f} | {100 * p['eer']:.1f} "
            f"| {100 * p['false_accept']:.1f} | {100 * p['false_reject']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _markdown(results: dict, plots: Sequence[tuple[str, str]]) -> str:
    p = results["protocol"]
    parts = [
        "# Singer identity evaluation\n",
        markdown_table(results),
        "EER: equal error rate of cosine scores on the trial list, with a 95 % interval from a "
        "bootstrap over singers. minDCF: minimum normalised detection cost at a target prior of 0.01. "
        f"MNR: mean normalised rank of a same-singer segment among {p['mnr_k']} other-singer segments "
        "(0 best, 0.5 chance). Top-1 ID: linear probe accuracy, mean ± std over "
        f"{p['probe_folds']} recording-disjoint folds. Recall@1: nearest neighbour is the same singer. "
        "Lower is better for EER, minDCF and MNR.\n",
        "## Protocol\n",
        "\n".join(f"- {k}: {v}" for k, v in p.items() if v is not None) + "\n",
        "## Further metrics\n",
        _further_table(results),
    ]
    if results.get("decisions"):
        parts += ["## Decisions at the calibrated threshold\n", decisions_markdown(results["decisions"])]
    if results.get("open_set"):
        from .open_set import open_set_markdown

        parts += ["## Open-set identification\n", open_set_markdown(results["open_set"])]
    if results.get("clustering"):
        from .cluster_run import clustering_markdown

        parts += ["## Clustering by singer\n", clustering_markdown(results["clustering"])]
    for title, name in plots:
        parts.append(f"## {title}\n\n![{title}]({name})\n")
    notes = list(results.get("warnings", [])) + [
        f"{name}: {w}" for name, r in results["systems"].items() for w in r.get("warnings", [])
    ]
    if notes:
        parts.append("## Warnings\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(parts)


def _further_table(results: dict) -> str:
    lines = [
        "| System | minDCF (0.05) | Recall@5 % | Recall@10 % | mAP | Top-5 ID % | Alignment | Uniformity | dim |",
        "|" + "|".join(["---"] + ["---:"] * 8) + "|",
    ]
    for name, r in results["systems"].items():
        ident = r.get("identification")
        g = r["geometry"]
        lines.append(
            f"| {name} | {r['min_dcf']['0.05']['value']:.3f} | {_pct(r['retrieval']['recall@5'])} | "
            f"{_pct(r['retrieval']['recall@10'])} | {r['retrieval']['map']:.3f} | "
            f"{_pct(ident['top5_mean']) if ident else '–'} | {g['alignment']:.3f} | {g['uniformity']:.3f} | "
            f"{r['dim']} |"
        )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def _densify(far: np.ndarray, frr: np.ndarray, steps: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Points along each segment where both rates change (tied scores), linear in probability.

    On normal-deviate axes such a segment is curved; drawing it through these points keeps
    the interpolated EER point on the curve.
    """
    xs, ys = [far[:1]], [frr[:1]]
    w = np.linspace(0.0, 1.0, steps + 1)[1:]
    for i in range(1, len(far)):
        if far[i] != far[i - 1] and frr[i] != frr[i - 1]:
            xs.append(far[i - 1] + w * (far[i] - far[i - 1]))
            ys.append(frr[i - 1] + w * (frr[i] - frr[i - 1]))
        else:
            xs.append(far[i : i + 1])
            ys.append(frr[i : i + 1])
    return np.concatenate(xs), np.concatenate(ys)


def plot_det(path: str | os.PathLike, arrays) -> Path:
    """DET curves (miss vs false-alarm rate on normal-deviate axes) of every system."""
    from scipy.stats import norm

    from .metrics import det_curve, eer

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    lo, hi = _DET_TICKS[0], _DET_TICKS[-1]
    for name, a in arrays.systems.items():
        far, frr = _densify(*det_curve(a.scores, a.labels)[:2])
        rate = eer(a.scores, a.labels)[0]
        x = norm.ppf(np.clip(far, lo / 2, 1 - lo / 2))
        y = norm.ppf(np.clip(frr, lo / 2, 1 - lo / 2))
        line = ax.plot(x, y, label=f"{name} (EER {100 * rate:.1f} %)")[0]
        e = norm.ppf(np.clip(rate, lo / 2, 1 - lo / 2))
        ax.plot([e], [e], "o", color=line.get_color())
    ticks = norm.ppf(_DET_TICKS)
    labels = [f"{100 * t:g}" for t in _DET_TICKS]
    edge = [norm.ppf(lo / 2), norm.ppf(hi)]
    ax.plot(edge, edge, ":", color="grey", linewidth=0.8)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_ticks(ticks, labels)
    ax.set_xlim(norm.ppf(lo / 2), norm.ppf(hi))
    ax.set_ylim(norm.ppf(lo / 2), norm.ppf(hi))
    ax.set_xlabel("False acceptance rate (%)")
    ax.set_ylabel("False rejection rate (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, Path(path))


def plot_scores(path: str | os.PathLike, arrays) -> Path:
    """Histograms of target and non-target trial scores, one panel per system."""
    from .metrics import eer

    plt = _pyplot()
    names = list(arrays.systems)
    fig, axes = plt.subplots(len(names), 1, figsize=(6, 2.2 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        a = arrays.systems[name]
        labels = np.asarray(a.labels, dtype=bool)
        bins = np.linspace(float(np.min(a.scores)), float(np.max(a.scores)) + 1e-9, 41)
        ax.hist(a.scores[~labels], bins=bins, density=True, alpha=0.6, label="non-target")
        ax.hist(a.scores[labels], bins=bins, density=True, alpha=0.6, label="target")
        ax.axvline(eer(a.scores, labels)[1], color="black", linestyle="--", linewidth=1, label="EER threshold")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("cosine score")
    fig.tight_layout()
    return _save(fig, Path(path))


def map_2d(embeddings: np.ndarray, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """Project embeddings to 2-D; returns ``(points, method name)``.

    ``"auto"`` is UMAP when the ``umap`` package is importable, else t-SNE (scikit-learn,
    cosine metric, PCA initialisation); ``"pca"`` is the fast linear projection. All seeded.
    """
    if method not in MAP_METHODS:
        raise ConfigError(f"unknown map method {method!r}; choose one of {', '.join(MAP_METHODS)}.")
    z = np.asarray(embeddings, dtype=np.float32)
    if len(z) < 3:
        raise ConfigError(f"a 2-D map needs at least 3 embeddings, got {len(z)}.")
    if method == "auto":
        method = "umap" if importlib.util.find_spec("umap") is not None else "tsne"
    if method == "umap":
        if importlib.util.find_spec("umap") is None:
            raise ConfigError("map method 'umap' needs the umap-learn package; install it or use 'tsne'.")
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(z) - 1), metric="cosine", random_state=seed)
        return np.asarray(reducer.fit_transform(z)), "UMAP"
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(z), "PCA"
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perplexity = float(min(30.0, (len(z) - 1) / 3))
    tsne = TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed)
    # One thread: the Barnes-Hut gradient's summation order, hence the map, then does not
    # depend on the machine's core count, and a busy machine is not oversubscribed.
    with threadpool_limits(1):
        return tsne.fit_transform(z), "t-SNE"


def plot_map(path: str | os.PathLike, arrays, method: str = "auto", seed: int = 0) -> tuple[Path, str]:
    """A 2-D map of each system's embeddings, coloured by singer; returns ``(path, method)``."""
    plt = _pyplot()
    singers = np.asarray(arrays.singers)
    rows = np.arange(len(singers))
    if len(rows) > MAP_MAX_POINTS:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), MAP_MAX_POINTS, replace=False))
    names, codes = np.unique(singers[rows], return_inverse=True)
    systems = list(arrays.systems)
    cols = min(3, len(systems))
    n_rows = -(-len(systems) // cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 4 * n_rows), squeeze=False)
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    used = ""
    for ax, name in zip(axes.ravel(), systems):
        points, used = map_2d(arrays.systems[name].embeddings[rows], method=method, seed=seed)
        ax.scatter(points[:, 0], points[:, 1], c=[cmap(c % cmap.N) for c in codes], s=8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(systems):]:
        ax.set_visible(False)
    if len(names) <= 20:
        handles = [
            plt.Line2D([], [], marker="o", linestyle="", color=cmap(i % cmap.N), label=str(n))
            for i, n in enumerate(names)
        ]
        fig.legend(handles=handles, loc="center right", fontsize=7, title="singer")
        fig.subplots_adjust(right=0.85)
    fig.suptitle(f"{used} of embeddings ({len(rows)} segments, {len(names)} singers)", fontsize=10)
    return _save(fig, Path(path)), used


def read_loss_log(path: str | os.PathLike, column: str = "train/loss") -> tuple[np.ndarray, np.ndarray]:
    """``(steps, losses)`` from a Lightning CSV log (``metrics.csv`` or a folder holding one)."""
    p = Path(path)
    if p.is_dir():
        candidates = [p / "metrics.csv", p / "logs" / "metrics.csv"]
        p = next((c for c in candidates if c.is_file()), candidates[0])
    if not p.is_file():
        raise ConfigError(
            f"{p}: training log not found; pass the metrics.csv that `singerid train` wrote (RUN/logs/metrics.csv)."
        )
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if column not in (reader.fieldnames or []) or "step" not in (reader.fieldnames or []):
            raise ConfigError(f"{p}: needs columns 'step' and {column!r} (has: {', '.join(reader.fieldnames or [])}).")
        rows = [(r["step"], r[column]) for r in reader if r[column] not in ("", None)]
    if not rows:
        raise ConfigError(f"{p}: no {column!r} values logged; train for at least one logged step.")
    try:
        steps = np.array([float(s) for s, _ in rows])
        losses = np.array([float(v) for _, v in rows])
    except ValueError as exc:
        raise ConfigError(f"{p}: step or {column!r} holds a non-number ({exc}).") from None
    return steps, losses


def plot_loss(path: str | os.PathLike, training_log: str | os.PathLike) -> Path:
    """Training loss against step from a Lightning CSV log."""
    steps, losses = read_loss_log(training_log)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train/loss")
    ax.grid(True, alpha=0.3)
    return _save(fig, Path(path))
