"""Bearer-token auth, per-sender rate limiting and request-size limits."""
from __future__ import annotations

import hmac
import json
import threading
import time
from typing import Dict, Optional, Tuple

from fastapi import Request
from fastapi.exceptions import HTTPException

from nebras_bot.serving.settings import ServingSettings


def token_matches(expected: Optional[str], authorization: Optional[str]) -> bool:
    """True when auth is off (no expected token) or ``authorization`` is ``Bearer <expected>``.

    Compared in constant time (``hmac.compare_digest``) so timing tells nothing about the token.
    """
    if not expected:
        return True
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


def require_token(request: Request) -> None:
    """FastAPI dependency for every route except health, readiness, metrics and the page."""
    settings: ServingSettings = request.app.state.settings
    if not token_matches(settings.api_token, request.headers.get("authorization")):
        raise HTTPException(
            status_code=401,
            detail="missing or invalid bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )


class RateLimiter:
    """Token bucket per key (the sender id): ``per_minute`` sustained, ``burst`` at once."""

    def __init__(self, per_minute: int, burst: int, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self.max_keys = max_keys
        self._buckets: Dict[str, Tuple[float, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key: str, now: Optional[float] = None) -> float:
        """0.0 when allowed; otherwise the seconds to wait before the next request is allowed."""
        if not self.enabled:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:  # forget the oldest half
                    for old in sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self.max_keys // 2]:
                        del self._buckets[old]
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate


def check_rate(request: Request, sender_id: str) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.acquire(sender_id)
    if wait > 0:
        raise HTTPException(
            status_code=429,
            detail=f"too many messages from this sender; retry in {wait:.1f} s",
            headers={"Retry-After": str(max(1, int(wait + 0.999)))},
        )


def check_message_length(settings: ServingSettings, text: str) -> None:
    if len(text) > settings.max_message_chars:
        raise HTTPException(
            status_code=422,
            detail=[{
                "loc": ["body", "message"],
                "msg": f"message is {len(text)} characters; the limit is {settings.max_message_chars}",
                "type": "value_error.message_too_long",
            }],
        )


class BodySizeLimitMiddleware:
    """Pure ASGI middleware: 413 for a body over ``max_bytes`` (declared or actually streamed)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._reject(send)
                return

        # Read the body first (it is small: at most max_bytes), so that a streamed body without
        # Content-Length over the limit is a 413 too: an error raised from inside `receive` would be
        # reported by FastAPI's body parser as a 400.
        messages = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break

        async def replay_receive():
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay_receive, send)

    async def _reject(self, send) -> None:
        body = json.dumps({"detail": f"request body over the limit of {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
