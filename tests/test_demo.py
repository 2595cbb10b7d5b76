"""The main job end to end, in its quick form: the learned model must beat random weights on every seed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from singerid.cli import main
from singerid.demo import DemoSettings, split_singers, summarise, summary_table
from singerid.errors import DatasetError
from singerid.records import Recording


@pytest.mark.slow
def test_quick_demo_learns_on_three_seeds(tmp_path, capsys):
    assert main(["demo", "--quick", "--seeds", "3", "--out", str(tmp_path), "--no-progress"]) == 0
    run = (tmp_path / "latest").resolve()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [0, 1, 2]
    for seed in (0, 1, 2):
        systems = json.loads((run / f"seed{seed}" / "results.json").read_text())["systems"]
        assert set(systems) == {"learned", "random", "mfcc", "f0"}
        assert systems["learned"]["eer"]["value"] < systems["random"]["eer"]["value"], f"seed {seed}"
        assert summary["systems"]["learned"]["eer"]["per_seed"][seed] == systems["learned"]["eer"]["value"]
    seed0 = run / "seed0"
    results = json.loads((seed0 / "results.json").read_text())
    assert results["protocol"]["condition"] == "cross-song"
    for name in ("report.md", "det.png", "scores.png", "map.png", "train/model/config.json"):
        assert (seed0 / name).is_file(), name
    assert "learned" in capsys.readouterr().out
    # The model leaves calibrated on development songs, and the report gives its error rates per length.
    from singerid.model.artifact import load_artifact

    calibration = load_artifact(seed0 / "train" / "model").calibration
    assert calibration["duration"]["hi"] > 0 and "never trained on" in calibration["fitted_on"]["data"]
    points = results["decisions"]["points"]
    assert set(points) == {"clips", "recordings"} and all(0 <= p["false_accept"] <= 1 for p in points.values())
    report = (seed0 / "report.md").read_text()
    assert "## Decisions at the calibrated threshold" in report and "## Open-set identification" in report
    # The open-set check enrols 3 held-out singers and asks about 3 of their songs and 5 strangers' songs.
    open_set = results["open_set"]
    assert len(open_set["enrolled"]) == 3 and len(open_set["queries"]) == 8
    assert summary["open_set"]["n_others"] == [5, 5, 5]
    text = (run / "summary.md").read_text()
    assert "Validation EER % during training" in text and "Open-set identification" in text
    # Training singers and evaluation singers are disjoint.
    train = {p.name for p in (tmp_path / "corpus" / "seed0" / "train").iterdir() if p.is_dir()}
    held = {p.name for p in (tmp_path / "corpus" / "seed0" / "eval").iterdir() if p.is_dir()}
    assert train and held and not train & held


TINY_DEMO = DemoSettings(
    train_singers=4, train_songs=2, train_song_seconds=6.0, eval_singers=4, eval_songs=2, eval_song_seconds=8.0,
    max_steps=6, batch_size=8, bank_variants=1, checkpoint_every=2,
)


@pytest.mark.slow
def test_an_interrupted_demo_resumes_training_and_ends_with_the_uninterrupted_model(tmp_path, monkeypatch):
    import torch

    from singerid.demo import run_demo
    from singerid.model.artifact import load_artifact
    from singerid.training.module import SSLModule

    straight = run_demo(TINY_DEMO, out_root=tmp_path / "straight", progress=False)

    original = SSLModule.training_step
    steps_run: list[int] = []

    def interrupt_at_step_3(self, batch, batch_idx):
        if self.global_step == 3:
            raise RuntimeError("interrupted at step 3")
        steps_run.append(self.global_step)
        return original(self, batch, batch_idx)

    monkeypatch.setattr(SSLModule, "training_step", interrupt_at_step_3)
    with pytest.raises(RuntimeError, match="interrupted at step 3"):
        run_demo(TINY_DEMO, out_root=tmp_path / "resumed", progress=False)
    assert steps_run == [0, 1, 2]

    def count_steps(self, batch, batch_idx):
        steps_run.append(self.global_step)
        return original(self, batch, batch_idx)

    steps_run.clear()
    monkeypatch.setattr(SSLModule, "training_step", count_steps)
    resumed = run_demo(TINY_DEMO, out_root=tmp_path / "resumed", progress=False)
    # The second run continues from the step-2 checkpoint instead of starting again at step 0.
    assert steps_run == [2, 3, 4, 5]
    a = load_artifact(straight / "train" / "model").net.state_dict()
    b = load_artifact(resumed / "train" / "model").net.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert json.loads((resumed / "demo.json").read_text())["complete"]


def test_split_by_singer_is_disjoint_and_seeded():
    recs = [Recording(f"/{s}/{k}.wav", f"s{s}", f"{k}") for s in range(8) for k in range(2)]
    train, held = split_singers(recs, 0.25, seed=3)
    assert {r.singer for r in train}.isdisjoint({r.singer for r in held})
    assert len({r.singer for r in held}) == 2 and len(train) + len(held) == len(recs)
    assert split_singers(recs, 0.25, seed=3) == (train, held)
    with pytest.raises(DatasetError, match="at least 4 singers"):
        split_singers(recs[:6], 0.25, seed=0)


def test_summary_over_seeds_is_mean_and_std():
    def result(seed, eer):
        system = {"eer": {"value": eer}, "min_dcf": {"0.01": {"value": 0.5}}, "mnr": {"value": 0.1},
                  "identification": {"top1_mean": 0.5}, "retrieval": {"recall@1": 0.4}}
        return {"demo": {"seed": seed}, "systems": {"learned": system}}

    summary = summarise([result(0, 0.2), result(1, 0.3)])
    assert summary["seeds"] == [0, 1]
    assert summary["systems"]["learned"]["eer"]["mean"] == pytest.approx(0.25)
    assert summary["systems"]["learned"]["eer"]["std"] == pytest.approx(0.05)
    assert "25.0 ± 5.0" in summary_table([result(0, 0.2), result(1, 0.3)])


def test_summary_reports_the_gap_to_each_baseline_per_seed():
    def result(seed, learned, mfcc):
        def system(eer):
            return {"eer": {"value": eer}, "min_dcf": {"0.01": {"value": 0.5}}, "mnr": {"value": 0.1},
                    "retrieval": {"recall@1": 0.4}}

        return {"demo": {"seed": seed}, "systems": {"learned": system(learned), "mfcc": system(mfcc)}}

    runs = [result(0, 0.20, 0.35), result(1, 0.27, 0.32), result(2, 0.34, 0.31)]
    gap = summarise(runs)["eer_gap_learned_minus"]["mfcc"]
    assert gap["per_seed"] == pytest.approx([-0.15, -0.05, 0.03])
    assert gap["mean"] == pytest.approx(-0.17 / 3)
    assert gap["std"] == pytest.approx(np.std([-0.15, -0.05, 0.03]))
    assert "- mfcc: -5.7 ± 7.4 (per seed: -15.0, -5.0, +3.0)" in summary_table(runs)


def test_settings_fingerprint_changes_with_settings():
    assert DemoSettings().fingerprint() != DemoSettings(max_steps=1).fingerprint()


def test_stage_clock_estimates_from_measured_pace_and_never_goes_negative(monkeypatch, capsys):
    import singerid.demo as demo

    now = [0.0]
    monkeypatch.setattr(demo.time, "monotonic", lambda: now[0])
    clock = demo.StageClock({"corpus": 1.0, "training": 4.0, "evaluation": 1.0}, rounds=2)
    assert clock.remaining_minutes() == 12.0
    # Round 1 was done by an earlier run: its stages finish at once and leave the pace alone.
    for name in ("corpus", "training", "evaluation"):
        clock.begin(name, 0)
        clock.end(name)
    assert clock.remaining_minutes() == 6.0
    # Corpus of round 2 takes twice its expected minute: the 5 minutes left become 10.
    clock.begin("corpus", 1)
    now[0] += 120.0
    clock.end("corpus")
    assert clock.remaining_minutes() == 10.0
    line = clock.begin("training", 1)
    assert line == "[2/3] training, seed 2/2 (2.0 min elapsed, about 10.0 min left)"
    now[0] += 60.0 * 40
    clock.end("training")
    clock.begin("evaluation", 1)
    clock.end("evaluation")
    clock.end("evaluation")  # one stage too many still reads 0, not a negative time
    assert clock.remaining_minutes() == 0.0
    assert "seed 2/2" in capsys.readouterr().out


def test_validation_curves_are_read_per_seed_and_tabulated(tmp_path):
    from singerid.demo import curves_markdown, plot_curves, validation_curve

    logs = tmp_path / "seed0" / "train" / "logs"
    logs.mkdir(parents=True)
    # Lightning's CSV log: training rows without val/eer, validation rows with it, steps out of order.
    (logs / "metrics.csv").write_text(
        "epoch,step,train/loss,val/eer\n0,99,1.5,\n0,199,,0.25\n0,99,,0.40\n0,150,1.2,\n", encoding="utf-8"
    )
    curve = validation_curve(tmp_path / "seed0" / "train")
    assert curve == [(99, 0.40), (199, 0.25)]
    assert validation_curve(tmp_path / "missing") == []
    curves = {"seed 0": curve, "seed 1": [(99, 0.30)]}
    plot = plot_curves(curves, tmp_path / "validation.png")
    assert plot is not None and plot.stat().st_size > 0
    table = curves_markdown(curves, plot)
    assert "| 99 | 40.0 | 30.0 |" in table and "| 199 | 25.0 | – |" in table
    assert "![validation EER](validation.png)" in table
    assert plot_curves({"seed 0": []}, tmp_path / "none.png") is None and curves_markdown({"seed 0": []}, None) == ""


def test_development_songs_are_sung_by_the_first_dev_singers_of_the_training_singers(tmp_path):
    from singerid.demo import _corpus

    settings = DemoSettings(
        train_singers=4, train_songs=1, train_song_seconds=2.0, eval_singers=2, eval_songs=1, eval_song_seconds=2.0,
        dev_singers=2, dev_songs=1,
    )
    train, held, dev = _corpus(tmp_path, settings, progress=False)
    train_singers = sorted({r.singer for r in train})
    assert len(train_singers) == 4
    assert sorted({r.singer for r in dev}) == train_singers[:2]
    # Their development songs are other songs than the ones trained on.
    assert {(r.singer, r.song) for r in dev}.isdisjoint({(r.singer, r.song) for r in train})
    assert {r.singer for r in held}.isdisjoint(train_singers)


def test_demo_settings_agree_with_the_shipped_demo_config():
    # `singerid train --config demo` and `singerid demo` must train the same recipe.
    from singerid.training import load_config

    cfg, s = load_config("demo"), DemoSettings()
    assert (cfg.method, cfg.model.backbone, cfg.max_steps, cfg.batch_size) == (s.method, s.backbone, s.max_steps, s.batch_size)
    assert (cfg.crop_seconds, cfg.optim.lr, cfg.augment.bank_variants, cfg.checkpoint_every) == (
        s.crop_seconds, s.lr, s.bank_variants, s.checkpoint_every,
    )
