"""A tiny model hub on 127.0.0.1 answering the file endpoints ``huggingface_hub`` downloads through.

``HEAD``/``GET /{owner}/{repo}/resolve/{revision}/{path}`` answer as the Hugging Face hub does:
``X-Repo-Commit``, an ``ETag`` (git blob SHA-1 for small files; for large ones ``X-Linked-Etag``
with the SHA-256, as for LFS files), ``Content-Length``, and ``X-Error-Code`` on 404s
(``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``). ``status`` makes every answer that
HTTP status; ``delay`` holds every answer that many seconds. ``requests`` logs what was asked.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path
from urllib.parse import unquote

LFS_THRESHOLD = 1024
"""Files at least this large are served as LFS files (SHA-256 ETag)."""


class HubServer:
    """Serve ``repos`` ({"owner/name": {"relative/path": bytes}}) at ``self.url`` with one commit per repo."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        self.repos = repos
        self.status: int | None = None
        self.delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self.commits = {repo: hashlib.sha1(repo.encode()).hexdigest() for repo in repos}
        handler = _handler(self)
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(hub: HubServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _error(self, status: int, code: str | None = None, commit: str | None = None) -> None:
            self.send_response(status)
            if code:
                self.send_header("X-Error-Code", code)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _answer(self, body: bool) -> None:
            hub.requests.append((self.command, self.path))
            if hub.delay:
                time.sleep(hub.delay)
            if hub.status is not None:
                return self._error(hub.status)
            parts = unquote(self.path.split("?")[0]).lstrip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404)
            repo, revision, rel = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo not in hub.repos:
                return self._error(404, "RepoNotFound")
            commit = hub.commits[repo]
            if revision not in ("main", commit):
                return self._error(404, "RevisionNotFound")
            data = hub.repos[repo].get(rel)
            if data is None:
                return self._error(404, "EntryNotFound", commit)
            start = 0
            rng = self.headers.get("Range")
            if body and rng and rng.startswith("bytes="):
                start = int(rng[len("bytes="):].split("-")[0] or 0)
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", commit)
            if len(data) >= LFS_THRESHOLD:
                sha = hashlib.sha256(data).hexdigest()
                self.send_header("ETag", f'"{sha}"')
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
            else:
                self.send_header("ETag", f'"{hashlib.sha1(b"blob %d" % len(data) + bytes(1) + data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            if body:
                self.wfile.write(data[start:])

    return Handler


def use_hub(monkeypatch, url: str, tmp_path: Path) -> dict[str, str]:
    """Point ``huggingface_hub`` (this process and child processes) at ``url``, with caches under ``tmp_path``.

    Returns the environment variables set, for subprocesses.
    """
    from huggingface_hub import constants

    env = {
        "HF_ENDPOINT": url,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(tmp_path / "hf" / "hub"),
        "SINGERID_HOME": str(tmp_path / "singerid"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # huggingface_hub reads these once, at import; patch its copies for this process.
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", env["HF_HUB_CACHE"])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return env


def go_offline(monkeypatch) -> None:
    """``HF_HUB_OFFLINE=1`` for this process and its children."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
