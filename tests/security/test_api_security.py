"""Security of the HTTP surface of ``nebras serve`` (no model needed: the app is not ready, which
is enough to see whether a request gets past authentication, CORS, rate and size limits).

- the bearer token is compared with ``hmac.compare_digest`` (constant time), whatever is presented;
- CORS is closed by default and opens only for the configured origins;
- the per-sender rate limit is per sender (one noisy sender does not block another);
- size caps hold for a declared ``Content-Length`` and for a streamed (chunked) body;
- secrets come from the environment only, and never reach a log line or a committed config file.
"""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from nebras_bot.serving import security
from nebras_bot.serving.app import create_app
from nebras_bot.serving.settings import ServingSettings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-bearer-token-for-security-tests"
NOT_READY = 503


def client_for(**settings) -> TestClient:
    settings.setdefault("endpoints", None)
    settings.setdefault("web_chat", False)
    return TestClient(create_app(ServingSettings(**settings)))  # no `with`: the model is never loaded


def chat(client: TestClient, sender: str = "u1", message: str = "hello", **kwargs):
    return client.post("/v1/chat", json={"sender_id": sender, "message": message}, **kwargs)


# --------------------------------------------------------------------------- auth


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer ", "Basic " + TOKEN, "Bearer wrong",
                                    "Bearer " + TOKEN[:-1], "Bearer " + TOKEN + "x"])
def test_every_presented_token_goes_through_compare_digest(monkeypatch, header) -> None:
    calls = []
    real = security.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    client = client_for(api_token=TOKEN)
    headers = {} if header is None else {"Authorization": header}
    response = chat(client, headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    scheme = (header or "").partition(" ")[0].lower()
    if scheme == "bearer":  # a bearer token was presented: it was compared in constant time
        assert calls and all(b == TOKEN.encode() for _, b in calls)
    assert TOKEN not in response.text


def test_right_token_passes_and_is_compared_in_constant_time(monkeypatch) -> None:
    calls = []
    real = security.hmac.compare_digest
    monkeypatch.setattr(security.hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
    response = chat(client_for(api_token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == NOT_READY and calls


def test_no_plain_comparison_of_the_token_in_the_source() -> None:
    source = Path(security.__file__).read_text()
    assert "compare_digest" in source
    assert not re.search(r"(presented|token|expected)\s*[!=]=\s*(presented|token|expected)", source)


# --------------------------------------------------------------------------- CORS


def preflight(client: TestClient, origin: str):
    return client.options("/v1/chat", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                               "Access-Control-Request-Headers": "authorization,content-type"})


def test_cors_is_closed_by_default() -> None:
    client = client_for()
    assert "access-control-allow-origin" not in preflight(client, "https://evil.example").headers
    response = chat(client, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_opens_only_for_configured_origins(monkeypatch) -> None:
    monkeypatch.setenv("NEBRAS_CORS_ORIGINS", "https://shop.example, https://help.example")
    settings = ServingSettings(endpoints=None, web_chat=False)
    assert settings.cors_origins == ["https://shop.example", "https://help.example"]
    client = TestClient(create_app(settings))
    allowed = preflight(client, "https://shop.example")
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://shop.example"
    assert "*" not in allowed.headers["access-control-allow-origin"]
    denied = preflight(client, "https://evil.example")
    assert denied.headers.get("access-control-allow-origin") != "https://evil.example"


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_is_per_sender_with_retry_after() -> None:
    client = client_for(rate_limit_per_minute=60, rate_limit_burst=3)
    codes = [chat(client, sender="noisy").status_code for _ in range(5)]
    assert codes[:3] == [NOT_READY] * 3 and codes[3:] == [429, 429]
    limited = chat(client, sender="noisy")
    assert int(limited.headers["retry-after"]) >= 1 and "too many" in limited.json()["detail"]
    assert chat(client, sender="quiet").status_code == NOT_READY  # another sender is not affected


# --------------------------------------------------------------------------- size caps


def test_declared_oversized_body_is_413() -> None:
    client = client_for(max_body_bytes=1024)
    response = chat(client, message="x" * 5000)
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_streamed_oversized_body_without_length_is_413() -> None:
    client = client_for(max_body_bytes=1024)

    def chunks():
        yield b'{"sender_id": "u1", "message": "'
        for _ in range(50):
            yield b"y" * 100
        yield b'"}'

    response = client.post("/v1/chat", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_long_message_is_422_with_the_limit_named() -> None:
    client = client_for(max_message_chars=100, max_body_bytes=64 * 1024)
    response = chat(client, message="z" * 101)
    assert response.status_code == 422 and "limit is 100" in response.text


# --------------------------------------------------------------------------- secrets


def test_token_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("NEBRAS_API_TOKEN", TOKEN)
    assert ServingSettings().api_token == TOKEN and ServingSettings().auth_enabled
    monkeypatch.setenv("NEBRAS_API_TOKEN", "")
    assert not ServingSettings().auth_enabled


def test_tokens_never_reach_the_logs(monkeypatch) -> None:
    from nebras_bot.monitoring.logging import configure_logging

    stream = io.StringIO()
    configure_logging(logging.DEBUG, json_logs=True, stream=stream)
    try:
        monkeypatch.setenv("NEBRAS_API_TOKEN", TOKEN)
        client = TestClient(create_app(ServingSettings(endpoints=None, web_chat=False)))
        for header in (f"Bearer {TOKEN}", "Bearer wrong-guess-token-123", f"Basic {TOKEN}"):
            chat(client, headers={"Authorization": header})
        client.get("/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_nebras", False):
                root.removeHandler(handler)
    logs = stream.getvalue()
    assert '"request"' in logs, "nothing was logged: the check proves nothing"
    assert TOKEN not in logs and "wrong-guess-token-123" not in logs


SECRET_KEY = re.compile(r"(^|_)(token|secret|password|passwd|dsn|api_key|apikey|signing_secret)$", re.IGNORECASE)
ENV_PLACEHOLDER = re.compile(r"^\$\{[A-Z0-9_]+\}$")


def _secret_values(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if SECRET_KEY.search(str(key)) and isinstance(value, (str, int)) and str(value).strip():
                yield f"{path}.{key}", str(value)
            yield from _secret_values(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _secret_values(value, f"{path}[{index}]")


@pytest.mark.parametrize("name", ["credentials.yml", "endpoints.yml", "docker-compose.yml"])
def test_config_files_hold_no_literal_secrets(name) -> None:
    path = ROOT / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this checkout")
    literal = [(where, value) for where, value in _secret_values(yaml.safe_load(path.read_text()) or {})
               if not ENV_PLACEHOLDER.match(value) and not value.startswith("${")]
    assert not literal, f"{name} holds secrets that should come from the environment: {literal}"
