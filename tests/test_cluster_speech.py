"""`singerid cluster --system resemblyzer` on speech-like voices of several people: the command is not specific to singing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from singerid.audio import write_audio
from singerid.cli import main
from singerid.data.signals import formant_voice
from singerid.errors import ConfigError

pytestmark = pytest.mark.slow

PEOPLE = {  # f0 (Hz) and formant centres (Hz) of three speakers
    "ann": (210.0, (850.0, 1600.0, 2900.0)),
    "bob": (105.0, (450.0, 1100.0, 2300.0)),
    "cy": (150.0, (650.0, 2100.0, 3300.0)),
}


def test_resemblyzer_clusters_speakers(tmp_path, capsys):
    from singerid.eval.baselines.pretrained import resemblyzer_weights

    try:
        resemblyzer_weights()
    except ConfigError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(0)
    for name, (f0, formants) in PEOPLE.items():
        for j in range(4):  # each utterance a little higher or lower, with slightly moved formants
            voice = formant_voice(f0 * 2 ** (rng.uniform(-2, 2) / 12), tuple(f * rng.uniform(0.97, 1.03) for f in formants), 2.5, rng)
            write_audio(tmp_path / "speech" / name / f"utt{j}.wav", voice)
    assert main(["cluster", str(tmp_path / "speech"), "--system", "resemblyzer", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "out" / "clustering.json").read_text())
    assert result["system"] == "resemblyzer" and result["method"] == "silhouette"
    assert result["scores"]["resemblyzer"]["ari"] == pytest.approx(1.0) and result["n_clusters"] == 3
    assert "resemblyzer: ARI 1.000" in capsys.readouterr().out
