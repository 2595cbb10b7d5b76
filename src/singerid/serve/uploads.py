"""Uploaded audio: written to server-named temporary files, checked, and always removed.

A client's file name is used only in messages and as a display name; it never becomes a path.
Errors name the client's file, never the server's temporary path.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

from fastapi import UploadFile

from ..audio import audio_info
from ..errors import AudioError, SingerIdError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".w64", ".caf", ".webm"})
"""Suffixes kept on the temporary file (some decoders look at them); others are dropped."""
CHUNK_BYTES = 1 << 20
MAX_NAME_CHARS = 100


def display_name(filename: str | None) -> str:
    """A safe, short name for a client's file: its last path part, printable characters only."""
    name = re.sub(r"[^\w.\- ()+,]", "_", Path(filename or "").name).strip(" .")
    return (name or "upload")[:MAX_NAME_CHARS]


@dataclass(frozen=True)
class Upload:
    """One uploaded file: the client's (display) name and the server-named temporary path."""

    name: str
    path: Path
    seconds: float


def public_message(exc: BaseException, uploads: Sequence[Upload]) -> str:
    """``exc``'s one-line message with every temporary path replaced by the client's file name."""
    text = str(exc)
    for u in uploads:
        text = text.replace(str(u.path), u.name)
    return text.splitlines()[0] if text else type(exc).__name__


class UploadError(SingerIdError):
    """An uploaded file that cannot be used (422), with a message naming the client's file."""


class UploadDir:
    """A private temporary folder for uploads; removed with everything in it by :meth:`close`."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self.root = Path(tempfile.mkdtemp(prefix="singerid-serve-"))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    async def _save(self, file: UploadFile) -> Upload:
        name = display_name(file.filename)
        suffix = Path(name).suffix.lower()
        fd, tmp = tempfile.mkstemp(prefix="upload-", suffix=suffix if suffix in AUDIO_SUFFIXES else "", dir=self.root)
        path = Path(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := await file.read(CHUNK_BYTES):
                    out.write(chunk)
            try:
                info = audio_info(path)
            except AudioError as exc:
                raise UploadError(public_message(exc, [Upload(name, path, 0.0)])) from exc
            if info.duration > self.max_seconds:
                raise UploadError(
                    f"{name}: {info.duration:.0f} s is longer than this service accepts ({self.max_seconds:g} s); "
                    "send a shorter excerpt, or ask the operator to raise --max-seconds."
                )
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Upload(name, path, info.duration)

    @contextlib.asynccontextmanager
    async def saved(self, files: Sequence[UploadFile]) -> AsyncIterator[list[Upload]]:
        """Write ``files`` to temporary files for the ``with`` block, then remove them whatever happens."""
        uploads: list[Upload] = []
        try:
            for f in files:
                uploads.append(await self._save(f))
            yield uploads
        finally:
            for u in uploads:
                u.path.unlink(missing_ok=True)
