"""The main job: learn singer identity from scratch on the built-in corpus, and prove it.

1. Generate the synthetic corpus (seeded): training singers disjoint from evaluation singers,
   plus development songs of the training singers that training never sees.
2. Train a self-supervised encoder (positives: two crops of the same song; no singer labels).
3. Calibrate its decisions on the development songs (clips and whole songs), stored in the model.
4. Evaluate on the held-out singers with cross-song trials against random weights, MFCC and F0,
   with the false-accept / false-reject rates of the calibrated threshold for clips and songs,
   clustering by singer, and open-set identification (3 singers enrolled from whole songs,
   further songs of theirs and of 5 never-enrolled singers identified at the stored threshold).
5. Write ``runs/demo/<timestamp>/`` (artefact, results.json, report.md, plots) and print the table.

An interrupted demo resumes: re-running with the same settings continues the unfinished run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import WINDOW_SECONDS
from .configio import to_dict
from .errors import DatasetError, TrialsError
from .fileio import write_text
from .records import Recording

log = logging.getLogger(__name__)

SYSTEMS = ("learned", "random", "mfcc", "f0")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run. The defaults fit a 2-core CPU in under 10 minutes a seed."""

    train_singers: int = 80
    train_songs: int = 2
    train_song_seconds: float = 40.0
    eval_singers: int = 16
    eval_songs: int = 3
    eval_song_seconds: float = 24.0
    method: str = "contrastive"
    backbone: str = "cpu_small"
    max_steps: int = 300
    batch_size: int = 128
    crop_seconds: float = 2.0
    """Length of each training crop; the evaluation still scores 4 s windows."""
    lr: float = 1e-3
    seed: int = 0
    condition: str = "cross-song"
    bank_variants: int = 2
    checkpoint_every: int = 100
    dev_songs: int = 2
    """Further songs of each training singer, never trained on, that calibrate the model's thresholds."""
    dev_singers: int = 40
    """How many of the training singers (the first ones) sing those development songs."""

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(to_dict(self), sort_keys=True).encode()).hexdigest()[:12]


QUICK = dict(
    train_singers=12, train_songs=3, train_song_seconds=20.0, eval_singers=8, eval_songs=3,
    eval_song_seconds=16.0, max_steps=120, batch_size=32, crop_seconds=4.0, bank_variants=1,
)
"""Overrides of ``--quick``: about two minutes a seed on 2 cores (CI runs three seeds)."""


class StageClock:
    """Stage headers with the time elapsed and an estimate of the time left.

    ``minutes`` holds each stage's expected duration on a 2-core CPU. Stages that did real work
    rescale the expectation by how fast they actually ran; stages that finished at once (done by
    an earlier, interrupted run) count as done without skewing the rate.
    """

    def __init__(self, minutes: dict[str, float], rounds: int = 1) -> None:
        self.minutes, self.rounds = minutes, rounds
        self.expected_left = sum(minutes.values()) * rounds
        self.worked_expected = self.worked_actual = 0.0
        self.start = self.stage_start = time.monotonic()

    def remaining_minutes(self) -> float:
        """Expected minutes left, scaled by the measured pace of the stages that did work."""
        pace = self.worked_actual / self.worked_expected if self.worked_expected > 0 else 1.0
        return max(0.0, self.expected_left * pace)

    def begin(self, name: str, round_index: int = 0) -> str:
        """Print (and return) the header of stage ``name`` in round ``round_index``."""
        self.stage_start = time.monotonic()
        names = list(self.minutes)
        where = f"[{names.index(name) + 1}/{len(names)}] {name}"
        if self.rounds > 1:
            where += f", seed {round_index + 1}/{self.rounds}"
        elapsed = (self.stage_start - self.start) / 60
        line = f"{where} ({elapsed:.1f} min elapsed, about {self.remaining_minutes():.1f} min left)"
        print(line, flush=True)
        return line

    def end(self, name: str) -> None:
        """Mark stage ``name`` done; its duration updates the pace if it did real work."""
        actual = (time.monotonic() - self.stage_start) / 60
        expected = self.minutes[name]
        self.expected_left = max(0.0, self.expected_left - expected)
        if actual > 0.05 * expected:
            self.worked_expected += expected
            self.worked_actual += actual


