"""The standalone NLG server: Rasa's NLG protocol, templated rendering, batching of concurrent requests."""
from __future__ import annotations

import asyncio
import copy
from pathlib import Path

import httpx
import pytest

from nebras_bot.generation.worker import BatchingWorker
from nebras_bot.generation.generator import ResponseGenerator
from nebras_bot.generation.settings import GenerationSettings
from nebras_bot.serving.nlg_server import create_nlg_app, load_domain
from nebras_bot.serving.settings import NLGServerSettings

DOMAIN = Path(__file__).resolve().parents[1] / "fixtures" / "serving_bot" / "domain.yml"
TOKEN = "nlg-test-token"


def _tracker(sender="user-1", text="hello there"):
    return {
        "sender_id": sender,
        "slots": {},
        "latest_message": {"text": text, "intent": {"name": "greet", "confidence": 0.99}, "entities": []},
        "events": [
            {"event": "action", "name": "action_listen", "timestamp": 1.0},
            {"event": "user", "text": text, "timestamp": 2.0,
             "parse_data": {"intent": {"name": "greet", "confidence": 0.99}, "entities": []}},
        ],
    }


def _body(response="utter_greet", **extra):
    return {"response": response, "id": None, "arguments": {}, "tracker": _tracker(), "channel": {"name": "rest"},
            **extra}


@pytest.fixture
def make_app(tiny):
    apps = []

    def build(api_token=None, **generation):
        settings = GenerationSettings(batching=True, batch_max_size=8, batch_wait_ms=100, max_new_tokens=8,
                                      timeout_s=60, **generation)
        loaded = copy.copy(tiny)
        loaded.model = copy.deepcopy(tiny.model)
        generator = ResponseGenerator(loaded, settings)
        app = create_nlg_app(NLGServerSettings(domain=DOMAIN, api_token=api_token), generator=generator,
                             domain=load_domain(DOMAIN))
        apps.append(generator)
        return app

    yield build
    for generator in apps:
        generator.close()


def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://nlg")


async def test_templated_response_in_rasa_message_shape(make_app):
    async with _client(make_app()) as client:
        reply = await client.post("/nlg", json=_body("utter_options"))
    assert reply.status_code == 200
    message = reply.json()
    assert message["text"] == "Pick one of these."
    assert [b["payload"] for b in message["buttons"]] == ["/track_order", "/goodbye"]
    assert message["custom"] == {} and message["elements"] == [] and message["generated"] is False
    from rasa.core.nlg.callback import CallbackNaturalLanguageGenerator

    assert CallbackNaturalLanguageGenerator.validate_response(message)  # Rasa accepts it


async def test_image_and_rasa_1_template_key(make_app):
    body = _body()
    body.pop("response")
    body["template"] = "utter_track_order"
    async with _client(make_app()) as client:
        message = (await client.post("/nlg", json=body)).json()
    assert message["text"] == "Your order is on its way."
    assert message["image"] == "https://example.com/parcel.png"


async def test_rephrased_replies_are_never_empty_and_are_batched(make_app):
    app = make_app(rephrase_all=True)
    worker = app.state.nlg.generator.decoder
    assert isinstance(worker, BatchingWorker)
    async with _client(app) as client:
        replies = await asyncio.gather(*[client.post("/nlg", json=_body()) for _ in range(6)])
    assert all(r.status_code == 200 for r in replies)
    messages = [r.json() for r in replies]
    assert all(m["text"].strip() for m in messages)
    # A random tiny model's text is rejected by the guard: the templated reply goes out, with the reason.
    assert all(m["generated"] or m["generation_fallback"] for m in messages)
    assert max(worker.batch_sizes) > 1 and sum(worker.batch_sizes) == 6


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"arguments": {}, "tracker": {}, "channel": {}}, 422),  # no response named
        (_body("utter_nonexistent"), 404),
        (_body(tracker={"sender_id": "x", "events": [{"event": "no-such-event"}]}), 422),
        ({"response": ["not", "a", "string"]}, 422),
    ],
)
async def test_bad_requests_get_clear_errors(make_app, body, status):
    async with _client(make_app()) as client:
        reply = await client.post("/nlg", json=body)
    assert reply.status_code == status
    assert reply.json()["detail"]


async def test_token_required_when_configured(make_app):
    app = make_app(api_token=TOKEN)
    async with _client(app) as client:
        assert (await client.post("/nlg", json=_body())).status_code == 401
        assert (await client.post("/nlg", json=_body(), headers={"Authorization": "Bearer wrong"})).status_code == 401
        ok_header = await client.post("/nlg", json=_body(), headers={"Authorization": f"Bearer {TOKEN}"})
        ok_query = await client.post(f"/nlg?token={TOKEN}", json=_body())  # Rasa's `token:` endpoint option
        health = await client.get("/healthz")
    assert ok_header.status_code == 200 and ok_query.status_code == 200
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_missing_domain_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--domain"):
        load_domain(tmp_path / "nope.yml")


def test_cli_registers_the_nlg_server():
    from nebras_bot.cli import build_parser

    args = build_parser().parse_args(["nlg-server", "--port", "5999", "--model", "gpt2-scratch:tiny"])
    assert args.port == 5999 and args.model_source == "gpt2-scratch:tiny" and callable(args.func)
