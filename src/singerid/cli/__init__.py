"""The ``singerid`` command: one subcommand per module in this package.

Each command module defines ``NAME``, ``ORDER`` (its place in ``--help``), ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``; it parses options and calls library functions, nothing more.
User errors (:class:`~singerid.errors.SingerIdError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType

from .. import __version__
from ..errors import SingerIdError


def _load_commands() -> list[ModuleType]:
    """Every command module in this package, in workflow order (``ORDER``)."""
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (m.ORDER, m.NAME))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render the README's command reference)."""
    parser = argparse.ArgumentParser(
        prog="singerid",
        description="Singer identity embeddings: synthesise, prepare, train, embed, verify, identify, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"singerid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _load_commands():
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _log_to_stderr() -> None:
    """singerid's own log lines (where outputs went, what was skipped) on stderr, once."""
    logger = logging.getLogger("singerid")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


IDLE_THREADS_SLEEP = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Set (unless the user set them) before a command imports torch. Idle OpenMP threads then sleep
instead of spinning; on a CPU shared with other work, spinning threads take cores from the ones
doing the work (``benchmarks/results/paths.json``). Only the command line sets it: it owns its
process, while a program that imports singerid keeps its own environment."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``singerid`` console script."""
    for key, value in IDLE_THREADS_SLEEP.items():
        os.environ.setdefault(key, value)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _log_to_stderr()
    try:
        return int(args._run(args) or 0)
    except SingerIdError as exc:
        print(f"singerid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"singerid {args.command}: interrupted; re-run the same command to resume.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
