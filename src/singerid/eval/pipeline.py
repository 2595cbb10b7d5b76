"""One evaluation run from start to finish: segments -> systems -> trials -> metrics -> report
(and, on request, invariance probes and a stored calibration). ``singerid evaluate`` and the
demo both call :func:`run_evaluation`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..audio import WINDOW_SECONDS
from ..errors import ConfigError, DatasetError
from ..fileio import write_text
from ..model.calibration import Calibration
from ..records import Segment
from .evaluate import Evaluation, evaluate
from .report import decisions_markdown, markdown_table, write_report
from .trials import write_trials


@dataclass(frozen=True)
class EvaluationSettings:
    """Everything :func:`singerid.eval.evaluate.evaluate` and the report take besides systems and
    segments; defaults are ``singerid evaluate``'s."""

    trials: str | os.PathLike | None = None
    condition: str = "cross-song"
    n_target: int = 50
    n_nontarget: int = 50
    mnr_k: int = 512
    probe_folds: int = 5
    n_boot: int = 1000
    seed: int = 0
    cohort: Sequence[Segment] | None = None
    asnorm_top_k: int | None = 200
    cache_dir: str | os.PathLike | None = None
    map_method: str = "auto"
    training_log: str | os.PathLike | None = None
    invariance: Sequence[str] | None = None
    """Invariance probe transforms to run on every system (empty: all of them; ``None``: none)."""
    calibrate: str | os.PathLike | None = None
    """A model artefact in which to store a calibration fitted on the first system's clip and
    whole-recording trials (these segments then act as development data)."""
    decisions: Calibration | None = None
    """A calibration whose decisions to measure on the first system (false-accept / false-reject
    rates at its thresholds, for clips and for whole recordings)."""
    cluster: bool = False
    """Also cluster each system's segments by singer without labels and score the clusters
    (:func:`singerid.eval.cluster_run.evaluation_clustering`)."""


@dataclass
class EvaluationRun:
    """What :func:`run_evaluation` measured and wrote."""

    evaluation: Evaluation
    out: Path
    report: Path
    trials_file: Path | None = None
    invariance: list[dict] | None = None
    calibration: dict | None = None
    calibrated: Path | None = None
    decisions: dict | None = None
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """The lines ``singerid evaluate`` prints: protocol, results table, notes, where things went."""
        p = self.evaluation["protocol"]
        lines = [
            f"{p['n_segments']} segments of {p['n_singers']} singers; {p['n_trials']} trials "
            f"({p['n_target']} target, {p['condition']}, {p['score']} scores)",
            "",
            markdown_table(self.evaluation),
        ]
        lines += [f"note: {note}" for note in self.evaluation["warnings"]]
        for name, r in self.evaluation["systems"].items():
            lines += [f"note: {name}: {note}" for note in r["warnings"]]
        if self.invariance is not None:
            from .invariance import invariance_markdown

            lines.append(invariance_markdown(self.invariance))
        if self.calibration is not None:
            lines.append(
                f"stored calibration in {self.calibrated}: EER threshold {self.calibration['thresholds']['eer']:.4f} "
                "for 4 s clips, moving with the lengths scored"
            )
        if self.decisions is not None:
            lines.append(decisions_markdown(self.decisions))
        if self.evaluation.get("clustering"):
            from .cluster_run import clustering_markdown

            lines.append(clustering_markdown(self.evaluation["clustering"]))
        lines.append(f"wrote {', '.join(str(p) for p in self.written)} and plots to {self.out}")
        if self.trials_file is not None:
            lines.append(f"trial list: {self.trials_file}")
        return "\n".join(lines)


