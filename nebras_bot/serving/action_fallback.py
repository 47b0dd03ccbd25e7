"""What the assistant does while the action server is down.

Rasa, left alone, logs "Failed to execute custom action" and sends the user nothing. ``nebras
serve`` wraps the action endpoint in :class:`ResilientActionEndpoint` instead: when the action
server cannot be reached (connection refused, reset, timed out, 5xx),

- a ticket request (``action_create_ticket``, ``action_handoff``) is kept in the support database's
  ticket outbox, built from the tracker exactly as the action server would build it (same
  idempotency key), and the user gets a clear apology saying the request is kept. The action server
  files kept requests on its first action after it is back
  (``nebras_bot.support.service.SupportService.deliver_outbox``); the idempotency key makes a retry
  by the user, or a second delivery, find the same ticket instead of creating another;
- a form validation (``validate_*``) is skipped: the slots Rasa extracted stay, the form goes on;
- any other action answers with an apology and changes nothing.
"""
from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Dict, List, Optional, Text

import aiohttp
from rasa.utils.endpoints import ClientResponseError, EndpointConfig

from nebras_bot.monitoring import metrics

logger = logging.getLogger(__name__)

TICKET_ACTION = "action_create_ticket"
HANDOFF_ACTION = "action_handoff"
VALIDATION_PREFIX = "validate_"
DESCRIPTION_SLOT = "ticket_description"
EMAIL_SLOT = "email"
ORDER_ID_SLOT = "order_id"
UNAVAILABLE_TEXT = ("I'm sorry, I can't reach the system that handles this right now. Please try again in a few "
                    "minutes.")
KEEP_FAILED_TEXT = ("I'm sorry, our support system is unavailable right now and I could not save your request. "
                    "Please try again in a few minutes.")


def _unreachable(error: BaseException) -> bool:
    if isinstance(error, ClientResponseError):
        return error.status >= 500
    return isinstance(error, (aiohttp.ClientConnectionError, asyncio.TimeoutError))


def _bot(text: str) -> Dict[str, Any]:
    return {"text": text}


def keep_ticket_request(body: Dict[str, Any]) -> Optional[str]:
    """Put the ticket request of this action call into the outbox; the text to send the user."""
    from nebras_bot.support import replies
    from nebras_bot.support.outbox import Outbox
    from nebras_bot.support.service import handoff_description, ticket_request
    from nebras_bot.support.tickets import ORIGIN_FORM, ORIGIN_HANDOFF

    action = body.get("next_action")
    tracker = body.get("tracker") or {}
    events: List[Dict[str, Any]] = list(tracker.get("events") or [])
    slots: Dict[str, Any] = tracker.get("slots") or {}
    intent = ((tracker.get("latest_message") or {}).get("intent") or {}).get("name")
    if action == HANDOFF_ACTION:
        origin, description = ORIGIN_HANDOFF, handoff_description(events)
    else:
        origin, description = ORIGIN_FORM, slots.get(DESCRIPTION_SLOT)
        if not description:
            return "I need a short description of the problem to open a ticket."
    request = ticket_request(sender_id=str(tracker.get("sender_id") or body.get("sender_id") or ""), events=events,
                             description=str(description), email=slots.get(EMAIL_SLOT),
                             order_id=slots.get(ORDER_ID_SLOT), origin=origin, intent=intent)
    try:
        Outbox().put(request)
    except Exception:  # noqa: BLE001 - the database is down too: say so, do not pretend
        logger.exception("could not keep the ticket request in the outbox")
        metrics.ERRORS.labels(component="outbox").inc()
        return KEEP_FAILED_TEXT
    logger.warning("action server down: ticket request kept in the outbox (%s)", origin)
    return replies.handoff_failed() if origin == ORIGIN_HANDOFF else replies.ticket_failed()


def fallback_response(body: Dict[str, Any]) -> Dict[str, Any]:
    """The action server's answer, as ``nebras serve`` makes it up while the server is down."""
    action = str(body.get("next_action") or "")
    if action.startswith(VALIDATION_PREFIX):
        return {"events": [], "responses": []}
    if action in (TICKET_ACTION, HANDOFF_ACTION):
        text = keep_ticket_request(body)
        events = [{"event": "slot", "name": DESCRIPTION_SLOT, "value": None}] if action == TICKET_ACTION else []
        return {"events": events, "responses": [_bot(text)]}
    return {"events": [], "responses": [_bot(UNAVAILABLE_TEXT)]}


# At most this many action calls in flight per server process: rasa_sdk runs actions one at a time
# on its event loop, and a flood of simultaneous connections makes it drop them ("Cannot write to
# closing transport"); waiting here instead costs nothing the action server could have used.
MAX_CONCURRENT_ACTION_CALLS = 16
# A call whose connection was dropped before the request was written is retried this many times.
DROPPED_CONNECTION_RETRIES = 2
RETRY_DELAY_S = 0.5


def _dropped_connection(error: BaseException) -> bool:
    """The server accepted and dropped the connection (not: refused it, i.e. it is down)."""
    if isinstance(error, aiohttp.ClientConnectorError):
        return False
    return isinstance(error, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError))


class ResilientActionEndpoint(EndpointConfig):
    """The action endpoint with the fallbacks above when the action server is unreachable."""

    _limits: "weakref.WeakKeyDictionary[Any, asyncio.Semaphore]" = weakref.WeakKeyDictionary()

    def _limit(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._limits.get(loop)
        if semaphore is None:
            semaphore = self._limits[loop] = asyncio.Semaphore(MAX_CONCURRENT_ACTION_CALLS)
        return semaphore

    async def _request_with_retries(self, *args: Any, **kwargs: Any) -> Optional[Any]:
        async with self._limit():
            for attempt in range(DROPPED_CONNECTION_RETRIES + 1):
                try:
                    return await super().request(*args, **kwargs)
                except Exception as error:  # noqa: BLE001 - filtered right below
                    if attempt == DROPPED_CONNECTION_RETRIES or not _dropped_connection(error):
                        raise
                    logger.warning("action server dropped the connection (%s); retrying", error)
                    await asyncio.sleep(RETRY_DELAY_S * (attempt + 1))
        return None  # pragma: no cover - the loop returns or raises

    @classmethod
    def wrap(cls, endpoint: Optional[EndpointConfig]) -> Optional[EndpointConfig]:
        if endpoint is None or isinstance(endpoint, cls):
            return endpoint
        wrapped = cls(endpoint.url, endpoint.params, endpoint.headers, endpoint.basic_auth, endpoint.token,
                      endpoint.token_name, endpoint.cafile, **endpoint.kwargs)
        wrapped.type = endpoint.type
        return wrapped

    async def request(self, method: Text = "post", subpath: Optional[Text] = None,
                      content_type: Optional[Text] = "application/json", compress: bool = False,
                      **kwargs: Any) -> Optional[Any]:
        try:
            return await self._request_with_retries(method, subpath, content_type, compress, **kwargs)
        except Exception as error:  # noqa: BLE001 - filtered right below
            body = kwargs.get("json")
            if not isinstance(body, dict) or "next_action" not in body or not _unreachable(error):
                raise
            logger.error("action server %s unreachable for %s (%s: %s): answering without it",
                         self.url, body.get("next_action"), type(error).__name__, error)
            metrics.ERRORS.labels(component="action_server").inc()
            return fallback_response(body)
