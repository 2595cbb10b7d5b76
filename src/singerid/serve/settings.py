"""The service's settings: one typed object, every default a named constant, checked once."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
MAX_WORKERS_DEFAULT = 4
"""The default number of inference processes is one per core, at most this many."""
DEFAULT_QUEUE = 16
"""Requests that may wait for a free inference process before new ones get 503."""
DEFAULT_MAX_UPLOAD_MB = 50.0
DEFAULT_MAX_SECONDS = 600.0
DEFAULT_TOP = 5
DEFAULT_SEARCH_K = 10
MAX_RESULTS = 100
"""The most candidates or neighbours one request may ask for."""


def default_workers() -> int:
    """One inference process per core, at most :data:`MAX_WORKERS_DEFAULT`."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS_DEFAULT))


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(path: str | os.PathLike) -> str:
    """The bearer token stored in ``path`` (surrounding whitespace ignored); refuse an empty or unreadable file."""
    p = Path(path)
    try:
        token = p.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the token file ({exc}). Write one secret line into it.") from exc
    if len(token) < 16 or any(c.isspace() for c in token):
        raise ConfigError(
            f"{p}: the token must be one line of at least 16 characters without spaces, e.g. from `openssl rand -hex 32`."
        )
    return token


@dataclass(frozen=True)
class ServeSettings:
    """How one ``singerid serve`` process runs.

    ``model`` is a model name or artefact path (as for :func:`singerid.load_model`); ``catalog``
    the catalogue folder (created on first use). ``workers`` inference processes, each running
    torch with ``threads`` threads, serve at most ``workers + queue`` requests at a time; more get
    503 with ``Retry-After``. ``max_upload_mb`` caps one request's body (413), ``max_seconds`` the
    length of each uploaded recording (422). With a ``token``, requests that change the catalogue
    need ``Authorization: Bearer <token>``. ``backend`` is the catalogue's search backend (default:
    the one it was created with; ``exact`` for a new one).
    """

    model: str
    catalog: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    workers: int = 0
    threads: int = 0
    queue: int = DEFAULT_QUEUE
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    max_seconds: float = DEFAULT_MAX_SECONDS
    device: str = "cpu"
    backend: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "catalog", Path(self.catalog))
        if self.workers == 0:
            object.__setattr__(self, "workers", default_workers())
        if self.threads == 0:
            object.__setattr__(self, "threads", max(1, (os.cpu_count() or 1) // self.workers))
        if self.workers < 1 or self.threads < 1 or self.queue < 0:
            raise ConfigError(f"workers={self.workers}, threads={self.threads}, queue={self.queue}: use workers >= 1, threads >= 1, queue >= 0.")
        if self.max_upload_mb <= 0 or self.max_seconds <= 0:
            raise ConfigError("max_upload_mb and max_seconds must be positive.")
        if not 0 < self.port < 65536:
            raise ConfigError(f"port={self.port}: use a port between 1 and 65535.")
        if not is_loopback(self.host) and not self.token:
            raise ConfigError(
                f"host={self.host!r} is reachable from other machines; give a --token-file so that only holders "
                f"of the token can change the catalogue, or bind to {DEFAULT_HOST}."
            )

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def capacity(self) -> int:
        """Requests admitted at once: one running per inference process plus the queue."""
        return self.workers + self.queue
