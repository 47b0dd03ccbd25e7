"""The `/v1/chat` contract, run against both servers: ``nebras serve`` (FastAPI, in-process) and
``rasa run`` with ``NebrasChannel`` (a subprocess). One client, only the base URL differs."""
from __future__ import annotations

import json
import uuid

import pytest

from nebras_bot.serving.schemas import ChatResponse
from .conftest import RATE_BURST, TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["fastapi", "rasa"])
def server(request):
    return request.getfixturevalue(f"{request.param}_server")


def sender() -> str:
    return "contract-" + uuid.uuid4().hex[:10]


def chat(server, sender_id, message, **kwargs):
    return server.post("/v1/chat", json={"sender_id": sender_id, "message": message, **kwargs}, headers=AUTH)


def test_chat_returns_the_contract_body(server):
    sid = sender()
    response = chat(server, sid, "hello there")
    assert response.status_code == 200, response.text
    body = ChatResponse.parse_obj(response.json())
    assert body.sender_id == sid
    assert body.intent == "greet"
    assert 0.0 < body.confidence <= 1.0
    assert [m.text for m in body.messages] == ["Hello! I am the Nebras test bot. How can I help?"]
    assert body.generated is False
    assert body.model_version


def test_buttons_and_images_pass_through(server):
    sid = sender()
    options = chat(server, sid, "show me the options").json()
    assert options["intent"] == "show_options"
    assert options["messages"][0]["buttons"] == [
        {"title": "Track an order", "payload": "/track_order"}, {"title": "Say bye", "payload": "/goodbye"}]
    track = chat(server, sid, "/track_order").json()
    assert track["intent"] == "track_order"
    assert track["messages"][0]["image"] == "https://example.com/parcel.png"


def test_metadata_is_accepted(server):
    response = chat(server, sender(), "bye", metadata={"locale": "en-GB"})
    assert response.status_code == 200
    assert response.json()["messages"][0]["text"] == "Goodbye, have a nice day."


def test_stream_sends_one_event_per_message_then_done(server):
    response = server.post("/v1/chat/stream", json={"sender_id": sender(), "message": "hello"}, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = block.splitlines()
        name = lines[0].removeprefix("event: ")
        data = json.loads("\n".join(line.removeprefix("data: ") for line in lines[1:]))
        events.append((name, data))
    assert [name for name, _ in events] == ["message", "done"]
    assert events[0][1]["text"].startswith("Hello!")
    assert events[1][1]["intent"] == "greet" and "messages" not in events[1][1]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_requests_without_the_token_are_rejected(server, headers):
    response = server.post("/v1/chat", json={"sender_id": sender(), "message": "hi"}, headers=headers)
    assert response.status_code == 401
    assert response.headers.get("www-authenticate") == "Bearer"


def test_message_over_the_limit_is_422_with_a_clear_error(server):
    response = chat(server, sender(), "x" * 501)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "message"] and "limit is 500" in detail["msg"]


def test_body_over_the_size_limit_is_413(server):
    payload = json.dumps({"sender_id": sender(), "message": "hi", "metadata": {"pad": "p" * 9000}})
    response = server.post("/v1/chat", content=payload, headers={**AUTH, "content-type": "application/json"})
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


@pytest.mark.parametrize("body", [{"message": "hi"}, {"sender_id": "a b/c", "message": "hi"},
                                  {"sender_id": "ok", "message": ""}, {"sender_id": "ok"}])
def test_invalid_bodies_are_422(server, body):
    response = server.post("/v1/chat", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_rate_limit_per_sender(server):
    sid = sender()
    codes = [chat(server, sid, "hi").status_code for _ in range(RATE_BURST + 3)]
    assert codes[:RATE_BURST] == [200] * RATE_BURST
    assert 429 in codes[RATE_BURST:]
    assert chat(server, sender(), "hi").status_code == 200  # other senders are unaffected


def test_one_conversation_keeps_its_history(server):
    sid = sender()
    assert chat(server, sid, "hello").json()["intent"] == "greet"
    second = chat(server, sid, "where is my order").json()
    assert second["sender_id"] == sid and second["intent"] == "track_order"