def run_evaluation(
    systems: Sequence,
    segments: Sequence[Segment],
    out: str | os.PathLike,
    settings: EvaluationSettings = EvaluationSettings(),
    *,
    progress: bool = True,
    extra_results: dict | None = None,
) -> EvaluationRun:
    """Evaluate ``systems`` on ``segments`` and write ``results.json``, ``report.md``, plots, the
    drawn trial list (when none was given) and the optional invariance tables into ``out``.

    ``extra_results`` are added to the results before they are written (the demo's settings).
    """
    s = settings
    if s.calibrate is not None and not systems:
        raise ConfigError("calibration needs a model to calibrate; pass one.")
    out = Path(out)
    evaluation = evaluate(
        systems, segments, trials=s.trials, condition=s.condition, n_target=s.n_target, n_nontarget=s.n_nontarget,
        mnr_k=s.mnr_k, probe_folds=s.probe_folds, n_boot=s.n_boot, seed=s.seed, cohort=s.cohort,
        asnorm_top_k=s.asnorm_top_k, cache_dir=s.cache_dir if s.cache_dir is not None else out / "cache",
        progress=progress,
    )  # fmt: skip
    evaluation.update(extra_results or {})
    result = EvaluationRun(evaluation=evaluation, out=out, report=out / "report.md")
    if s.calibrate is not None or s.decisions is not None:
        _decide(result, systems[0], segments, s, out)
    if s.cluster:
        from .cluster_run import evaluation_clustering

        evaluation["clustering"] = evaluation_clustering(evaluation.arrays, calibration=s.decisions, seed=s.seed)
    if s.trials is None:
        result.trials_file = write_trials(out / "trials.txt", evaluation.arrays.trials)
    result.report = write_report(out, evaluation, training_log=s.training_log, map_method=s.map_method, seed=s.seed)
    result.written = [out / "results.json", result.report] + ([result.trials_file] if result.trials_file else [])
    if s.invariance is not None:
        from .invariance import invariance_markdown, invariance_report

        result.invariance = [
            invariance_report(system, segments, transforms=list(s.invariance) or None, seed=s.seed) for system in systems
        ]
        table = invariance_markdown(result.invariance)
        write_text(out / "invariance.md", "# Invariance probes\n\n" + table + "\n")
        write_text(out / "invariance.json", json.dumps(result.invariance, indent=2) + "\n")
        result.written += [out / "invariance.md", out / "invariance.json"]
    return result


def _decide(result: EvaluationRun, system, segments: Sequence[Segment], s: EvaluationSettings, out: Path) -> None:
    """Fit and store a calibration (``s.calibrate``) or take ``s.decisions``, then measure the
    decisions it gives on clip and whole-recording trials of ``segments``."""
    from .calibrate import fit_for_lengths, operating_points, scored_trials
    from .calibration import store_calibration

    trials = scored_trials(
        system, segments, condition=s.condition, n_target=s.n_target, n_nontarget=s.n_nontarget, seed=s.seed,
        cache_dir=s.cache_dir if s.cache_dir is not None else out / "cache",
    )  # fmt: skip
    if s.calibrate is not None:
        calibration = fit_for_lengths(trials)
        protocol = result.evaluation["protocol"]
        calibration.fitted_on.update({k: protocol[k] for k in ("condition", "n_singers", "seed")})
        store_calibration(s.calibrate, calibration)
        result.calibration, result.calibrated = calibration.to_dict(), Path(s.calibrate)
        source = "fitted on these recordings"
    else:
        calibration, source = s.decisions, "the model's stored calibration"
    result.decisions = {
        "system": system.name,
        "calibration": source,
        "threshold_4s": calibration.threshold("eer", (4.0, 4.0)),
        "points": operating_points(calibration, trials),
    }
    result.evaluation["decisions"] = result.decisions


def evaluation_segments(
    *,
    data: str | os.PathLike | None = None,
    manifest: str | os.PathLike | None = None,
    layout: str | None = None,
    layout_options: dict | None = None,
    seconds: float = WINDOW_SECONDS,
    out: str | os.PathLike | None = None,
    on_error: str = "raise",
    progress: bool = True,
) -> tuple[list[Segment], str]:
    """The segments to evaluate on and a one-line account of them: read from a segment
    ``manifest``, or discovered in the ``data`` folder (``layout``, default ``folder``) and cut
    into ``seconds``-long segments, then written to ``out/segments.csv`` when ``out`` is given.

    Unreadable files in ``data`` (including audio soundfile cannot decode, such as ``.m4a``) stop
    the evaluation before anything is written, or with ``on_error="skip"`` are left out and listed
    in the account, one ``skipped:`` line each."""
    from ..data.datasets import discover, segment_recordings, unsupported_audio
    from ..records import read_segments, write_segments

    if (data is None) == (manifest is None):
        raise ConfigError("pass either a data folder or a segment manifest, not both.")
    if manifest is not None:
        if layout is not None:
            raise ConfigError("--layout applies to --data folders only; drop it when passing --manifest.")
        segments = read_segments(manifest)
        return segments, f"{len(segments)} segments from {manifest}"
    undecodable = unsupported_audio(data)
    if undecodable and on_error == "raise":
        raise DatasetError(
            f"{len(undecodable)} audio file(s) cannot be decoded; convert or remove them, or pass --skip-unreadable: "
            + "; ".join(reason for _, reason in undecodable[:3])
        )
    recordings = discover(data, layout or "folder", **(layout_options or {}))
    result = segment_recordings(recordings, seconds=seconds, on_error=on_error, progress=progress)
    result.unreadable.extend(undecodable)
    if out is not None:
        write_segments(Path(out) / "segments.csv", result.segments)
    skipped = "".join(f"\n  skipped: {reason}" for _, reason in result.unreadable)
    return result.segments, result.summary() + skipped
