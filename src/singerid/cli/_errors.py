"""How the ``singerid`` command reports errors: one line naming the file and the fix.

Exit codes: 2 for usage errors (options, configuration values), 1 for failures (files that
cannot be read or written, bad data). Anything not listed here is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import errno
import json
import re
import zipfile

from ..errors import ConfigError, SingerIdError

EXIT_FAILURE = 1
EXIT_USAGE = 2

_WORKER_TRACE = "Original Traceback"
_QUALIFIED = re.compile(r"^[\w.]+(Error|Exception|Interrupt): ")


def _one_line(text: str) -> str:
    """The message on one line; an error re-raised from a worker process keeps only its own message."""
    text = str(text).strip()
    if _WORKER_TRACE in text:
        # torch's DataLoader re-raises "Caught X in DataLoader worker ... Original Traceback ...":
        # the worker's own message is the last line, prefixed with its qualified class name.
        lines = [ln for ln in text.splitlines() if ln.strip()]
        text = _QUALIFIED.sub("", lines[-1].strip()) if lines else text
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _os_error(exc: OSError) -> str:
    name = exc.filename or "output"
    code = exc.errno
    if code == errno.ENOSPC:
        return f"{name}: no space left on the device; free some space or write --out to another disk."
    if code == errno.EROFS:
        return f"{name}: the file system is read-only; write --out to a writable folder."
    if isinstance(exc, PermissionError) or code == errno.EACCES:
        return f"{name}: permission denied; check its permissions or choose another path."
    if isinstance(exc, IsADirectoryError):
        return f"{name}: is a folder, but a file is expected here; give a file path."
    if isinstance(exc, NotADirectoryError):
        return f"{name}: a part of this path is a file, but a folder is expected; give a folder path."
    if isinstance(exc, FileNotFoundError):
        return f"{name}: not found; check the path."
    if code == errno.ENOMEM:
        return "out of memory; lower --batch-size or --max-seconds, or embed fewer files at once."
    return f"{name}: {exc.strerror or _one_line(exc)}."


def describe(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, one line)`` for an error a user can cause; ``None`` for a bug (keep the traceback)."""
    if isinstance(exc, ConfigError):
        return EXIT_USAGE, _one_line(exc)
    if isinstance(exc, SingerIdError):
        return EXIT_FAILURE, _one_line(exc)
    if isinstance(exc, MemoryError):
        return EXIT_FAILURE, "out of memory; lower --batch-size or --max-seconds, or embed fewer files at once."
    if isinstance(exc, UnicodeDecodeError):
        return EXIT_FAILURE, (
            f"a text file is not UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8 and try again."
        )
    if isinstance(exc, json.JSONDecodeError):
        return EXIT_FAILURE, f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); fix or re-create the file."
    if isinstance(exc, zipfile.BadZipFile):
        return EXIT_FAILURE, f"not a valid .npz archive ({_one_line(exc)}): truncated or another kind of file; re-create it."
    if isinstance(exc, csv.Error):
        return EXIT_FAILURE, f"malformed CSV ({_one_line(exc)}); fix the file or re-create it with `singerid prepare`."
    if isinstance(exc, OSError):
        return EXIT_FAILURE, _os_error(exc)
    try:
        import yaml
    except ImportError:  # pragma: no cover - yaml is a core dependency
        yaml = None
    if yaml is not None and isinstance(exc, yaml.YAMLError):
        return EXIT_USAGE, f"invalid YAML ({_one_line(exc)}); fix the configuration or the --set value."
    try:
        import soundfile
    except ImportError:  # pragma: no cover - soundfile is a core dependency
        soundfile = None
    if soundfile is not None and isinstance(exc, soundfile.SoundFileError):
        return EXIT_FAILURE, f"cannot decode audio ({_one_line(exc)}); convert it to WAV or FLAC."
    return None


def suggest(parser: argparse.ArgumentParser, message: str) -> str:
    """A " (did you mean ...?)" hint for a mistyped command or option in argparse's ``message``."""
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        known = [c for action in parser._actions if action.choices for c in action.choices]
        typed = choice.group(1)
    else:
        unknown = re.search(r"unrecognized arguments: (\S+)", message)
        if not unknown:
            return ""
        known = [s for action in parser._actions for s in action.option_strings]
        typed = unknown.group(1).split("=")[0]
    close = difflib.get_close_matches(typed, [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
