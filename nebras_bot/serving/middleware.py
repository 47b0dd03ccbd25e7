"""Request metrics, request ids and access logs (pure ASGI, cheap on the hot path)."""
from __future__ import annotations

import time
import uuid

from nebras_bot.monitoring import metrics
from nebras_bot.monitoring.logging import bind_context, get_logger

REQUEST_ID_HEADER = b"x-request-id"
_UNMATCHED_ROUTE = "unmatched"

log = get_logger("nebras.serving.access")


def route_label(scope) -> str:
    """The route template (``/v1/tickets/{ticket_id}``), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path or _UNMATCHED_ROUTE


class ObservabilityMiddleware:
    """Counts and times every request by route and status; binds and returns ``X-Request-ID``."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw_id = headers.get(REQUEST_ID_HEADER, b"").decode("latin-1")[:64]
        request_id = raw_id if raw_id and raw_id.replace("-", "").isalnum() else uuid.uuid4().hex
        status = 500
        start = time.perf_counter()

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(REQUEST_ID_HEADER, request_id.encode())]
            await send(message)

        with bind_context(request_id=request_id):
            try:
                await self.app(scope, receive, send_with_id)
            except Exception:
                metrics.ERRORS.labels(component="http").inc()
                raise
            finally:
                elapsed = time.perf_counter() - start
                route = route_label(scope)
                metrics.REQUESTS.labels(route=route, status=str(status)).inc()
                metrics.REQUEST_LATENCY.labels(route=route).observe(elapsed)
                if route not in ("/healthz", "/readyz", "/metrics"):
                    log.info("request", method=scope.get("method"), route=route, status=status,
                             ms=round(elapsed * 1000, 1))
