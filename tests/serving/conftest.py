"""Fixtures for the serving tests: a tiny trained Rasa bot and both chat servers.

The fixture bot (tests/fixtures/serving_bot) is trained once and cached under
``var/test-cache/`` keyed by a hash of its files, so later runs skip training.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, Iterator, Optional

import httpx
import pytest
from helpers.processes import free_port, stop  # noqa: F401 - re-exported for serving/reliability tests

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_BOT = ROOT / "tests" / "fixtures" / "serving_bot"
VENV_BIN = Path(sys.executable).parent
TOKEN = "contract-test-token"
RATE_PER_MINUTE = 30
RATE_BURST = 5


def wait_http(url: str, timeout: float, ok=(200,), proc: Optional[subprocess.Popen] = None,
              log: Optional[Path] = None) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered:\n{tail}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code in ok:
                return response
            last = response.status_code
        except httpx.HTTPError as error:
            last = error
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} did not answer {ok} within {timeout} s (last: {last})\n{tail}")


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
                "NEBRAS_HOME": str(ROOT)})
    env.pop("NEBRAS_API_TOKEN", None)
    env.update(extra)
    return env




def _fixture_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(FIXTURE_BOT.rglob("*.yml")):
        digest.update(path.relative_to(FIXTURE_BOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@pytest.fixture(scope="session")
def serving_bot_model() -> Path:
    """The trained fixture bot (``.tar.gz``), trained with ``rasa train`` on first use."""
    cache = ROOT / "var" / "test-cache"
    name = f"serving_bot-{_fixture_hash()}"
    model = cache / f"{name}.tar.gz"
    if model.exists():
        return model
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [str(VENV_BIN / "rasa"), "train", "--config", str(FIXTURE_BOT / "config.yml"),
         "--domain", str(FIXTURE_BOT / "domain.yml"), "--data", str(FIXTURE_BOT / "data"),
         "--out", str(cache), "--fixed-model-name", name],
        cwd=str(cache), env=child_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0 and model.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    return model


def write_credentials(path: Path, **channel_options) -> Path:
    lines = ["nebras_bot.serving.channel.NebrasChannel:"]
    lines += [f"  {key}: {value}" for key, value in channel_options.items()] or ["  {}"]
    if not channel_options:
        lines = ["nebras_bot.serving.channel.NebrasChannel: {}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class RunningServer:
    """A chat server under test: ``chat_url`` base for the /v1/chat contract."""

    def __init__(self, kind: str, base_url: str, client: httpx.Client) -> None:
        self.kind = kind
        self.base_url = base_url.rstrip("/")
        self.client = client

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.client.post(self.base_url + path, **kwargs)


@pytest.fixture(scope="session")
def fastapi_server(serving_bot_model: Path) -> Iterator[RunningServer]:
    """``nebras serve``'s app in-process (TestClient), loading the model through its lifespan."""
    from fastapi.testclient import TestClient

    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings

    settings = ServingSettings(model=serving_bot_model, endpoints=None, api_token=TOKEN,
                               rate_limit_per_minute=RATE_PER_MINUTE, rate_limit_burst=RATE_BURST,
                               max_message_chars=500, max_body_bytes=8192)
    app = create_app(settings)
    with TestClient(app) as client:
        deadline = time.monotonic() + 180
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.3)
        yield RunningServer("fastapi", "http://testserver", client)


SLACK_SECRET = "slack-signing-secret-for-tests"
TELEGRAM_SECRET = "telegram-secret-for-tests"
TELEGRAM_TOKEN = "123456:TEST-token"


@pytest.fixture(scope="session")
def fake_apis() -> Iterator["FakeChatAPIs"]:
    """Local fake Slack Web API + Telegram Bot API."""
    from .fake_chat_apis import FakeChatAPIs, ServerThread

    fake = FakeChatAPIs()
    fake.port = free_port()
    with ServerThread(fake.app, fake.port):
        yield fake


@pytest.fixture(scope="session")
def rasa_server(serving_bot_model: Path, fake_apis, tmp_path_factory) -> Iterator[RunningServer]:
    """``rasa run`` in a subprocess with the project's credentials.yml: the NebrasChannel, and
    Slack/Telegram configured from environment variables that point at the fake APIs."""
    workdir = tmp_path_factory.mktemp("rasa_run")
    credentials = ROOT / "credentials.yml"
    port = free_port()
    log = workdir / "rasa.log"
    fake = f"http://127.0.0.1:{fake_apis.port}"
    env = child_env(NEBRAS_API_TOKEN=TOKEN, NEBRAS_RATE_LIMIT_PER_MINUTE=str(RATE_PER_MINUTE),
                    NEBRAS_RATE_LIMIT_BURST=str(RATE_BURST), NEBRAS_MAX_MESSAGE_CHARS="500",
                    NEBRAS_MAX_BODY_BYTES="8192",
                    SLACK_TOKEN="xoxb-test", SLACK_SIGNING_SECRET=SLACK_SECRET, SLACK_API_URL=fake + "/api/",
                    TELEGRAM_TOKEN=TELEGRAM_TOKEN, TELEGRAM_SECRET_TOKEN=TELEGRAM_SECRET,
                    TELEGRAM_API_URL=fake, TELEGRAM_WEBHOOK_URL="https://bot.example.com/webhooks/telegram/webhook")
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "rasa"), "run", "--model", str(serving_bot_model), "--credentials",
             str(credentials), "--port", str(port), "--interface", "127.0.0.1",
             "--enable-api"],  # the tests read trackers back: a rejected payload stores nothing
            cwd=str(workdir), env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/webhooks/nebras/", timeout=240, proc=proc, log=log)
        with httpx.Client(timeout=30) as client:
            # /status answers before the model is loaded; wait for a served turn
            deadline = time.monotonic() + 120
            while True:
                response = client.post(base + "/webhooks/nebras/v1/chat",
                                       json={"sender_id": "warmup", "message": "hi"},
                                       headers={"Authorization": f"Bearer {TOKEN}"})
                if response.status_code == 200:
                    break
                assert time.monotonic() < deadline, response.text
                time.sleep(0.5)
            server = RunningServer("rasa", base + "/webhooks/nebras", client)
            server.root = base
            server.log = log
            yield server
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def serving_agent(fastapi_server: RunningServer):
    """The loaded fixture-bot agent, shared by the apps the API tests build."""
    return fastapi_server.client.app.state.agent_holder.agent


@pytest.fixture
def support_stores(tmp_path):
    """Ticket and feedback stores on a fresh SQLite database (never the project's var/)."""
    from nebras_bot.support import db
    from nebras_bot.support.feedback import FeedbackStore
    from nebras_bot.support.settings import SupportSettings
    from nebras_bot.support.tickets import TicketStore

    settings = SupportSettings(db_url=f"sqlite:///{tmp_path / 'support.db'}")
    engine = db.connect(settings=settings)
    return TicketStore(engine, settings), FeedbackStore(engine, settings)


@pytest.fixture
def make_client(serving_agent, support_stores):
    """``make_client(agent=..., **settings)``: a TestClient of a fresh app (lifespan run)."""
    from contextlib import ExitStack

    from fastapi.testclient import TestClient

    from nebras_bot.serving.app import create_app
    from nebras_bot.serving.settings import ServingSettings

    stack = ExitStack()

    def build(agent=serving_agent, **overrides):
        overrides.setdefault("endpoints", None)
        overrides.setdefault("rate_limit_per_minute", 0)
        app = create_app(ServingSettings(**overrides), agent=agent)
        app.state.ticket_store, app.state.feedback_store = support_stores
        return stack.enter_context(TestClient(app))

    with stack:
        yield build