def _corpus(root: Path, s: DemoSettings, progress: bool) -> tuple[list[Recording], list[Recording], list[Recording]]:
    from .data.datasets import load_manifest
    from .data.synth import generate_corpus

    jobs = max(1, min(4, os.cpu_count() or 1))
    train = generate_corpus(
        root / "train", s.train_singers, s.train_songs, s.train_song_seconds, seed=s.seed, n_jobs=jobs, progress=progress
    )
    # Evaluation singers come after the training singers: same seed, disjoint identities.
    held_out = generate_corpus(
        root / "eval", s.eval_singers, s.eval_songs, s.eval_song_seconds, seed=s.seed,
        first_singer=s.train_singers, n_jobs=jobs, progress=progress,
    )
    # Development songs: the training singers' songs after those trained on.
    dev = generate_corpus(
        root / "dev", min(s.dev_singers, s.train_singers), s.dev_songs, s.eval_song_seconds, seed=s.seed,
        first_song=s.train_songs, n_jobs=jobs, progress=progress,
    )
    return load_manifest(train), load_manifest(held_out), load_manifest(dev)


def split_singers(recordings: Sequence[Recording], eval_fraction: float, seed: int) -> tuple[list[Recording], list[Recording]]:
    """Split a user's data by singer (seeded): no singer is on both sides."""
    singers = sorted({r.singer for r in recordings})
    if len(singers) < 4:
        raise DatasetError(f"the demo needs at least 4 singers to hold some out for evaluation, found {len(singers)}.")
    order = np.random.default_rng([seed, 7]).permutation(len(singers))
    n_eval = min(len(singers) - 2, max(2, int(round(eval_fraction * len(singers)))))
    held = {singers[i] for i in order[:n_eval]}
    return [r for r in recordings if r.singer not in held], [r for r in recordings if r.singer in held]


def _find_unfinished(root: Path, fingerprint: str) -> Path | None:
    for run in sorted(root.glob("*/demo.json"), reverse=True):
        state = json.loads(run.read_text())
        if state.get("fingerprint") == fingerprint and not state.get("complete"):
            return run.parent
    return None


def _train(run: Path, s: DemoSettings, train_files: list[Recording], progress: bool) -> Path:
    from .training import load_config, train

    model = run / "train" / "model"
    if (model / "config.json").is_file():
        return model
    cfg = load_config(
        "demo",
        [
            f"method={s.method}", f"model.backbone={s.backbone}", f"max_steps={s.max_steps}",
            f"batch_size={s.batch_size}", f"crop_seconds={s.crop_seconds}", f"optim.lr={s.lr}", f"seed={s.seed}",
            f"augment.bank_variants={s.bank_variants}",
            f"augment.bank_seed={s.seed}", f"augment.bank_dir={run.parent / 'pitch-bank'}",
            f"checkpoint_every={s.checkpoint_every}",
        ],
    )
    resume = (run / "train" / "checkpoints" / "last.ckpt").is_file()
    if resume:
        print(f"resuming training from {run / 'train' / 'checkpoints' / 'last.ckpt'}", flush=True)
    return train(cfg, train_files, run / "train", resume=resume, progress=progress).artifact


def _calibrate(run: Path, s: DemoSettings, dev_files: list[Recording], model: Path, what: str, progress: bool):
    """Fit the model's duration-aware calibration on the development recordings (never the
    evaluation singers) and store it in the artefact; a resumed run reuses the stored one."""
    from .data.datasets import segment_recordings
    from .eval.baselines.systems import make_system
    from .eval.calibrate import fit_for_lengths, scored_trials
    from .eval.calibration import store_calibration
    from .model.artifact import load_artifact
    from .model.calibration import Calibration

    stored = load_artifact(model).calibration
    if stored.get("logistic"):
        return Calibration.from_dict(stored)
    segments = segment_recordings(dev_files, seconds=WINDOW_SECONDS, progress=progress).segments
    system = make_system(f"learned=model:{model}")
    try:
        trials = scored_trials(system, segments, condition=s.condition, seed=s.seed, cache_dir=run / "cache", progress=progress)
        calibration = fit_for_lengths(trials)
    except TrialsError as exc:
        print(f"warning: the model could not be calibrated ({exc}); verify and identify will need --threshold", flush=True)
        return None
    calibration.fitted_on.update({
        "data": what, "condition": s.condition,
        "n_singers": len({r.singer for r in dev_files}), "seed": s.seed,
    })  # fmt: skip
    store_calibration(model, calibration)
    return calibration


