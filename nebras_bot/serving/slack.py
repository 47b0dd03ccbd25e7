"""Slack channel: Rasa's ``SlackInput`` with a configurable API base URL and retry de-duplication.

Registered in ``credentials.yml`` as ``nebras_bot.serving.slack.NebrasSlackInput`` (route
``/webhooks/slack/webhook``). Additions over Rasa's channel:

- ``slack_api_url`` — the Web API base (default ``https://slack.com/api/``); tests point it at a
  local fake Slack server.
- Slack re-sends an event (``X-Slack-Retry-Num``) when the first delivery was not acknowledged in
  3 s. Every event id is remembered for ``dedup_ttl_s``; a delivery of an event already seen is
  acknowledged with ``X-Slack-No-Retry: 1`` and not answered again.
- Signatures are checked by Rasa's code (``X-Slack-Signature``, HMAC-SHA256 with the signing
  secret, compared in constant time, 5-minute replay window): a bad one is rejected with 400.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from rasa.core.channels.channel import OutputChannel, UserMessage
from sanic import Blueprint
from rasa.core.channels.slack import SlackBot, SlackInput
from sanic import response
from sanic.request import Request
from slack_sdk.web.async_client import AsyncWebClient

from nebras_bot.monitoring import metrics

logger = logging.getLogger(__name__)

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
ENV_KEYS = {"slack_token": "SLACK_TOKEN", "slack_signing_secret": "SLACK_SIGNING_SECRET",
            "slack_channel": "SLACK_CHANNEL", "slack_api_url": "SLACK_API_URL"}
DEFAULT_DEDUP_TTL_S = 3600.0
RETRY_NUM_HEADER = "x-slack-retry-num"


class SeenEvents:
    """A bounded, thread-safe set of recently seen ids with a time-to-live."""

    def __init__(self, ttl_s: float = DEFAULT_DEDUP_TTL_S, max_size: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._seen: "OrderedDict[str, float]" = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str, now: Optional[float] = None) -> bool:
        """True the first time ``key`` is offered within the TTL (and remembers it)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._seen and (next(iter(self._seen.values())) < now - self.ttl_s
                                  or len(self._seen) > self.max_size):
                self._seen.popitem(last=False)
            if key in self._seen:
                return False
            self._seen[key] = now
            return True


class NebrasSlackBot(SlackBot):
    """Rasa's Slack output with the Web API base URL set."""

    def __init__(self, token: Text, slack_channel: Optional[Text] = None, thread_id: Optional[Text] = None,
                 proxy: Optional[Text] = None, api_url: Text = DEFAULT_SLACK_API_URL) -> None:
        super().__init__(token, slack_channel, thread_id, proxy)
        self.client = AsyncWebClient(token, base_url=api_url, proxy=proxy)


class NebrasSlackInput(SlackInput):
    @classmethod
    def name(cls) -> Text:
        return "slack"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> "NebrasSlackInput":
        """Keys from ``credentials.yml``; missing ones from the environment (``ENV_KEYS``).

        Without a token and a signing secret the channel is registered but disabled: its webhook
        answers 503 and says which variables to set (so `rasa run` starts without Slack set up).
        """
        credentials = dict(credentials or {})
        for key, variable in ENV_KEYS.items():
            if not credentials.get(key) and os.environ.get(variable):
                credentials[key] = os.environ[variable]
        enabled = bool(credentials.get("slack_token") and credentials.get("slack_signing_secret"))
        if not enabled:
            logger.warning("Slack channel disabled: set SLACK_TOKEN and SLACK_SIGNING_SECRET to enable it")
            credentials.setdefault("slack_signing_secret", "disabled")
            credentials["slack_signing_secret"] = credentials["slack_signing_secret"] or "disabled"
        channel = super().from_credentials(credentials)
        channel.enabled = enabled
        channel.api_url = credentials.get("slack_api_url") or DEFAULT_SLACK_API_URL
        channel.seen_events = SeenEvents(float(credentials.get("dedup_ttl_s") or DEFAULT_DEDUP_TTL_S))
        return channel  # type: ignore[return-value]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.enabled = True
        self.api_url = DEFAULT_SLACK_API_URL
        self.seen_events = SeenEvents()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        if self.enabled:
            return super().blueprint(on_new_message)
        return disabled_blueprint("slack_webhook", "Slack", "SLACK_TOKEN and SLACK_SIGNING_SECRET")

    async def process_message(self, request: Request, on_new_message: Callable[[UserMessage], Awaitable[Any]],
                              text: Text, sender_id: Optional[Text], metadata: Optional[Dict]) -> Any:
        event_id = _event_id(request)
        if event_id and not self.seen_events.first_time(event_id):
            metrics.REQUESTS.labels(route="/webhooks/slack/webhook", status="duplicate").inc()
            return response.text("", status=HTTPStatus.OK, headers={"X-Slack-No-Retry": "1"})
        return await super().process_message(request, on_new_message, text, sender_id, metadata)

    def get_output_channel(self, channel: Optional[Text] = None, thread_id: Optional[Text] = None) -> OutputChannel:
        channel = channel or self.slack_channel
        return NebrasSlackBot(self.slack_token, channel, thread_id, self.proxy, api_url=self.api_url)


def _event_id(request: Request) -> Optional[str]:
    """Slack's ``event_id`` (Events API); for interactive payloads, the action timestamp."""
    try:
        if request.headers.get("content-type") == "application/json":
            return (request.json or {}).get("event_id")
        import json

        payload = json.loads(request.form["payload"][0])
        actions = payload.get("actions") or [{}]
        ts = actions[0].get("action_ts")
        return f"{payload.get('user', {}).get('id')}:{ts}" if ts else None
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def disabled_blueprint(name: str, label: str, variables: str) -> Blueprint:
    """Routes of a channel that is not configured: 503 with what to set."""
    blueprint = Blueprint(f"{name}_disabled", __name__)

    @blueprint.route("/", methods=["GET"])
    async def health(_: Request) -> Any:
        return response.json({"status": "disabled"}, status=HTTPStatus.SERVICE_UNAVAILABLE)

    @blueprint.route("/webhook", methods=["GET", "POST"])
    async def webhook(_: Request) -> Any:
        return response.json({"detail": f"{label} channel not configured: set {variables}"},
                             status=HTTPStatus.SERVICE_UNAVAILABLE)

    return blueprint
