"""Error tracking with the Sentry SDK, on only when ``SENTRY_DSN`` is set.

Events are scrubbed before they leave: request bodies, cookies and the Authorization header are
dropped, stack frames carry no local variables (they hold request scopes, tokens and user text),
and messages/exception values pass through the PII scrubber (``send_default_pii=False`` as well).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)

ENV_DSN = "SENTRY_DSN"
ENV_ENVIRONMENT = "SENTRY_ENVIRONMENT"
ENV_TRACES_RATE = "SENTRY_TRACES_SAMPLE_RATE"


def _before_send(event: Dict[str, Any], _hint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    from nebras_bot.monitoring.logging import scrub_value

    request = event.get("request")
    if isinstance(request, dict):
        request.pop("data", None)
        request.pop("cookies", None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            headers.pop("Authorization", None)
            headers.pop("authorization", None)
    _drop_frame_locals(event)
    for key in ("message", "logentry", "exception", "extra", "breadcrumbs"):
        if key in event:
            event[key] = scrub_value(event[key])
    return event


def _drop_frame_locals(event: Dict[str, Any]) -> None:
    """Remove ``vars`` (local variables) from every stack frame of exceptions and threads."""
    for section in ("exception", "threads"):
        block = event.get(section)
        values = block.get("values") if isinstance(block, dict) else None
        for value in values or []:
            frames = ((value or {}).get("stacktrace") or {}).get("frames") or []
            for frame in frames:
                if isinstance(frame, dict):
                    frame.pop("vars", None)


def init_sentry(component: str, release: Optional[str] = None) -> bool:
    """Initialise Sentry for ``component`` when ``SENTRY_DSN`` is set; returns whether it did."""
    dsn = os.environ.get(ENV_DSN, "").strip()
    if not dsn:
        return False
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=os.environ.get(ENV_ENVIRONMENT, "production"),
        release=release,
        traces_sample_rate=float(os.environ.get(ENV_TRACES_RATE, "0") or 0),
        send_default_pii=False,
        with_locals=False,
        before_send=_before_send,
    )
    sentry_sdk.set_tag("component", component)
    logger.info("Sentry error tracking enabled for %s", component)
    return True
