"""Monitoring of ``nebras serve``: Prometheus metrics (all ``nebras_*``), structured JSON logs with
request and conversation ids and no PII, Sentry error tracking against a local fake Sentry."""
from __future__ import annotations

import gzip
import io
import json
import logging
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest
from fastapi import Request
from prometheus_client import REGISTRY

from .conftest import free_port
from .fake_chat_apis import ServerThread

EMAIL = "jane.doe@example.com"
PHONE = "+44 20 7946 0958"
DEFAULT_COLLECTORS = ("python_", "process_", "gc_")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels or None) or 0.0


class FailingAgent:
    """An agent whose turn raises with PII in the message (to see what reaches logs and Sentry)."""

    processor = None
    tracker_store = None
    action_endpoint = None
    nlg = None

    def is_ready(self) -> bool:
        return True

    async def handle_message(self, message) -> None:
        raise RuntimeError(f"tracker store refused the write for {EMAIL}")


# ---------------------------------------------------------------- metrics
def test_chat_turn_updates_request_turn_and_latency_metrics(make_client):
    client = make_client()
    before_requests = sample("nebras_requests_total", route="/v1/chat", status="200")
    before_turns = sample("nebras_turns_total", channel="nebras")
    before_latency = sample("nebras_request_latency_seconds_count", route="/v1/chat")
    assert client.post("/v1/chat", json={"sender_id": "m-" + uuid.uuid4().hex[:8], "message": "hello"}).status_code == 200
    assert sample("nebras_requests_total", route="/v1/chat", status="200") == before_requests + 1
    assert sample("nebras_turns_total", channel="nebras") == before_turns + 1
    assert sample("nebras_request_latency_seconds_count", route="/v1/chat") == before_latency + 1

    text = client.get("/metrics").text
    for family in ("nebras_requests_total", "nebras_request_latency_seconds", "nebras_turns_total",
                   "nebras_generation_latency_seconds", "nebras_fallbacks_total", "nebras_errors_total",
                   "nebras_tickets_created_total", "nebras_generator_degraded", "nebras_model_info"):
        assert f"# HELP {family} " in text or f"# HELP {family.removesuffix('_total')} " in text, family
    assert 'nebras_request_latency_seconds_bucket{le="0.1",route="/v1/chat"}' in text


def test_every_exported_metric_is_named_nebras(make_client):
    text = make_client().get("/metrics").text
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    ours = {f for f in families if not f.startswith(DEFAULT_COLLECTORS)}
    assert ours and all(f.startswith("nebras_") for f in ours), sorted(ours)


def test_route_labels_are_templates_not_raw_paths(make_client):
    client = make_client()
    client.get("/v1/tickets/TCK-ZZZZZZ99")
    client.get("/no/such/path/" + uuid.uuid4().hex)
    text = client.get("/metrics").text
    assert 'route="/v1/tickets/{ticket_id}"' in text
    assert "TCK-ZZZZZZ99" not in text and "/no/such/path" not in text
    assert 'route="unmatched"' in text


def test_model_version_info_metric(make_client, serving_agent):
    from nebras_bot.serving.agent import model_id

    make_client()
    info = [s for f in REGISTRY.collect() if f.name == "nebras_model" for s in f.samples]
    assert info and info[0].labels["rasa_model"] == model_id(serving_agent)
    assert set(info[0].labels) == {"rasa_model", "nlg_model", "nebras"}


def test_tickets_created_counts_new_tickets_only(make_client):
    client = make_client()
    before = sample("nebras_tickets_created_total", origin="api")
    body = {"email": "a@example.com", "description": "the parcel is lost", "idempotency_key": uuid.uuid4().hex}
    assert client.post("/v1/tickets", json=body).status_code == 201
    assert client.post("/v1/tickets", json=body).status_code == 201  # idempotent replay
    assert sample("nebras_tickets_created_total", origin="api") == before + 1


def test_fallbacks_are_counted_by_reason():
    from nebras_bot.monitoring import metrics

    before = sample("nebras_fallbacks_total", reason="unknown_number")
    metrics.FALLBACKS.labels(reason=metrics.fallback_reason_label("unknown_number: 4821")).inc()
    assert sample("nebras_fallbacks_total", reason="unknown_number") == before + 1
    assert metrics.fallback_reason_label("Too Long") == "too_long"
    assert metrics.fallback_reason_label("") == "unknown"


def test_errors_are_counted_and_answered_500(make_client):
    client = make_client(agent=FailingAgent())
    client_no_raise = client.__class__(client.app, raise_server_exceptions=False)
    before = sample("nebras_errors_total", component="chat")
    response = client_no_raise.post("/v1/chat", json={"sender_id": "err", "message": "hello"})
    assert response.status_code == 500
    assert sample("nebras_errors_total", component="chat") == before + 1
    assert sample("nebras_requests_total", route="/v1/chat", status="500") >= 1


def test_nlg_server_metrics_route_is_added_once():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from nebras_bot.monitoring.metrics import add_metrics_route

    app = FastAPI()
    add_metrics_route(app)
    add_metrics_route(app)
    assert sum(getattr(r, "path", None) == "/metrics" for r in app.router.routes) == 1
    response = TestClient(app).get("/metrics")
    assert response.status_code == 200 and "nebras_generation_latency_seconds" in response.text


