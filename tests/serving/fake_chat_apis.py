"""A local stand-in for the Slack Web API and the Telegram Bot API (no internet in tests).

Records every call; answers like the real APIs do for the methods the channels use.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Dict, List
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, Request


class FakeChatAPIs:
    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = FastAPI()

        @self.app.post("/api/{method}")
        async def slack(method: str, request: Request) -> Dict[str, Any]:
            body = await self._body(request)
            self._record("slack", method, body, request)
            return {"ok": True, "channel": body.get("channel"), "ts": f"{time.time():.6f}"}

        @self.app.post("/bot{token}/{method}")
        async def telegram(token: str, method: str, request: Request) -> Dict[str, Any]:
            body = await self._body(request)
            self._record("telegram", method, body, request, token=token)
            if method == "getMe":
                return {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Nebras",
                                               "username": "nebras_test_bot"}}
            if method in ("setWebhook", "deleteWebhook"):
                return {"ok": True, "result": True}
            chat_id = int(body.get("chat_id", 0) or 0)
            return {"ok": True, "result": {"message_id": len(self.calls), "date": int(time.time()),
                                           "chat": {"id": chat_id, "type": "private"},
                                           "text": body.get("text", "")}}

    @staticmethod
    async def _body(request: Request) -> Dict[str, Any]:
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        if "json" in content_type:
            return json.loads(raw or b"{}")
        if "multipart" in content_type:
            form = await request.form()
            return {k: v for k, v in form.items()}
        return {k: v[0] for k, v in parse_qs(raw.decode()).items()}

    def _record(self, api: str, method: str, body: Dict[str, Any], request: Request, **extra: Any) -> None:
        with self._lock:
            self.calls.append({"api": api, "method": method, "body": body,
                               "authorization": request.headers.get("authorization"), **extra})

    def find(self, api: str, method: str) -> List[Dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["api"] == api and c["method"] == method]

    def wait_for(self, api: str, method: str, predicate, timeout: float = 30.0) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [c for c in self.find(api, method) if predicate(c)]
            if found:
                return found
            time.sleep(0.1)
        return []


class ServerThread:
    """Runs an ASGI app with uvicorn in a daemon thread."""

    def __init__(self, app: Any, port: int, start_timeout: float = 20.0) -> None:
        self.start_timeout = start_timeout
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws="none"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self.server.started:
            assert self.thread.is_alive(), "server thread exited before it started"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
