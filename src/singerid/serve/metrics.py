"""Prometheus text-format metrics: requests, errors and a latency histogram per endpoint.

Endpoints are labelled by their route template (``/v1/singers/{name}``), so the number of series
stays fixed whatever clients send.
"""

from __future__ import annotations

import time
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the latency histogram's buckets."""
OTHER = "other"


class Metrics:
    """Counters and histograms of one service process."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(LATENCY_BUCKETS))
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests[(endpoint, method, status)] += 1
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[endpoint][i] += 1
        self.sums[endpoint] += seconds
        self.counts[endpoint] += 1

    def render(self, extra: list[tuple[str, str, str, float]] = ()) -> str:
        """The exposition text; ``extra`` adds (name, type, help, value) single-value metrics."""
        lines = [
            "# HELP singerid_requests_total HTTP requests by endpoint, method and status.",
            "# TYPE singerid_requests_total counter",
        ]
        for (ep, method, status), n in sorted(self.requests.items()):
            lines.append(f'singerid_requests_total{{endpoint="{ep}",method="{method}",status="{status}"}} {n}')
        lines += [
            "# HELP singerid_request_errors_total HTTP requests answered with a 4xx or 5xx status.",
            "# TYPE singerid_request_errors_total counter",
        ]
        errors: dict[tuple[str, int], int] = defaultdict(int)
        for (ep, _, status), n in self.requests.items():
            if status >= 400:
                errors[(ep, status)] += n
        for (ep, status), n in sorted(errors.items()):
            lines.append(f'singerid_request_errors_total{{endpoint="{ep}",status="{status}"}} {n}')
        lines += [
            "# HELP singerid_request_seconds Time from request to response, by endpoint.",
            "# TYPE singerid_request_seconds histogram",
        ]
        for ep in sorted(self.counts):
            for bound, n in zip(LATENCY_BUCKETS, self.buckets[ep]):
                lines.append(f'singerid_request_seconds_bucket{{endpoint="{ep}",le="{bound:g}"}} {n}')
            lines.append(f'singerid_request_seconds_bucket{{endpoint="{ep}",le="+Inf"}} {self.counts[ep]}')
            lines.append(f'singerid_request_seconds_sum{{endpoint="{ep}"}} {self.sums[ep]:.6f}')
            lines.append(f'singerid_request_seconds_count{{endpoint="{ep}"}} {self.counts[ep]}')
        for name, kind, help_text, value in extra:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value:g}"]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    """ASGI middleware that times every HTTP request and records it in a :class:`Metrics`."""

    def __init__(self, app, metrics: Metrics, known_paths: frozenset[str]) -> None:
        self.app, self.metrics, self.known = app, metrics, known_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def recorded(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recorded)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or (scope["path"] if scope["path"] in self.known else OTHER)
            self.metrics.observe(endpoint, scope["method"], status, time.perf_counter() - start)
