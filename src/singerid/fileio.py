"""Crash-safe file output: atomic writes that survive power loss, output locks and job settings.

Writes go to a temporary file beside the target, which is flushed to disk (``fsync``) and then
renamed over the target; the folder is flushed too so the rename itself is durable. A replaced
file keeps its permissions (profiles set to 0600 stay 0600); a new one gets the usual ones
(``0666`` less the umask, applied by the kernel).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator, Mapping

from .errors import OutputError

SETTINGS_FILE = "settings.json"
"""Name of the file that records the settings of a job beside its partial outputs."""


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's) data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp(target: Path, suffix: str) -> Path:
    """Create an empty temporary file beside ``target``; the kernel applies the umask to its mode."""
    for _ in range(100):
        tmp = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise OutputError(f"{target}: cannot create a temporary file beside it.")  # pragma: no cover


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; flush it and rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written output. ``suffix`` defaults to the target's own
    suffix, which libraries that pick a format from the file name need.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        raise IsADirectoryError(0, "Is a directory", str(target))
    tmp_path = _new_temp(target, target.suffix if suffix is None else suffix)
    try:
        if target.exists():
            os.chmod(tmp_path, stat.S_IMODE(target.stat().st_mode))
        yield tmp_path
        fsync_path(tmp_path)
        os.replace(tmp_path, target)
        fsync_path(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` to ``path`` (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<path>.lock`` while a job writes ``path``; a second job on the same output is refused.

    The lock is an OS file lock, so it is released when the process dies (even by SIGKILL). The
    lock file is removed on release; a job that locked a file removed meanwhile locks again, so
    two jobs never both hold it.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = target.with_name(target.name + ".lock")
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: filelock's lock, whose file stays
        from filelock import FileLock, Timeout

        lock = FileLock(lock_file, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise _busy(target, lock_file) from None
        try:
            yield lock_file
        finally:
            lock.release()
        return
    while True:
        fd = os.open(lock_file, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _busy(target, lock_file) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed it on release: lock the new file
    try:
        yield lock_file
    finally:
        lock_file.unlink(missing_ok=True)
        os.close(fd)


def _busy(target: Path, lock_file: Path) -> OutputError:
    return OutputError(
        f"{target}: another singerid run is writing this output (it holds {lock_file}); "
        "wait for it to finish or choose another --out."
    )


def check_settings(folder: str | os.PathLike, settings: Mapping[str, Any]) -> None:
    """Record a job's ``settings`` in ``folder``, or refuse when partial work there used other ones.

    Raises :class:`~singerid.errors.OutputError` naming the settings that differ, so a resumed
    job never mixes outputs made with different settings.
    """
    folder = Path(folder)
    file = folder / SETTINGS_FILE
    wanted = json.loads(json.dumps(dict(settings)))  # the form they take once stored
    if file.is_file():
        try:
            stored = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            stored = None
        if not isinstance(stored, dict):
            raise OutputError(f"{file}: damaged job settings; delete {folder} to start over.")
        differing = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if differing:
            changes = ", ".join(f"{k} {stored.get(k)!r} -> {wanted.get(k)!r}" for k in differing)
            raise OutputError(
                f"{folder}: partial work there was made with other settings ({changes}); "
                f"re-run with the same settings, or delete {folder} to start over."
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    write_text(file, json.dumps(wanted, indent=2, sort_keys=True) + "\n")


def read_text(path: str | os.PathLike, fix: str) -> str:
    """A user's text file (manifest, trial list, pairs) as UTF-8, a byte-order mark dropped.

    Spreadsheet programs write CSVs with a byte-order mark; it must not become part of the first
    column's name. Text that is not UTF-8 raises :class:`~singerid.errors.DatasetError` naming the
    file, the byte and ``fix``.
    """
    from .errors import DatasetError

    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8. {fix}".rstrip()) from None
