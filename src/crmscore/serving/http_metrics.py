"""Request metrics with bounded labels: the route template (`/v1/customers/{customer_id}`), never the path.

BentoML's own HTTP metrics label every request with its raw path, so each customer id looked up, and each
random path a scanner tries, became a new label set: unbounded memory in every worker, ever larger metric
files, a slow /metrics and customer ids on an open page. The service turns BentoML's HTTP metrics off and
counts requests here instead: label values come from the app's route table (a path no route matches is
"unmatched"), the method from a short list, and the status code; a few dozen label sets in all.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(routes: list[Any], scope: Scope, prefix: str = "") -> str | None:
    """The template of the route that serves this request (method aside), or None. Walks mounted apps and
    FastAPI's included routers (whose routes carry their full path)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:  # FastAPI >= 0.16x wraps an included router; its routes have their paths
            found = route_template(included.routes, scope, prefix)
            if found is not None:
                return found
            continue
        try:
            match, child = route.matches(scope)
        except Exception:  # noqa: BLE001  (a route type that cannot match this scope)
            continue
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = route_template(route.routes, {**scope, **child}, prefix + route.path)
            if inner is not None:
                return inner
            continue
        path = getattr(route, "path", None)
        if path is not None:
            return prefix + path
    return None


class RouteMetrics:
    """Pure ASGI middleware: crmscore_http_requests_total{route, method, status} and
    crmscore_http_request_seconds{route} (created at the first request, once prometheus_client is set up)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.requests: Any = None
        self.seconds: Any = None

    def _setup(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter("crmscore_http_requests", "HTTP requests by route template", ["route", "method", "status"])
        self.seconds = Histogram("crmscore_http_request_seconds", "HTTP request time by route template", ["route"],
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.requests is None:
            self._setup()
        app = scope.get("app")
        route = route_template(getattr(app, "routes", []), scope) or UNMATCHED
        method = scope.get("method", "")
        method = method if method in METHODS else "other"
        start = time.perf_counter()
        status = 500

        async def counted_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        finally:
            self.requests.labels(route, method, str(status)).inc()
            self.seconds.labels(route).observe(time.perf_counter() - start)
