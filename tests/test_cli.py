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


@pytest.mark.slow
def test_console_script_runs_as_module():
    out = subprocess.run([sys.executable, "-m", "singerid", "--help"], capture_output=True, text=True, check=True)
    assert "usage: singerid" in out.stdout


@pytest.mark.slow
def test_public_api_resolves_and_stays_light():
    code = (
        "import sys, singerid; assert 'torch' not in sys.modules; "
        "assert callable(singerid.load_model) and callable(singerid.train) and callable(singerid.evaluate); "
        "assert 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    import singerid

    with pytest.raises(AttributeError):
        singerid.no_such_thing  # noqa: B018


def test_demo_method_choices_match_the_training_methods():
    from singerid.cli import demo
    from singerid.training import METHODS

    assert set(demo.METHODS) == set(METHODS)


def test_readme_documents_every_command_with_its_example():
    from pathlib import Path

    from singerid.cli import _load_commands

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    head = "\n".join(readme.splitlines()[:40])
    assert "make demo" in head and "make test" in head
    for module in _load_commands():
        assert f"`{module.NAME}`" in readme, module.NAME
        assert module.EXAMPLE in readme, module.NAME


def test_every_argument_and_option_of_every_command_has_help_text():
    import argparse

    from singerid.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {' '.join(action.option_strings) or action.dest}"
        for name, parser in sub.choices.items()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert not missing, f"arguments without help text: {missing}"


@pytest.mark.parametrize(
    "line, expected",
    [("singerid ver", {"verify"}), ("singerid verify a.wav b.wav --thr", {"--threshold"}), ("singerid catalog s", {"search"})],
)
@pytest.mark.slow
def test_the_shell_completes_commands_and_options(tmp_path, line, expected):
    import os

    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}  # fmt: skip
    subprocess.run([sys.executable, "-m", "singerid"], env=env, capture_output=True, timeout=120)
    offered = {word.strip() for word in answer.read_text().split("\013")}
    assert expected <= offered, offered
