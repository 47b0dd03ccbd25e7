"""The `/v1/chat` contract as a Rasa input channel, for ``rasa run``.

In ``credentials.yml``::

    nebras_bot.serving.channel.NebrasChannel:
      # all optional; the NEBRAS_* environment variables (ServingSettings) apply otherwise
      max_message_chars: 2000

Routes (under Rasa's ``/webhooks/nebras``): ``POST /v1/chat``, ``POST /v1/chat/stream``, ``GET /``.
Same bodies, auth (``NEBRAS_API_TOKEN``), limits and errors as ``nebras serve``, so one client
works with both servers: only the base URL differs.
"""
from __future__ import annotations

import json
import time
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from pydantic import ValidationError
from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from nebras_bot.monitoring import metrics
from nebras_bot.monitoring.logging import bind_context
from nebras_bot.serving import turns
from nebras_bot.serving.agent import default_model_version
from nebras_bot.serving.schemas import ChatRequest, ChatResponse
from nebras_bot.serving.security import RateLimiter, token_matches
from nebras_bot.serving.settings import CHANNEL_NAME, ServingSettings

ROUTE_PREFIX = "/webhooks/nebras"


class NebrasChannel(InputChannel):
    """Rasa channel serving ``POST /webhooks/nebras/v1/chat`` (and ``/v1/chat/stream``)."""

    @classmethod
    def name(cls) -> Text:
        return CHANNEL_NAME

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "NebrasChannel":
        overrides = {k: v for k, v in (credentials or {}).items() if v is not None}
        return cls(ServingSettings(**overrides))

    def __init__(self, settings: Optional[ServingSettings] = None) -> None:
        self.settings = settings or ServingSettings()
        self.rate_limiter = RateLimiter(self.settings.rate_limit_per_minute, self.settings.rate_limit_burst)

    # -- request checks, mirroring the FastAPI app's status codes and bodies --
    def _reject(self, request: Request) -> Optional[HTTPResponse]:
        if not token_matches(self.settings.api_token, request.headers.get("authorization")):
            return response.json({"detail": "missing or invalid bearer token"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
        if len(request.body or b"") > self.settings.max_body_bytes:
            return response.json(
                {"detail": f"request body over the limit of {self.settings.max_body_bytes} bytes"}, status=413)
        return None

    def _parse(self, request: Request) -> "tuple[Optional[ChatRequest], Optional[HTTPResponse]]":
        try:
            payload = json.loads(request.body or b"")
        except ValueError:
            return None, response.json({"detail": [{"loc": ["body"], "msg": "body is not valid JSON",
                                                    "type": "value_error.jsondecode"}]}, status=422)
        try:
            body = ChatRequest.parse_obj(payload)
        except ValidationError as error:
            return None, response.json({"detail": json.loads(error.json())}, status=422)
        if len(body.message) > self.settings.max_message_chars:
            return None, response.json({"detail": [{
                "loc": ["body", "message"],
                "msg": f"message is {len(body.message)} characters; the limit is {self.settings.max_message_chars}",
                "type": "value_error.message_too_long"}]}, status=422)
        wait = self.rate_limiter.acquire(body.sender_id)
        if wait > 0:
            return None, response.json(
                {"detail": f"too many messages from this sender; retry in {wait:.1f} s"}, status=429,
                headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        return body, None

    def _model_version(self, agent: Any) -> str:
        if getattr(self, "_cached_version", None) is None or self._cached_agent is not agent:
            self._cached_agent = agent
            self._cached_version = default_model_version(agent)
        return self._cached_version

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        blueprint = Blueprint(f"nebras_channel_{id(self)}", __name__)

        @blueprint.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        async def checked(request: Request, route: str) -> "tuple[Optional[ChatRequest], Optional[HTTPResponse]]":
            rejected = self._reject(request)
            if rejected is not None:
                metrics.REQUESTS.labels(route=route, status=str(rejected.status)).inc()
                return None, rejected
            body, error = self._parse(request)
            if error is not None:
                metrics.REQUESTS.labels(route=route, status=str(error.status)).inc()
            return body, error

        @blueprint.route("/v1/chat", methods=["POST"])
        async def chat(request: Request) -> HTTPResponse:
            route = ROUTE_PREFIX + "/v1/chat"
            start = time.perf_counter()
            body, error = await checked(request, route)
            if error is not None:
                return error
            agent = request.app.ctx.agent
            with bind_context(sender_id=body.sender_id):
                try:
                    result = await turns.handle_turn(on_new_message, agent, body.sender_id, body.message,
                                                     CHANNEL_NAME, metadata=body.metadata,
                                                     default_model_version=self._model_version(agent))
                except Exception:
                    metrics.ERRORS.labels(component="chat").inc()
                    metrics.REQUESTS.labels(route=route, status="500").inc()
                    raise
            metrics.REQUESTS.labels(route=route, status="200").inc()
            metrics.REQUEST_LATENCY.labels(route=route).observe(time.perf_counter() - start)
            return response.json(ChatResponse.parse_obj(result).dict())

        @blueprint.route("/v1/chat/stream", methods=["POST"])
        async def chat_stream(request: Request) -> Any:
            route = ROUTE_PREFIX + "/v1/chat/stream"
            body, error = await checked(request, route)
            if error is not None:
                return error
            agent = request.app.ctx.agent
            metrics.REQUESTS.labels(route=route, status="200").inc()

            async def run(output: turns.CollectingChannel) -> Dict[str, Any]:
                with bind_context(sender_id=body.sender_id):
                    return await turns.handle_turn(on_new_message, agent, body.sender_id, body.message,
                                                   CHANNEL_NAME, metadata=body.metadata, output=output,
                                                   default_model_version=self._model_version(agent))

            stream = await request.respond(content_type="text/event-stream",
                                           headers={"Cache-Control": "no-cache"})
            async for event in turns.stream_turn(run, CHANNEL_NAME):
                await stream.send(event)
            await stream.eof()
            return None

        return blueprint