def _evaluate(run: Path, s: DemoSettings, eval_files: list[Recording], model: Path, calibration, progress: bool):
    from .data.datasets import segment_recordings
    from .eval.baselines.systems import make_system
    from .eval.pipeline import EvaluationSettings, run_evaluation

    segments = segment_recordings(eval_files, seconds=WINDOW_SECONDS, progress=progress).segments
    systems = [
        make_system(f"learned=model:{model}"),
        make_system(f"random=random:{model}", seed=s.seed),
        make_system("mfcc"),
        make_system("f0"),
    ]
    settings = EvaluationSettings(
        condition=s.condition, seed=s.seed, n_boot=500, training_log=run / "train" / "logs" / "metrics.csv",
        decisions=calibration, cluster=True,
    )
    extra = {"demo": {"settings": to_dict(s), "seed": s.seed}}
    if calibration is not None:
        from .eval.open_set import open_set_identification
        from .infer import load_model

        try:
            extra["open_set"] = open_set_identification(load_model(model), eval_files, seed=s.seed)
        except DatasetError as exc:
            print(f"note: no open-set identification check: {exc}", flush=True)
    return run_evaluation(systems, segments, run, settings, progress=progress, extra_results=extra).evaluation


def run_demo(
    settings: DemoSettings,
    *,
    out_root: str | os.PathLike = "runs/demo",
    data: str | os.PathLike | None = None,
    seeds: int = 1,
    progress: bool = True,
) -> Path:
    """Run the demo ``seeds`` times (seeds ``settings.seed``, ``+1``, ...); return the run folder."""
    from .eval.report import markdown_table

    root = Path(out_root)
    key = hashlib.sha256(f"{settings.fingerprint()}|{seeds}|{data}".encode()).hexdigest()[:12]
    run = _find_unfinished(root, key)
    if run is None:
        run = root / time.strftime("%Y%m%d-%H%M%S")
        run.mkdir(parents=True, exist_ok=False)
    else:
        print(f"resuming the unfinished demo in {run}", flush=True)
    state = {"fingerprint": key, "settings": to_dict(settings), "seeds": seeds, "data": str(data) if data else None, "complete": False}
    write_text(run / "demo.json", json.dumps(state, indent=2) + "\n")
    print(f"singerid demo: {settings.method} on {settings.backbone}; seed(s) {settings.seed}..{settings.seed + seeds - 1}; output {run}", flush=True)
    all_results = []
    # Minutes on a 2-core CPU (measured): corpus 1, pitch banks 1, a training step 1.15 s, evaluation 1.
    clock = StageClock(
        {"corpus": 1.0, "training": 1.0 + settings.max_steps * 1.15 / 60.0, "calibration": 0.3, "evaluation": 1.0}, rounds=seeds
    )
    for k in range(seeds):
        s = dataclasses.replace(settings, seed=settings.seed + k)
        sub = run if seeds == 1 else run / f"seed{s.seed}"
        clock.begin("corpus", k)
        if data is None:
            train_files, eval_files, dev_files = _corpus(root / "corpus" / f"seed{s.seed}", s, progress)
            dev_what = "development songs of the training singers, never trained on"
        else:
            from .data.datasets import discover

            train_files, eval_files = split_singers(discover(data), 0.25, s.seed)
            # Singers held out of training to calibrate on: neither trained on nor evaluated.
            train_files, dev_files = split_singers(train_files, 0.2, s.seed + 1)
            dev_what = "development singers held out of training and evaluation"
        clock.end("corpus")
        clock.begin("training", k)
        model = _train(sub, s, train_files, progress)
        clock.end("training")
        clock.begin("calibration", k)
        calibration = _calibrate(sub, s, dev_files, model, dev_what, progress)
        clock.end("calibration")
        clock.begin("evaluation", k)
        results = _evaluate(sub, s, eval_files, model, calibration, progress)
        clock.end("evaluation")
        all_results.append(results)
        print(markdown_table(results), flush=True)
    if seeds > 1:
        curves = {f"seed {settings.seed + k}": validation_curve(run / f"seed{settings.seed + k}" / "train") for k in range(seeds)}
        write_text(run / "summary.md", summary_table(all_results) + curves_markdown(curves, plot_curves(curves, run / "validation.png")))
        write_text(run / "summary.json", json.dumps(summarise(all_results), indent=2) + "\n")
        print(summary_table(all_results), flush=True)
    state["complete"] = True
    write_text(run / "demo.json", json.dumps(state, indent=2) + "\n")
    _point_latest(root, run)
    report = run / ("summary.md" if seeds > 1 else "report.md")
    model = run / "train" / "model" if seeds == 1 else run / "seed*" / "train" / "model"
    print(f"done: report {report}; model {model}; {root / 'latest'} points to this run")
    return run


