"""Slack and Telegram channels of ``rasa run`` with the project's credentials.yml.

Events are posted to the running server (``rasa_server``: Slack/Telegram configured from
environment variables pointing at ``fake_apis``), and the bot's reply must arrive at the local fake
Slack Web API / Telegram Bot API. No internet.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import httpx
import pytest
from helpers.asgi import asgi_lifespan

from .conftest import ROOT, SLACK_SECRET, TELEGRAM_SECRET, TELEGRAM_TOKEN

GREETING = "Hello! I am the Nebras test bot. How can I help?"
NO_REPLY_WAIT_S = 3.0


# ---------------------------------------------------------------- Slack
def slack_event(channel: str, text: str, event_id: str) -> dict:
    return {
        "token": "unused", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": int(time.time()), "authorizations": [{"user_id": "UBOT"}],
        "event": {"type": "message", "channel_type": "im", "channel": channel, "user": "U" + channel,
                  "text": text, "ts": f"{time.time():.6f}"},
    }


def slack_headers(body: bytes, secret: str = SLACK_SECRET, timestamp: int = 0, **extra: str) -> dict:
    timestamp = timestamp or int(time.time())
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(timestamp),
            "X-Slack-Signature": f"v0={digest}", **extra}


def post_slack(server, event: dict, **header_options) -> httpx.Response:
    body = json.dumps(event).encode()
    headers = header_options.pop("headers", None) or slack_headers(body, **header_options)
    return server.client.post(server.root + "/webhooks/slack/webhook", content=body, headers=headers)


def slack_replies(fake, channel: str):
    return [c for c in fake.find("slack", "chat.postMessage") if c["body"].get("channel") == channel]


def stored_user_texts(server, sender_id: str) -> list:
    """The user messages Rasa's tracker store holds for ``sender_id`` (Rasa's HTTP API)."""
    response = server.client.get(f"{server.root}/conversations/{sender_id}/tracker")
    response.raise_for_status()
    return [event.get("text") for event in response.json().get("events", []) if event.get("event") == "user"]


def new_channel() -> str:
    return "D" + uuid.uuid4().hex[:10].upper()


def test_signed_slack_event_is_answered_through_the_slack_api(rasa_server, fake_apis):
    channel = new_channel()
    response = post_slack(rasa_server, slack_event(channel, "hello", "Ev" + channel))
    assert response.status_code == 200, response.text
    replies = fake_apis.wait_for("slack", "chat.postMessage", lambda c: c["body"].get("channel") == channel)
    assert [c["body"]["text"] for c in replies] == [GREETING]
    assert replies[0]["authorization"] == "Bearer xoxb-test"  # SLACK_TOKEN from the environment
    assert stored_user_texts(rasa_server, "U" + channel) == ["hello"]


@pytest.mark.parametrize("case", ["wrong_secret", "no_signature", "stale_timestamp", "tampered_body"])
def test_slack_event_with_a_bad_signature_is_rejected(rasa_server, fake_apis, case):
    channel = new_channel()
    event = slack_event(channel, "hello", "Ev" + channel)
    body = json.dumps(event).encode()
    headers = {
        "wrong_secret": slack_headers(body, secret="not-the-secret"),
        "no_signature": {"Content-Type": "application/json"},
        "stale_timestamp": slack_headers(body, timestamp=int(time.time()) - 3600),
        "tampered_body": slack_headers(json.dumps(slack_event(channel, "bye", "Ev" + channel)).encode()),
    }[case]
    response = rasa_server.client.post(rasa_server.root + "/webhooks/slack/webhook", content=body, headers=headers)
    assert response.status_code == 400
    assert "signed" in response.text
    time.sleep(NO_REPLY_WAIT_S)
    assert slack_replies(fake_apis, channel) == []
    assert stored_user_texts(rasa_server, "U" + channel) == []  # nothing stored


def test_slack_retry_of_an_answered_event_is_not_answered_twice(rasa_server, fake_apis):
    channel = new_channel()
    event = slack_event(channel, "hello", "Ev" + channel)
    assert post_slack(rasa_server, event).status_code == 200
    assert fake_apis.wait_for("slack", "chat.postMessage", lambda c: c["body"].get("channel") == channel)

    for retry in ("1", "2"):  # Slack re-delivers the same event_id with X-Slack-Retry-Num
        body = json.dumps(event).encode()
        retried = post_slack(rasa_server, event,
                             headers=slack_headers(body, **{"X-Slack-Retry-Num": retry,
                                                            "X-Slack-Retry-Reason": "http_error"}))
        assert retried.status_code == 200
        assert retried.headers.get("x-slack-no-retry") == "1"
    time.sleep(NO_REPLY_WAIT_S)
    assert [c["body"]["text"] for c in slack_replies(fake_apis, channel)] == [GREETING]

    # a new event in the same conversation is answered again: de-duplication is per event id
    assert post_slack(rasa_server, slack_event(channel, "bye", "Ev2" + channel)).status_code == 200
    later = fake_apis.wait_for("slack", "chat.postMessage",
                               lambda c: c["body"].get("channel") == channel and "Goodbye" in c["body"]["text"])
    assert len(later) == 1


def test_slack_url_verification_challenge(rasa_server):
    body = {"token": "unused", "challenge": "ch4ll3nge", "type": "url_verification"}
    response = post_slack(rasa_server, body)
    assert response.status_code == 200 and response.json() == "ch4ll3nge"


# ---------------------------------------------------------------- Telegram
def telegram_update(chat_id: int, text: str) -> dict:
    return {"update_id": chat_id, "message": {
        "message_id": 1, "date": int(time.time()), "text": text,
        "chat": {"id": chat_id, "type": "private", "first_name": "Test"},
        "from": {"id": chat_id, "is_bot": False, "first_name": "Test"}}}


def post_telegram(server, update: dict, secret) -> httpx.Response:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    return server.client.post(server.root + "/webhooks/telegram/webhook", json=update, headers=headers)


def telegram_replies(fake, chat_id: int):
    return [c for c in fake.find("telegram", "sendMessage") if str(c["body"].get("chat_id")) == str(chat_id)]


def new_chat_id() -> int:
    return int(uuid.uuid4().int % 10**9) + 1000


def test_telegram_webhook_is_registered_with_the_secret_at_start(rasa_server, fake_apis):
    calls = fake_apis.wait_for("telegram", "setWebhook", lambda c: True, timeout=10)
    assert calls, "setWebhook was not called at start-up"
    assert calls[0]["token"] == TELEGRAM_TOKEN
    assert calls[0]["body"]["secret_token"] == TELEGRAM_SECRET
    assert calls[0]["body"]["url"] == "https://bot.example.com/webhooks/telegram/webhook"


def test_telegram_update_with_the_secret_is_answered_through_the_bot_api(rasa_server, fake_apis):
    chat_id = new_chat_id()
    response = post_telegram(rasa_server, telegram_update(chat_id, "hello"), TELEGRAM_SECRET)
    assert response.status_code == 200, response.text
    replies = fake_apis.wait_for("telegram", "sendMessage", lambda c: str(c["body"].get("chat_id")) == str(chat_id))
    assert [c["body"]["text"] for c in replies] == [GREETING]
    assert replies[0]["token"] == TELEGRAM_TOKEN
    assert stored_user_texts(rasa_server, str(chat_id)) == ["hello"]


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", TELEGRAM_SECRET + "x"])
def test_telegram_update_without_the_right_secret_token_is_rejected(rasa_server, fake_apis, secret):
    chat_id = new_chat_id()
    response = post_telegram(rasa_server, telegram_update(chat_id, "hello"), secret)
    assert response.status_code == 403
    time.sleep(1.0)  # the webhook answers after the turn, so nothing can still be on its way
    assert telegram_replies(fake_apis, chat_id) == []
    assert stored_user_texts(rasa_server, str(chat_id)) == []  # nothing stored


@pytest.mark.parametrize("payload", ["not json", json.dumps({"update_id": "x", "message": 5})])
def test_malformed_telegram_update_is_400(rasa_server, payload):
    response = rasa_server.client.post(
        rasa_server.root + "/webhooks/telegram/webhook", content=payload,
        headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET, "Content-Type": "application/json"})
    assert response.status_code == 400


# ---------------------------------------------------------------- not configured
async def test_channels_without_environment_are_disabled_and_the_server_still_builds(monkeypatch):
    """Slack/Telegram variables unset: credentials.yml still loads, the Rasa app builds, and the
    webhooks answer 503 naming the variables to set."""
    from rasa.core import run

    for variable in ("SLACK_TOKEN", "SLACK_SIGNING_SECRET", "TELEGRAM_TOKEN", "TELEGRAM_SECRET_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    channels = run.create_http_input_channels(None, str(ROOT / "credentials.yml"))
    assert {c.name() for c in channels} >= {"rest", "nebras", "slack", "telegram"}
    app = run.configure_app(channels, enable_api=False, port=0)
    async with asgi_lifespan(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rasa") as client:
            slack = await client.post("/webhooks/slack/webhook", json={})
            telegram = await client.post("/webhooks/telegram/webhook", json={})
    assert slack.status_code == 503 and "SLACK_SIGNING_SECRET" in slack.json()["detail"]
    assert telegram.status_code == 503 and "TELEGRAM_SECRET_TOKEN" in telegram.json()["detail"]
