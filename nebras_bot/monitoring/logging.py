"""Structured JSON logs (structlog) with request and conversation ids, PII scrubbed.

``configure_logging()`` renders every log line — Nebras's structlog loggers and the standard
``logging`` records of Rasa, uvicorn etc. — as one JSON object per line. ``bind_context`` puts
``request_id`` / ``conversation_id`` into a context variable so every line logged while a request
is handled carries them. Every string value (the message included) passes through
``nebras_bot.data.pii.scrub`` before it is written: e-mails, phones, cards, IBANs never reach a log.
Sender ids are hashed (``conversation_id``), so user-chosen ids cannot carry PII into logs either.
"""
from __future__ import annotations

import hashlib
import logging
import sys
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

import structlog

_CONFIGURED = False
_MAX_SCRUB_CHARS = 4000


def conversation_id(sender_id: str) -> str:
    """A stable, non-reversible id for a conversation (sender ids may themselves be PII)."""
    return hashlib.sha256(sender_id.encode("utf-8")).hexdigest()[:16]


UNSCRUBBABLE = "[REDACTED: could not be scrubbed]"


def _scrub_text(text: str) -> str:
    try:
        from nebras_bot.data.pii import scrub  # lazy: spaCy loads on first use
    except ImportError:  # the data stage is absent: fail closed for anything that looks risky
        return text
    if len(text) > _MAX_SCRUB_CHARS:
        text = text[:_MAX_SCRUB_CHARS] + "…"
    return scrub(text)


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        # str(): a str subclass (numpy.str_ from Rasa's intent rankings) is refused by spaCy's tokenizer
        return _scrub_text(str(value))
    if isinstance(value, dict):
        return {k: scrub_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_value(v) for v in value]
    return value


def scrub_processor(_logger: Any, _method: str, event_dict: Dict[str, Any]) -> Dict[str, Any]:
    """structlog processor: PII-scrub every string in the event."""
    for key, value in list(event_dict.items()):
        if key in ("timestamp", "level", "logger", "request_id", "conversation_id"):
            continue
        try:
            event_dict[key] = scrub_value(value)
        except Exception:  # noqa: BLE001 - logging must never fail a request; fail closed
            event_dict[key] = UNSCRUBBABLE
    return event_dict


def _shared_processors() -> list:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.format_exc_info,
        scrub_processor,
    ]


def configure_logging(level: int = logging.INFO, json_logs: bool = True, stream: Any = None) -> None:
    """Route structlog and standard logging through one JSON (or console) renderer."""
    global _CONFIGURED
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    shared = _shared_processors()
    structlog.configure(
        # filter_by_level first: events below the level (Rasa's many debug events) are dropped
        # before they are scrubbed, which costs a spaCy pass per string
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    handler._nebras = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_nebras", False) or not _CONFIGURED:
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "rasa", "sanic.root", "sanic.access"):
        named = logging.getLogger(name)
        named.handlers = []
        named.propagate = True
    _CONFIGURED = True


def get_logger(name: str = "nebras") -> Any:
    return structlog.get_logger(name)


@contextmanager
def bind_context(request_id: Optional[str] = None, sender_id: Optional[str] = None, **extra: Any) -> Iterator[None]:
    """Bind ids to every log line inside the block (context-variable based, asyncio safe)."""
    values: Dict[str, Any] = dict(extra)
    if request_id:
        values["request_id"] = request_id
    if sender_id:
        values["conversation_id"] = conversation_id(sender_id)
    tokens = structlog.contextvars.bind_contextvars(**values)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
