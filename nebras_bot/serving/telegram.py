"""Telegram channel: webhook secret-token check and a configurable Bot API base URL.

Registered in ``credentials.yml`` as ``nebras_bot.serving.telegram.NebrasTelegramInput`` (route
``/webhooks/telegram/webhook``). Differences from Rasa's ``TelegramInput``:

- every update must carry ``X-Telegram-Bot-Api-Secret-Token`` equal to ``secret_token`` (compared
  in constant time; Telegram sends it when the webhook was set with that secret) — otherwise 403
  and nothing is processed. This replaces Rasa's per-update ``getMe`` call;
- ``api_url`` — the Bot API base (default ``https://api.telegram.org``); tests use a local fake;
- the webhook is registered (``setWebhook`` with the secret) when the server starts, inside the
  server's event loop, instead of with ``asyncio.run`` at import time.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Dict, Optional, Text

from aiogram.bot.api import TelegramAPIServer
from aiogram.types import Update
from rasa.core.channels.channel import InputChannel, UserMessage
from rasa.core.channels.telegram import TelegramInput, TelegramOutput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from nebras_bot.monitoring import metrics
from nebras_bot.serving.slack import disabled_blueprint

logger = logging.getLogger(__name__)

DEFAULT_TELEGRAM_API_URL = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ENV_KEYS = {"access_token": "TELEGRAM_TOKEN", "verify": "TELEGRAM_BOT_NAME", "webhook_url": "TELEGRAM_WEBHOOK_URL",
            "secret_token": "TELEGRAM_SECRET_TOKEN", "api_url": "TELEGRAM_API_URL"}


class NebrasTelegramOutput(TelegramOutput):
    def __init__(self, access_token: Optional[Text], api_url: Text = DEFAULT_TELEGRAM_API_URL) -> None:
        TelegramOutput.__bases__[0].__init__(  # aiogram Bot: pass the API server
            self, access_token, server=TelegramAPIServer.from_base(api_url))

    @classmethod
    def name(cls) -> Text:
        return "telegram"


class NebrasTelegramInput(TelegramInput):
    @classmethod
    def name(cls) -> Text:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        """Keys from ``credentials.yml``; missing ones from the environment (``ENV_KEYS``).

        Without an access token and a secret token the channel is disabled (webhook: 503).
        """
        credentials = dict(credentials or {})
        for key, variable in ENV_KEYS.items():
            if not credentials.get(key) and os.environ.get(variable):
                credentials[key] = os.environ[variable]
        channel = cls(credentials.get("access_token"), credentials.get("verify"), credentials.get("webhook_url"),
                      secret_token=str(credentials.get("secret_token") or ""),
                      api_url=credentials.get("api_url") or DEFAULT_TELEGRAM_API_URL)
        if not channel.enabled:
            logger.warning("Telegram channel disabled: set TELEGRAM_TOKEN and TELEGRAM_SECRET_TOKEN to enable it")
        return channel

    def __init__(self, access_token: Optional[Text], verify: Optional[Text], webhook_url: Optional[Text],
                 secret_token: Text = "", api_url: Text = DEFAULT_TELEGRAM_API_URL) -> None:
        super().__init__(access_token, verify, webhook_url, debug_mode=False)
        self.secret_token = secret_token
        self.api_url = api_url
        self.enabled = bool(access_token and secret_token)

    def get_output_channel(self) -> TelegramOutput:
        return NebrasTelegramOutput(self.access_token, self.api_url)

    def secret_ok(self, request: Request) -> bool:
        presented = request.headers.get(SECRET_HEADER, "")
        return bool(self.secret_token) and hmac.compare_digest(presented.encode(), self.secret_token.encode())

    async def register_webhook(self, out_channel: TelegramOutput) -> bool:
        if not self.webhook_url:
            return False
        return bool(await out_channel.request("setWebhook", {"url": self.webhook_url,
                                                             "secret_token": self.secret_token}))

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        if not self.enabled:
            return disabled_blueprint("telegram_webhook", "Telegram", "TELEGRAM_TOKEN and TELEGRAM_SECRET_TOKEN")
        telegram_webhook = Blueprint("nebras_telegram_webhook", __name__)
        out_channel = self.get_output_channel()

        @telegram_webhook.listener("after_server_start")
        async def set_webhook_on_start(*_: Any) -> None:
            try:
                if await self.register_webhook(out_channel):
                    logger.info("Telegram webhook registered")
            except Exception as error:  # the server still runs; /set_webhook can retry
                logger.error("Telegram setWebhook failed: %s", error)

        @telegram_webhook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @telegram_webhook.route("/set_webhook", methods=["POST"])
        async def set_webhook(request: Request) -> HTTPResponse:
            if not self.secret_ok(request):
                return response.text("forbidden", status=HTTPStatus.FORBIDDEN)
            ok = await self.register_webhook(out_channel)
            return response.text("Webhook setup successful" if ok else "Invalid webhook")

        @telegram_webhook.route("/webhook", methods=["POST"])
        async def message(request: Request) -> HTTPResponse:
            route = "/webhooks/telegram/webhook"
            if not self.secret_ok(request):
                metrics.REQUESTS.labels(route=route, status="403").inc()
                return response.text("bad secret token", status=HTTPStatus.FORBIDDEN)
            try:
                payload = request.json
                if isinstance(payload, str):
                    payload = json.loads(payload)
                if not isinstance(payload, dict):
                    raise ValueError("an update is a JSON object")
                text, msg = self._text_of(Update(**payload))
                chat_id = str(msg.chat.id) if msg is not None else None
            except Exception:  # aiogram parses lazily: a malformed field fails on first access
                metrics.REQUESTS.labels(route=route, status="400").inc()
                return response.text("malformed update", status=HTTPStatus.BAD_REQUEST)
            if text is None or msg is None:
                return response.text("success")
            user_message = UserMessage(text, out_channel, chat_id, input_channel=self.name(),
                                       metadata=self.get_metadata(request))
            try:
                await on_new_message(user_message)
            except Exception:
                metrics.ERRORS.labels(component="telegram").inc()
                logger.exception("telegram update failed")
            metrics.REQUESTS.labels(route=route, status="200").inc()
            return response.text("success")

        return telegram_webhook

    def _text_of(self, update: Update) -> "tuple[Optional[str], Any]":
        if self._is_button(update):
            return update.callback_query.data, update.callback_query.message
        if self._is_edited_message(update):
            return update.edited_message.text, update.edited_message
        msg = update.message
        if msg is None:
            return None, None
        if self._is_user_message(msg):
            return msg.text.replace("/bot", ""), msg
        if self._is_location(msg):
            return '{{"lng":{0}, "lat":{1}}}'.format(msg.location.longitude, msg.location.latitude), msg
        return None, None
