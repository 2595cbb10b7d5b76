# PYTHON_ARGCOMPLETE_OK  (lets argcomplete's global completion offer singerid's commands and options)
"""The ``singerid`` command: one subcommand per module in this package.

Each command module defines ``NAME``, ``ORDER`` (its place in ``--help``), ``HELP``, ``EXAMPLE``, ``add_arguments(parser)`` and
``run(args) -> int``; it parses options and calls library functions, nothing more. A one-off query
that writes nothing also sets ``QUICK_EXIT = True`` (see :func:`console`).
Every error a user can cause prints one line (see :mod:`singerid.cli._errors`): exit 2 for usage
errors, 1 for failures; the global ``--debug`` option shows the traceback instead.
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
from ._errors import EXIT_USAGE, describe, suggest


class _Parser(argparse.ArgumentParser):
    """argparse with "did you mean" for mistyped commands and options (exit 2, the command's own usage)."""

    argv: list[str] | None = None  # the command line being parsed, for suggestions

    def error(self, message: str) -> None:  # noqa: D102 - argparse's hook
        hint = suggest(self, message, _Parser.argv)
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{hint}\n")


def _module_names() -> list[str]:
    """The command modules' names (``import_official`` is the command ``import-official``)."""
    return [info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_")]


def _load_commands(only: str | None = None) -> list[ModuleType]:
    """Every command module in this package, in workflow order (``ORDER``), or just module ``only``."""
    names = [only] if only is not None else _module_names()
    modules = [importlib.import_module(f"{__name__}.{name}") for name in names]
    return sorted(modules, key=lambda m: (m.ORDER, m.NAME))


def _requested_module(argv: list[str]) -> str | None:
    """The module of the command ``argv`` names, when it names one; None for help, a typo or nothing.

    A one-off command then imports only its own module: some commands' options come from heavy
    modules (clustering pulls in SciPy), and a quick ``verify`` should not pay for them."""
    for token in argv:
        if not token.startswith("-"):
            name = token.replace("-", "_")
            return name if name in _module_names() else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full argument parser (also used to render the README's command reference), or one
    with only the command module ``only``."""
    parser = _Parser(
        prog="singerid",
        description="Singer identity embeddings: synthesise, prepare, train, embed, verify, identify, evaluate, export.",
    )
    parser.add_argument("--version", action="version", version=f"singerid {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in _load_commands(only):
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            epilog=f"example:\n  {module.EXAMPLE}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _parser=cmd, _quick_exit=getattr(module, "QUICK_EXIT", False))
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


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request (bash/zsh through argcomplete) and exit."""
    import argcomplete

    argcomplete.autocomplete(parser)


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown: flush what was printed and logged, then
    ``os._exit``. Unloading torch's libraries and freeing every module takes a sizeable part of a
    one-off command's time, and a command that has returned has nothing left to clean up."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def console() -> int:
    """Entry point of the ``singerid`` console script and ``python -m singerid``: :func:`main`, and
    a command that declares ``QUICK_EXIT`` (a one-off query that writes nothing) ends the process
    at once when it succeeds."""
    return main(exit_quickly=True)


def main(argv: list[str] | None = None, *, exit_quickly: bool = False) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
    for key, value in IDLE_THREADS_SLEEP.items():
        os.environ.setdefault(key, value)
    _Parser.argv = list(sys.argv[1:] if argv is None else argv)
    if "_ARGCOMPLETE" in os.environ:
        _complete(build_parser())
    parser = build_parser(_requested_module(_Parser.argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # Report unknown options with the command's own usage, not the top-level one.
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    _log_to_stderr()
    try:
        code = int(args._run(args) or 0)
    except KeyboardInterrupt as exc:
        print(f"singerid {args.command}: interrupted; {exc or 're-run the same command to resume.'}", file=sys.stderr)
        return 130
    except Exception as exc:
        known = describe(exc)
        if known is None or args.debug:
            raise
        code, line = known
        print(f"singerid {args.command}: error: {line}", file=sys.stderr)
        return code
    if exit_quickly and args._quick_exit and code == 0:
        _exit_now(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
