from __future__ import annotations

import subprocess
import sys

import pytest

from singerid import __version__
from singerid.cli import build_parser, main


def test_version_and_help_list_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out
    help_text = build_parser().format_help()
    for command in ("synth", "train", "embed", "evaluate", "demo"):
        assert command in help_text


def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "singerid", "--help"], capture_output=True, text=True, check=True)
    assert "usage: singerid" in out.stdout
