"""``nebras serve`` API points beyond the chat contract: auth scope, readiness (loading, failed,
degraded, action server), tickets, feedback, OpenAPI and the interactive docs."""
from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid

import pytest

from .conftest import TOKEN, free_port
from .fake_chat_apis import ServerThread

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPEN_ROUTES = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/"]


def sender() -> str:
    return "api-" + uuid.uuid4().hex[:10]


# ---------------------------------------------------------------- auth
def test_auth_off_when_no_token_is_set_and_a_warning_is_logged(make_client, caplog):
    with caplog.at_level(logging.WARNING):
        client = make_client(api_token=None)
    assert any("NEBRAS_API_TOKEN is not set" in r.getMessage() for r in caplog.records)
    assert client.post("/v1/chat", json={"sender_id": sender(), "message": "hello"}).status_code == 200
    assert client.post("/v1/tickets", json={"email": "a@example.com", "description": "my parcel never arrived"}
                       ).status_code == 201


def test_empty_token_variable_means_auth_off(monkeypatch):
    from nebras_bot.serving.settings import ServingSettings

    monkeypatch.setenv("NEBRAS_API_TOKEN", "")
    assert ServingSettings().auth_enabled is False
    monkeypatch.setenv("NEBRAS_API_TOKEN", "s3cret")
    settings = ServingSettings()
    assert settings.auth_enabled and settings.api_token == "s3cret"


