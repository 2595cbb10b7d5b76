"""Start-up of the inference path: what `import singerid` and `singerid verify` load, the
environment the command line sets before torch starts, and the numpy Welch spectrum that keeps
scipy.signal off that path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import singerid
from singerid.model.artifact import save_artifact
from singerid.model.backbones import EncoderConfig, build_encoder
from singerid.quality import welch_psd

SRC = str(Path(singerid.__file__).parent.parent)
NOT_ON_THE_INFERENCE_PATH = (
    "lightning", "pytorch_lightning", "sklearn", "matplotlib", "onnx", "onnxruntime",
    "scipy.signal", "scipy.stats", "scipy.cluster", "scipy.spatial", "pandas", "faiss",
)

PROBE = """
import json, os, sys

class Watch:
    # Records the environment at the moment torch is first looked for.
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and "omp_at_torch" not in seen:
            seen["omp_at_torch"] = os.environ.get("OMP_WAIT_POLICY")
        return None

seen = {}
sys.meta_path.insert(0, Watch())
from singerid.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules), **seen}))
"""


def _run(args: list[str], code: str = PROBE, env: dict | None = None) -> dict:
    full_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    full_env.update({"PYTHONPATH": SRC, **(env or {})})
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=full_env, timeout=300, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loaded(modules: list[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


@pytest.fixture(scope="module")
def verify_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("startup")
    torch.manual_seed(0)
    cfg = EncoderConfig(backbone="cpu_small")
    model = save_artifact(folder / "model", build_encoder(cfg), cfg)
    rng = np.random.default_rng(0)
    files = []
    for name in ("a.wav", "b.wav"):
        sf.write(folder / name, 0.1 * rng.standard_normal(44100 * 2).astype(np.float32), 44100)
        files.append(str(folder / name))
    return model, files


def test_import_singerid_loads_no_torch():
    got = _run([], code="import json, sys, singerid; print(json.dumps({'modules': sorted(sys.modules)}))")
    heavy = [name for name in ("torch", *NOT_ON_THE_INFERENCE_PATH) if _loaded(got["modules"], name)]
    assert not heavy, f"`import singerid` loads {heavy}"


@pytest.mark.slow
def test_verify_loads_only_what_inference_needs(verify_inputs):
    model, (a, b) = verify_inputs
    got = _run(["verify", a, b, "--model", str(model), "--threshold", "0.5"])
    assert got["code"] == 0
    assert _loaded(got["modules"], "torch")  # the check below would pass vacuously otherwise
    heavy = [name for name in NOT_ON_THE_INFERENCE_PATH if _loaded(got["modules"], name)]
    assert not heavy, f"`singerid verify` loads {heavy}"
    others = [m for m in got["modules"] if m.startswith("singerid.cli.") and m not in ("singerid.cli._common", "singerid.cli._errors", "singerid.cli.verify")]
    assert not others, f"`singerid verify` imports other commands: {others}"


@pytest.mark.slow
def test_command_line_lets_idle_threads_sleep_unless_told_otherwise(verify_inputs):
    model, (a, b) = verify_inputs
    args = ["verify", a, b, "--model", str(model), "--threshold", "0.5"]
    assert _run(args)["omp_at_torch"] == "PASSIVE"
    assert _run(args, env={"OMP_WAIT_POLICY": "ACTIVE"})["omp_at_torch"] == "ACTIVE"


@pytest.mark.parametrize("n, nperseg", [(44100, 4096), (5000, 4096), (4096, 4096), (3001, 3001), (200_000, 4096), (9, 9)])
def test_welch_psd_matches_scipy(n, nperseg):
    from scipy.signal import welch

    x = np.random.default_rng(n).standard_normal(n) + 0.3  # an offset, so the per-segment mean removal counts
    freqs, power = welch(x, fs=44100, nperseg=nperseg)
    got_freqs, got = welch_psd(x, 44100, nperseg, block=7)  # a small block, so blocks are summed
    np.testing.assert_array_equal(got_freqs, freqs)
    np.testing.assert_allclose(got, power, rtol=1e-10, atol=1e-14 * power.max())


TEARDOWN_PROBE = """
import atexit, sys
atexit.register(lambda: print("interpreter teardown ran", file=sys.stderr))
from singerid.cli import console
sys.argv = ["singerid", *sys.argv[1:]]
sys.exit(console())
"""


def _console(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_a_one_off_query_skips_the_interpreter_teardown_after_printing_everything(verify_inputs):
    model, (a, b) = verify_inputs
    done = _console(["verify", a, b, "--model", str(model), "--threshold", "0.5", "--json"])
    assert done.returncode == 0, done.stderr
    assert "interpreter teardown ran" not in done.stderr
    # Everything printed before the quick exit arrived through the pipe.
    result = json.loads(done.stdout)
    assert result["threshold"] == 0.5 and -1.0 <= result["score"] <= 1.0
    # A failure, and a command that writes files, end the normal way.
    failed = _console(["verify", a, str(Path(a).with_name("missing.wav")), "--model", str(model), "--threshold", "0.5"])
    assert failed.returncode != 0 and "missing.wav" in failed.stderr
    assert "interpreter teardown ran" in failed.stderr
    written = _console(["synth", "--out", str(Path(a).parent / "synth"), "--singers", "1", "--songs", "1", "--song-seconds", "1", "--no-progress"])
    assert written.returncode == 0, written.stderr
    assert "interpreter teardown ran" in written.stderr
