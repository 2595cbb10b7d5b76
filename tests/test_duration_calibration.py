"""Duration-aware calibration: thresholds that hold for clips and for whole songs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from singerid.errors import ConfigError
from singerid.eval.calibration import fit_calibration
from singerid.eval.metrics import eer
from singerid.model.calibration import Calibration

# Scores sit higher for longer audio, for targets and non-targets alike (as measured on whole songs).
BANDS = {4.0: ((0.70, 0.08), (0.40, 0.10)), 60.0: ((0.95, 0.02), (0.82, 0.05))}


def _trials(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    scores, labels, durations = [], [], []
    for seconds, ((mt, st), (mn, sn)) in BANDS.items():
        scores += [rng.normal(mt, st, n), rng.normal(mn, sn, n)]
        labels += [np.ones(n, bool), np.zeros(n, bool)]
        durations += [np.full((2 * n, 2), seconds)]
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(durations)


def _rates(scores, labels, threshold):
    accept = scores >= threshold
    return float(accept[~labels].mean()), float((~accept[labels]).mean())


def test_thresholds_follow_the_duration_so_error_rates_stay_near_each_bands_eer():
    s, y, d = _trials()
    cal = fit_calibration(s, y, durations=d)
    test_s, test_y, test_d = _trials(seed=1)
    for seconds in BANDS:
        band = test_d[:, 0] == seconds
        far, frr = _rates(test_s[band], test_y[band], cal.threshold("eer", (seconds, seconds)))
        band_eer = eer(test_s[band], test_y[band])[0]
        assert abs(far - band_eer) < 0.03 and abs(frr - band_eer) < 0.03, (seconds, far, frr, band_eer)


def test_a_threshold_fitted_on_clips_alone_fails_on_whole_songs():
    """The failure the duration terms fix: a 4 s threshold accepts most different-singer song pairs."""
    s, y, d = _trials()
    clips = d[:, 0] == 4.0
    plain = fit_calibration(s[clips], y[clips])
    songs = d[:, 0] == 60.0
    far, _ = _rates(s[songs], y[songs], plain.threshold("eer"))
    assert far > 0.5


def test_the_llr_at_the_score_threshold_is_the_stored_llr_threshold():
    s, y, d = _trials()
    cal = fit_calibration(s, y, durations=d)
    for pair in [(4.0, 4.0), (4.0, 60.0), (20.0, 30.0)]:
        t = cal.threshold("eer", pair)
        assert cal.llr([t], [pair])[0] == pytest.approx(cal.llr_thresholds["eer"], abs=1e-9)
    assert cal.threshold("eer", (4.0, 4.0)) == pytest.approx(cal.thresholds["eer"])
    assert cal.probability([cal.threshold("bayes", (60.0, 60.0))], [(60.0, 60.0)])[0] == pytest.approx(0.5)


def test_durations_beyond_the_fitted_range_are_clipped_not_extrapolated():
    s, y, d = _trials()
    cal = fit_calibration(s, y, durations=d)
    assert cal.threshold("eer", (600.0, 600.0)) == pytest.approx(cal.threshold("eer", (60.0, 60.0)))
    assert cal.threshold("eer", (0.5, 0.5)) == pytest.approx(cal.threshold("eer", (4.0, 4.0)))
    assert cal.duration.lo == pytest.approx(0.0) and cal.duration.hi == pytest.approx(math.log(15.0))


def test_the_stored_form_round_trips_and_old_calibrations_still_load():
    s, y, d = _trials()
    cal = fit_calibration(s, y, durations=d)
    back = Calibration.from_dict(cal.to_dict())
    assert back.threshold("eer", (30.0, 8.0)) == pytest.approx(cal.threshold("eer", (30.0, 8.0)))
    old = Calibration.from_dict({"thresholds": {"eer": 0.5}, "logistic": {"a": 10.0, "b": -5.0}})
    assert old.duration is None and old.threshold("eer", (60.0, 60.0)) == 0.5
    assert old.llr([0.5])[0] == pytest.approx(0.0)


def test_bad_durations_are_a_clear_error():
    s, y, d = _trials(n=200)
    cal = fit_calibration(s, y, durations=d)
    with pytest.raises(ConfigError, match="positive seconds"):
        cal.threshold("eer", (0.0, 4.0))
    with pytest.raises(ConfigError, match="no calibrated 'far0.5'"):
        cal.threshold("far0.5")


# --- fitted on an evaluation's clips and whole recordings ------------------------------------


def _long_songs(root, singers: int = 8, songs: int = 3, seconds: float = 12.0, rate: int = 4000):
    from singerid.audio import write_audio
    from singerid.records import Segment

    rng = np.random.default_rng(0)
    segments = []
    for i in range(singers):
        for j in range(songs):
            path = write_audio(root / f"s{i}" / f"song{j}.wav", 0.1 * rng.standard_normal(int(seconds * rate)).astype(np.float32), rate)
            segments += [Segment(str(path), f"s{i}", f"song{j}", float(k), 1.0) for k in range(int(seconds))]
    return segments


def _length_dependent_system():
    """Singer code + a part shared by everyone + noise that shrinks with the segment's length:
    longer audio scores higher for same and different singers alike, as real embeddings do."""
    from singerid.eval.baselines.systems import System

    def embed(segs, progress):
        names = sorted({s.singer for s in segs})
        rng = np.random.default_rng(len(segs))
        code = np.eye(len(names))[[names.index(s.singer) for s in segs]]
        noise = rng.standard_normal((len(segs), len(names) + 8)) / np.sqrt([[s.duration] for s in segs])
        shared = np.zeros(len(names) + 8)
        shared[-1] = 1.2
        return np.hstack([code, np.zeros((len(segs), 8))]) + shared + 0.5 * noise

    return System("lengthy", embed, "lengthy-1")


@pytest.mark.slow
def test_evaluate_calibrate_fits_thresholds_that_hold_for_clips_and_whole_recordings(tmp_path, model_dir):
    import shutil

    from singerid.eval.calibrate import fit_for_lengths, operating_points, scored_trials
    from singerid.eval.calibration import fit_calibration
    from singerid.eval.pipeline import EvaluationSettings, run_evaluation
    from singerid.model.artifact import load_artifact

    segments = _long_songs(tmp_path / "data")
    model = shutil.copytree(model_dir, tmp_path / "model")
    system = _length_dependent_system()
    settings = EvaluationSettings(n_boot=0, probe_folds=0, mnr_k=16, n_target=40, n_nontarget=40, calibrate=model)
    run = run_evaluation([system], segments, tmp_path / "eval", settings, progress=False)
    stored = Calibration.from_dict(load_artifact(model).calibration)
    assert stored.duration is not None and stored.duration.hi == pytest.approx(math.log(12.0 / 4.0))
    points = run.decisions["points"]
    assert set(points) == {"clips", "recordings"} and points["recordings"]["median_seconds"] == 12.0
    for p in points.values():
        assert abs(p["false_accept"] - p["eer"]) <= 0.05 and abs(p["false_reject"] - p["eer"]) <= 0.05, p
    assert "## Decisions at the calibrated threshold" in run.report.read_text()

    # The same check done by hand: a clip-only calibration accepts far more different-singer recordings.
    trials = scored_trials(system, segments, n_target=40, n_nontarget=40)
    assert fit_for_lengths(trials).threshold("eer", (12.0, 12.0)) == pytest.approx(stored.threshold("eer", (12.0, 12.0)))
    clips_only = fit_calibration(trials["clips"].scores, trials["clips"].labels)
    recordings = trials["recordings"]
    assert (recordings.scores[~recordings.labels] >= clips_only.threshold("eer")).mean() > 0.3
    assert operating_points(stored, trials) == points

    # A later evaluation measures the stored calibration's decisions instead of refitting.
    again = run_evaluation(
        [system], segments, tmp_path / "eval2", EvaluationSettings(n_boot=0, probe_folds=0, mnr_k=16, n_target=40, n_nontarget=40, decisions=stored), progress=False
    )
    assert again.decisions["points"] == points and again.calibration is None