def test_no_warning_when_auth_is_on(make_client, caplog):
    with caplog.at_level(logging.WARNING):
        make_client(api_token=TOKEN)
    assert not any("NEBRAS_API_TOKEN is not set" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("path", OPEN_ROUTES)
def test_health_readiness_metrics_and_docs_need_no_token(make_client, path):
    client = make_client(api_token=TOKEN)
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("method,path,body", [
    ("post", "/v1/chat", {"sender_id": "x", "message": "hi"}),
    ("post", "/v1/chat/stream", {"sender_id": "x", "message": "hi"}),
    ("post", "/v1/feedback", {"sender_id": "x", "rating": "up"}),
    ("post", "/v1/tickets", {"email": "a@example.com", "description": "broken parcel"}),
    ("get", "/v1/tickets/TCK-ABCDEF12", None),
    ("post", "/v1/tickets/TCK-ABCDEF12/resolution", {"reply": "sent a new one"}),
])
def test_every_api_route_needs_the_token(make_client, method, path, body):
    client = make_client(api_token=TOKEN)
    kwargs = {"json": body} if body is not None else {}
    denied = getattr(client, method)(path, **kwargs)
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
    allowed = getattr(client, method)(path, headers=AUTH, **kwargs)
    assert allowed.status_code != 401


# ---------------------------------------------------------------- readiness
class _Gate:
    """Holds the model load until the test opens it (a threading event, polled from the app's loop)."""

    def __init__(self, agent) -> None:
        self.agent = agent
        self.opened = threading.Event()

    async def load(self, model, endpoints):
        while not self.opened.is_set():
            await asyncio.sleep(0.02)
        return self.agent


def test_readyz_is_503_while_loading_then_200(make_client, serving_agent, monkeypatch, tmp_path):
    from nebras_bot.serving import agent as agent_module

    gate = _Gate(serving_agent)
    monkeypatch.setattr(agent_module, "load_agent", gate.load)
    client = make_client(agent=None, model=tmp_path / "model.tar.gz")
    assert client.get("/healthz").json() == {"status": "ok"}
    loading = client.get("/readyz")
    assert loading.status_code == 503
    assert loading.json()["status"] == "loading" and loading.json()["model_loaded"] is False
    chat = client.post("/v1/chat", json={"sender_id": sender(), "message": "hello"})
    assert chat.status_code == 503 and chat.headers["retry-after"] == "5"

    gate.opened.set()
    for _ in range(200):
        ready = client.get("/readyz")
        if ready.status_code == 200:
            break
        time.sleep(0.02)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["model_loaded"] is True and body["model"]
    assert body["action_server"] == "not_configured"
    assert client.post("/v1/chat", json={"sender_id": sender(), "message": "hello"}).status_code == 200


def test_readyz_says_why_the_model_failed(make_client, tmp_path):
    client = make_client(agent=None, model=tmp_path / "missing.tar.gz")
    for _ in range(200):
        body = client.get("/readyz").json()
        if body["status"] != "loading":
            break
        time.sleep(0.02)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["status"] == "failed" and "does not exist" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200  # alive, so the orchestrator can show the reason


@pytest.fixture
def degraded_generator():
    from nebras_bot.monitoring import metrics

    metrics.GENERATOR_DEGRADED.set(1)
    yield
    metrics.GENERATOR_DEGRADED.set(0)


def test_readyz_says_degraded_when_the_generator_fell_back(make_client, degraded_generator):
    client = make_client()
    response = client.get("/readyz")
    assert response.status_code == 200  # templated replies still work: keep it in the load balancer
    assert response.json()["status"] == "degraded" and response.json()["generator"] == "degraded"


def test_readyz_reports_templates_only_when_no_generator_is_configured(make_client):
    body = make_client().get("/readyz").json()
    assert body["status"] == "ready" and body["generator"] == "templates_only"


@pytest.fixture
def action_server():
    """A stand-in action server answering /health (as rasa_sdk does)."""
    from fastapi import FastAPI

    app = FastAPI()
    app.state.healthy = True

    @app.get("/health")
    async def health():
        from starlette.responses import JSONResponse

        return JSONResponse({"status": "ok"}, status_code=200 if app.state.healthy else 500)

    port = free_port()
    with ServerThread(app, port):
        yield app, f"http://127.0.0.1:{port}/webhook"


@pytest.fixture
def with_action_endpoint(serving_agent):
    from rasa.utils.endpoints import EndpointConfig

    original = serving_agent.action_endpoint

    def point_at(url):
        serving_agent.action_endpoint = EndpointConfig(url)

    yield point_at
    serving_agent.action_endpoint = original


def test_readyz_checks_the_action_servers_health(make_client, action_server, with_action_endpoint):
    app, url = action_server
    with_action_endpoint(url)
    client = make_client()
    assert client.get("/readyz").json()["action_server"] == "ok"
    assert client.get("/readyz").json()["status"] == "ready"
    app.state.healthy = False
    body = client.get("/readyz").json()
    assert body["action_server"] == "down" and body["status"] == "degraded"


def test_readyz_is_503_when_actions_are_required_and_down(make_client, with_action_endpoint):
    with_action_endpoint(f"http://127.0.0.1:{free_port()}/webhook")  # nothing listens there
    assert make_client().get("/readyz").status_code == 200
    strict = make_client(ready_requires_actions=True).get("/readyz")
    assert strict.status_code == 503 and strict.json()["action_server"] == "down"


# ---------------------------------------------------------------- tickets and feedback
def test_ticket_lifecycle(make_client):
    client = make_client(api_token=TOKEN)
    body = {"email": "customer@example.com", "description": "My parcel arrived damaged.", "order_id": "ORD-1"}
    created = client.post("/v1/tickets", json=body, headers={**AUTH, "Idempotency-Key": "k-1"})
    assert created.status_code == 201
    ticket = created.json()
    assert re.fullmatch(r"TCK-[A-Z0-9]{6,}", ticket["id"]) and ticket["status"] == "open"
    again = client.post("/v1/tickets", json=body, headers={**AUTH, "Idempotency-Key": "k-1"})
    assert again.status_code == 201 and again.json()["id"] == ticket["id"]  # no duplicate
    fetched = client.get(f"/v1/tickets/{ticket['id']}", headers=AUTH)
    assert fetched.status_code == 200 and fetched.json()["description"] == body["description"]
    resolved = client.post(f"/v1/tickets/{ticket['id']}/resolution", json={"reply": "A new one is on its way."},
                           headers=AUTH)
    assert resolved.status_code == 200
    assert resolved.json()["status"] == "resolved" and resolved.json()["resolution"] == "A new one is on its way."


@pytest.mark.parametrize("body", [{"email": "not-an-email", "description": "x broken"},
                                  {"email": "a@example.com", "description": ""}, {"description": "no email"},
                                  {"email": "a@example.com", "description": "\n \t"}])  # blank: was a 500
def test_invalid_ticket_is_422(make_client, body):
    response = make_client().post("/v1/tickets", json=body)
    assert response.status_code == 422 and response.json()["detail"]


def test_unknown_ticket_is_404(make_client):
    client = make_client()
    assert client.get("/v1/tickets/TCK-NOPE0000").status_code == 404
    assert client.post("/v1/tickets/TCK-NOPE0000/resolution", json={"reply": "x"}).status_code == 404


def test_feedback_rates_the_last_bot_reply(make_client, support_stores):
    client = make_client()
    sid = sender()
    reply = client.post("/v1/chat", json={"sender_id": sid, "message": "hello"}).json()
    stored = client.post("/v1/feedback", json={"sender_id": sid, "rating": "down", "comment": "too short"})
    assert stored.status_code == 201 and stored.json()["stored"] is True
    record = support_stores[1].since(0)[-1]
    assert record.id == stored.json()["id"] and record.rating == "down" and record.sender_id == sid
    assert record.bot_text == reply["messages"][-1]["text"] and record.generated is False
    assert record.model_version == reply["model_version"] and record.comment == "too short"


def test_feedback_with_an_empty_message_text_rates_the_last_bot_reply(make_client, support_stores):
    """Found by schemathesis: message_text "" was taken as the rated text and failed with a 500."""
    client = make_client()
    sid = sender()
    reply = client.post("/v1/chat", json={"sender_id": sid, "message": "hello"}).json()
    stored = client.post("/v1/feedback", json={"sender_id": sid, "rating": "up", "message_text": ""})
    assert stored.status_code == 201, stored.text
    assert support_stores[1].since(0)[-1].bot_text == reply["messages"][-1]["text"]
    unknown = client.post("/v1/feedback", json={"sender_id": sender(), "rating": "up", "message_text": ""})
    assert unknown.status_code == 404


def test_feedback_without_a_conversation_is_404_and_a_bad_rating_422(make_client, support_stores):
    client = make_client()
    assert client.post("/v1/feedback", json={"sender_id": sender(), "rating": "up"}).status_code == 404
    assert client.post("/v1/feedback", json={"sender_id": sender(), "rating": "meh",
                                             "message_text": "x"}).status_code == 422
    assert support_stores[1].since(0) == []


# ---------------------------------------------------------------- OpenAPI and docs
def test_openapi_describes_every_route_with_pydantic_bodies(make_client):
    spec = make_client().get("/openapi.json").json()
    paths = spec["paths"]
    for path, method in [("/v1/chat", "post"), ("/v1/chat/stream", "post"), ("/v1/feedback", "post"),
                         ("/v1/tickets", "post"), ("/v1/tickets/{ticket_id}", "get"),
                         ("/v1/tickets/{ticket_id}/resolution", "post"), ("/healthz", "get"), ("/readyz", "get")]:
        assert method in paths[path], (path, method)
    schemas = spec["components"]["schemas"]
    assert {"ChatRequest", "ChatResponse", "FeedbackRequest", "TicketCreate", "Ticket", "Readiness"} <= set(schemas)
    chat = paths["/v1/chat"]["post"]
    assert chat["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ChatRequest")
    assert {"200", "401", "413", "422", "429", "503"} <= set(chat["responses"])


def test_interactive_docs_page(make_client):
    page = make_client().get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text and "/openapi.json" in page.text