def validation_curve(train_dir: Path) -> list[tuple[int, float]]:
    """``(step, validation EER)`` of one training run, from its ``logs/metrics.csv``, in step order."""
    import csv

    path = Path(train_dir) / "logs" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/eer")]
    return sorted({int(r["step"]): float(r["val/eer"]) for r in rows}.items())


def plot_curves(curves: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """Validation EER against training step, one line per seed; None when no run validated."""
    if not any(curves.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in curves.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, [100 * v for v in values], marker="o", label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("validation EER %")
    ax.set_title("Validation EER during training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def curves_markdown(curves: dict[str, list[tuple[int, float]]], plot: Path | None) -> str:
    """Markdown table of validation EER per step and seed (a late take-off shows as a slow fall)."""
    steps = sorted({step for points in curves.values() for step, _ in points})
    if not steps:
        return ""
    lines = ["", "Validation EER % during training (per seed):", "", "| step | " + " | ".join(curves) + " |",
             "|---:|" + "---:|" * len(curves)]
    for step in steps:
        cells = [f"{100 * dict(points)[step]:.1f}" if step in dict(points) else "–" for points in curves.values()]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    if plot is not None:
        lines += ["", f"![validation EER]({plot.name})"]
    return "\n".join(lines) + "\n"


def _point_latest(root: Path, run: Path) -> None:
    """``root/latest`` -> the newest complete run (replaced atomically)."""
    tmp = root / f".latest.{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(run.name)
    os.replace(tmp, root / "latest")


def summarise(all_results: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each system's headline metrics."""
    out: dict[str, dict] = {}
    for name in all_results[0]["systems"]:
        per_seed = [r["systems"][name] for r in all_results]
        values = {
            "eer": [p["eer"]["value"] for p in per_seed],
            "min_dcf_0.01": [p["min_dcf"]["0.01"]["value"] for p in per_seed],
            "mnr": [p["mnr"]["value"] for p in per_seed],
            "top1": [p["identification"]["top1_mean"] for p in per_seed if p.get("identification")],
            "recall@1": [p["retrieval"]["recall@1"] for p in per_seed],
        }
        out[name] = {k: {"mean": float(np.mean(v)), "std": float(np.std(v)), "per_seed": v} for k, v in values.items() if v}
    summary = {"seeds": [r["demo"]["seed"] for r in all_results], "systems": out}
    if "learned" in out:
        # The demo's claim is a margin over each baseline, so its spread is taken over the per-seed gaps.
        learned = np.array(out["learned"]["eer"]["per_seed"])
        summary["eer_gap_learned_minus"] = {
            name: {"mean": float(np.mean(gap)), "std": float(np.std(gap)), "per_seed": gap.tolist()}
            for name in out if name != "learned"
            for gap in [learned - np.array(out[name]["eer"]["per_seed"])]
        }
    open_sets = [r.get("open_set") for r in all_results]
    if all(open_sets):
        summary["open_set"] = {
            key: [o[key] for o in open_sets] for key in ("named_correctly", "n_enrolled", "unknown_correctly", "n_others")
        }
    return summary


def summary_table(all_results: list[dict]) -> str:
    """Markdown: mean ± std over seeds, one row per system."""
    summary = summarise(all_results)
    lines = [
        f"Mean ± std over seeds {summary['seeds']}",
        "",
        "| System | EER % | minDCF (0.01) | MNR | Top-1 ID % | Recall@1 % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, m in summary["systems"].items():
        def cell(key: str, scale: float = 100.0, digits: int = 1) -> str:
            if key not in m:
                return "–"
            return f"{scale * m[key]['mean']:.{digits}f} ± {scale * m[key]['std']:.{digits}f}"

        lines.append(f"| {name} | {cell('eer')} | {cell('min_dcf_0.01', 1, 3)} | {cell('mnr', 1, 3)} | {cell('top1')} | {cell('recall@1')} |")
    gaps = summary.get("eer_gap_learned_minus", {})
    if gaps:
        lines += ["", "Learned EER minus each baseline's, in points (negative: the learned model is better):", ""]
        for name, g in gaps.items():
            seeds = ", ".join(f"{100 * v:+.1f}" for v in g["per_seed"])
            lines.append(f"- {name}: {100 * g['mean']:+.1f} ± {100 * g['std']:.1f} (per seed: {seeds})")
    if "open_set" in summary:
        o = summary["open_set"]
        per_seed = ", ".join(f"{a}/{n} named, {b}/{m} unknown" for a, n, b, m in zip(*o.values()))
        lines += ["", f"Open-set identification (enrolled singers named; never-enrolled singers answered unknown), per seed: {per_seed}"]
    return "\n".join(lines) + "\n"