# ---------------------------------------------------------------- JSON logs
@pytest.fixture
def json_log_stream():
    """``configure_logging`` into a buffer; logging and structlog restored afterwards."""
    import structlog

    from nebras_bot.monitoring.logging import configure_logging

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, structlog.get_config())
    stream = io.StringIO()
    configure_logging(logging.DEBUG, json_logs=True, stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    structlog.configure(**saved[2])


def test_logs_are_json_with_request_and_conversation_ids_and_no_pii(make_client, json_log_stream):
    from nebras_bot.monitoring.logging import conversation_id

    client = make_client()
    sender_id = EMAIL  # sender ids may themselves be PII
    response = client.post("/v1/chat", json={"sender_id": sender_id,
                                             "message": f"hello, I am {EMAIL}, call me on {PHONE}"},
                           headers={"X-Request-ID": "req-12345"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "req-12345"
    lines = [line for line in json_log_stream.getvalue().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    for record in records:
        assert {"event", "level", "timestamp"} <= set(record)
    turn = [r for r in records if r["event"] == "turn"]
    assert turn and turn[0]["request_id"] == "req-12345"
    assert turn[0]["conversation_id"] == conversation_id(sender_id) != sender_id
    access = [r for r in records if r["event"] == "request" and r.get("route") == "/v1/chat"]
    assert access and access[0]["status"] == 200 and access[0]["request_id"] == "req-12345"
    # Rasa's own debug lines about this turn carry the ids too
    rasa_lines = [r for r in records if r.get("logger", "").startswith("rasa") or "processor" in r["event"]]
    assert rasa_lines and all(r.get("request_id") == "req-12345" for r in rasa_lines)
    text = json_log_stream.getvalue()
    # the phone number in any spacing (a bare "7946" can occur in a timestamp's microseconds)
    assert EMAIL not in text and "7946 0958" not in text and "79460958" not in text.replace(" ", "")


def test_generated_request_id_when_the_client_sends_none_or_a_bad_one(make_client):
    client = make_client()
    plain = client.get("/healthz").headers["x-request-id"]
    assert len(plain) == 32 and plain.isalnum()
    forged = client.get("/healthz", headers={"X-Request-ID": "bad id\nwith newline"}).headers["x-request-id"]
    assert forged != "bad id\nwith newline" and forged.isalnum()


# ---------------------------------------------------------------- Sentry
class FakeSentry:
    """A local Sentry ingest endpoint recording the events the SDK sends (envelopes or store)."""

    def __init__(self) -> None:
        from fastapi import FastAPI

        self.events: List[Dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/api/{project}/{kind}/")
        async def ingest(project: str, kind: str, request: Request) -> Dict[str, str]:
            raw = await request.body()
            if request.headers.get("content-encoding") == "gzip":
                raw = gzip.decompress(raw)
            items = [json.loads(line) for line in raw.splitlines() if line.strip().startswith(b"{")]
            with self.lock:
                self.events.extend(i for i in items if "exception" in i or "message" in i)
            return {"id": uuid.uuid4().hex}


@pytest.fixture
def fake_sentry(monkeypatch):
    import sentry_sdk

    fake = FakeSentry()
    port = free_port()
    with ServerThread(fake.app, port):
        monkeypatch.setenv("SENTRY_DSN", f"http://publickey@127.0.0.1:{port}/42")
        monkeypatch.setenv("SENTRY_ENVIRONMENT", "test")
        yield fake
        client = sentry_sdk.Hub.current.client
        if client is not None:
            client.close(timeout=2)
        sentry_sdk.Hub.current.bind_client(None)


def test_sentry_is_off_without_a_dsn(monkeypatch):
    from nebras_bot.monitoring.sentry import init_sentry

    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert init_sentry("serve") is False


def test_unhandled_error_reaches_sentry_scrubbed(fake_sentry, make_client):
    import sentry_sdk

    from nebras_bot.monitoring.sentry import init_sentry

    assert init_sentry("serve") is True
    client = make_client(agent=FailingAgent(), api_token="sentry-test-token")
    quiet = client.__class__(client.app, raise_server_exceptions=False)
    response = quiet.post("/v1/chat", json={"sender_id": "sentry", "message": f"I am {EMAIL}"},
                          headers={"Authorization": "Bearer sentry-test-token"})
    assert response.status_code == 500
    sentry_sdk.flush(timeout=10)
    deadline = time.monotonic() + 10
    while not fake_sentry.events and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake_sentry.events, "no event reached the fake Sentry"
    event = fake_sentry.events[0]
    values = event["exception"]["values"]
    assert values[-1]["type"] == "RuntimeError"
    assert event["environment"] == "test" and event["tags"]["component"] == "serve"
    dumped = json.dumps(event)
    assert EMAIL not in dumped  # exception message and request body scrubbed
    assert "sentry-test-token" not in dumped  # the Authorization header never leaves


def test_before_send_drops_locals_headers_and_bodies_and_scrubs_text():
    from nebras_bot.monitoring.sentry import _before_send

    event = {
        "request": {"data": {"message": EMAIL}, "cookies": {"s": "1"},
                    "headers": {"Authorization": "Bearer t0k3n", "User-Agent": "x"}},
        "message": f"failed for {EMAIL}",
        "exception": {"values": [{"type": "RuntimeError", "value": f"call {PHONE}",
                                  "stacktrace": {"frames": [{"function": "f", "vars": {"token": "t0k3n"}}]}}]},
    }
    out = _before_send(event, {})
    dumped = json.dumps(out)
    assert "t0k3n" not in dumped and EMAIL not in dumped and "7946" not in dumped
    assert "data" not in out["request"] and "cookies" not in out["request"]
    assert out["request"]["headers"] == {"User-Agent": "x"}
    assert out["exception"]["values"][0]["type"] == "RuntimeError"
    assert out["exception"]["values"][0]["stacktrace"]["frames"][0]["function"] == "f"
