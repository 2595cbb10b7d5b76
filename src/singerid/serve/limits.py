"""Limits and access: request body cap (413), bounded admission (503 + Retry-After), bearer token.

The two limits are plain ASGI middleware, so they act before a request body is parsed: an
oversized upload is cut off as it arrives, and a request the pool has no room for is refused
before its upload is read at all.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from typing import Callable

from fastapi import HTTPException, Request

INFERENCE_PATHS = frozenset({"/v1/embed", "/v1/verify", "/v1/identify", "/v1/search", "/v1/enroll"})
"""Requests that run the model and so need a place in the pool."""
LATENCY_SMOOTHING = 0.2
"""Weight of the newest request in the running mean used to estimate Retry-After."""


async def _send_json(send: Callable, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a request body over ``max_bytes``: at once from ``Content-Length``, else while it streams in."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return (
            f"the upload is larger than this service accepts ({self.max_bytes / 2**20:g} MB per request); "
            "send a shorter or compressed recording (FLAC), or ask the operator to raise --max-upload-mb."
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_json(send, 413, self._message(), {"Connection": "close"})
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's form parsing unchanged.
                    raise HTTPException(413, self._message(), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)


class Gate:
    """At most ``capacity`` model requests at once (``workers`` running, the rest queued); more get 503.

    ``Retry-After`` is the expected wait for a place: the running mean of a request's duration times
    the number of requests ahead per process.
    """

    def __init__(self, capacity: int, workers: int) -> None:
        self.capacity, self.workers = capacity, workers
        self.active = 0
        self.rejected = 0
        self.mean_seconds = 1.0

    def retry_after(self) -> int:
        return max(1, math.ceil(self.mean_seconds * (self.active - self.workers + 1) / self.workers))


class Admission:
    """ASGI middleware that lets model requests through a :class:`Gate`."""

    def __init__(self, app, gate: Gate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope, receive, send) -> None:
        gate = self.gate
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in INFERENCE_PATHS:
            return await self.app(scope, receive, send)
        if gate.active >= gate.capacity:
            gate.rejected += 1
            wait = gate.retry_after()
            return await _send_json(
                send, 503, f"the service is busy ({gate.active} requests in progress); retry in {wait} s.", {"Retry-After": str(wait)}
            )
        gate.active += 1
        start = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            gate.active -= 1
            gate.mean_seconds += LATENCY_SMOOTHING * (time.monotonic() - start - gate.mean_seconds)


def bearer_check(token: str | None) -> Callable[[Request], None]:
    """A FastAPI dependency: with a ``token``, the request must carry ``Authorization: Bearer <token>``."""

    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise HTTPException(401, "this request changes the catalogue and needs 'Authorization: Bearer <token>'.",
                                headers={"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(403, "the bearer token is not the one this service was started with.")

    return check
