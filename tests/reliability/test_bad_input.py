"""Bad input against ``nebras serve``'s app (the fixture bot and a tiny GPT-2 generator behind the
NLG, auth and rate limit off so the fuzzer reaches the handlers):

- schemathesis generates requests for every operation of ``/openapi.json`` (bounded: a few examples
  per operation) -> no 5xx;
- hand-written malformed, oversized, binary and mixed-script messages -> a clear 4xx, or a 200 with
  a non-empty reply; a rejected request stores nothing in the conversation.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(420)

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def app_and_agent(serving_bot_model: Path, tiny_model_cache: Path, tmp_path_factory):
    import os

    from rasa.core.agent import Agent

    from nebras_bot.generation.generator import ResponseGenerator
    from nebras_bot.generation.settings import GenerationSettings
    from nebras_bot.nlg import GPT2NaturalLanguageGenerator
    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings
    from nebras_bot.support.service import reset_services

    previous = os.environ.get("NEBRAS_DB_URL")
    os.environ["NEBRAS_DB_URL"] = f"sqlite:///{tmp_path_factory.mktemp('bad-input') / 'support.db'}"
    reset_services()
    settings = GenerationSettings(model=str(tiny_model_cache), rephrase_all=True, max_new_tokens=6, timeout_s=2.0,
                                  torch_threads=1)
    nlg = GPT2NaturalLanguageGenerator(None, generator=ResponseGenerator.load(settings), rephrase_all=True)
    agent = Agent.load(str(serving_bot_model), generator=nlg)
    app = create_app(ServingSettings(endpoints=None, rate_limit_per_minute=0, api_token=None, web_chat=True,
                                     max_message_chars=500, max_body_bytes=8192), agent=agent)
    yield app, agent
    reset_services()
    if previous is None:
        os.environ.pop("NEBRAS_DB_URL", None)
    else:
        os.environ["NEBRAS_DB_URL"] = previous


@pytest.fixture(scope="module")
def client(app_and_agent):
    from fastapi.testclient import TestClient

    with TestClient(app_and_agent[0]) as test_client:
        yield test_client


def test_schemathesis_finds_no_server_error(app_and_agent) -> None:
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase

    schema = schemathesis.openapi.from_asgi("/openapi.json", app_and_agent[0])
    failures, calls, operations = [], 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        operations.append(operation.label)

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        def run(case) -> None:
            nonlocal calls
            response = case.call()
            calls += 1
            if response.status_code >= 500:
                failures.append(f"{operation.label} -> {response.status_code}: {case.body!r:.200} {response.text[:200]}")

        run()
    assert {"POST /v1/chat", "POST /v1/tickets", "GET /healthz"} <= set(operations), operations
    assert calls >= len(operations)
    assert not failures, "\n".join(failures[:10])


@pytest.mark.parametrize("raw, content_type", [
    (b"", "application/json"),
    (b"{", "application/json"),
    (b"[]", "application/json"),
    (b'{"sender_id": "malformed-1"}', "application/json"),
    (b'{"sender_id": 5, "message": ["a"]}', "application/json"),
    (b'{"sender_id": "malformed-1", "message": ""}', "application/json"),
    (b"\xff\xfe\x00\x81binary\x00garbage", "application/json"),
    (b'{"sender_id": "malformed-1", "message": "\xff\xfe"}', "application/json"),
    (b"sender_id=malformed-1&message=hi", "application/x-www-form-urlencoded"),
    (b'{"sender_id": "' + b"s" * 300 + b'", "message": "hi"}', "application/json"),
], ids=["empty", "truncated", "array", "no-message", "wrong-types", "empty-message", "binary", "bad-utf8",
        "form-encoded", "long-sender"])
def test_malformed_bodies_are_clear_4xx_and_store_nothing(client, app_and_agent, raw, content_type) -> None:
    import asyncio

    response = client.post("/v1/chat", content=raw, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["detail"]
    tracker = asyncio.run(app_and_agent[1].tracker_store.retrieve("malformed-1"))
    assert tracker is None or not [e for e in tracker.events if getattr(e, "text", None)]


def test_oversized_message_and_body(client) -> None:
    assert client.post("/v1/chat", json={"sender_id": "big", "message": "a" * 501}).status_code == 422
    assert client.post("/v1/chat", json={"sender_id": "big", "message": "a" * 9000}).status_code == 413


@pytest.mark.parametrize("message", [
    "مرحبا، أين طلبي رقم 12345؟ where is my order",
    "Привет! 你好 こんにちは 안녕하세요 hello",
    "\u202eredro ym si erehw\u202c \u200f\u200e",
    "😀🚚📦🔥" * 20,
    "   \t\n  ",
    "\u0000\u0001\u0002 hello \u0007",
    "<|user|><|agent|><|system|><|end|>",
    "<script>alert(1)</script> {{7*7}} ${jndi:ldap://x} '; DROP TABLE tickets; --",
    "e\u0301\u0301\u0301\u0301\u0301 zalgo t\u0336\u0336ext",
    "/greet",
    '/track_order{"order_id": "1; DROP TABLE"}',
], ids=["arabic-latin", "cjk-cyrillic", "bidi", "emoji", "whitespace", "control", "role-markers", "injection",
        "combining", "intent-payload", "payload-entities"])
def test_mixed_script_and_hostile_messages_get_a_reply(client, message) -> None:
    response = client.post("/v1/chat", json={"sender_id": f"odd-{abs(hash(message))}", "message": message})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        body = response.json()
        texts = [m.get("text") or "" for m in body["messages"]]
        assert body["messages"] and any(t.strip() or m.get("buttons") or m.get("image")
                                         for t, m in zip(texts, body["messages"])), body
        assert "<|" not in json.dumps(body)
    else:
        assert response.json()["detail"]


def test_stream_with_bad_input_is_4xx_not_a_broken_stream(client) -> None:
    response = client.post("/v1/chat/stream", content=b"\xff\x00", headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
