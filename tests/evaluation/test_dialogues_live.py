"""The dialogue player against a REAL assistant: the mini fixture bot served by ``rasa run`` on its
REST channel (a subprocess on a free port), played through ``nebras evaluate-dialogues``."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation import dialogues as dl

from .conftest import REPO_ROOT

START_TIMEOUT_S = 240

# The mini bot remembers order_id in a slot (from_entity); utter_track_order has a variant for an
# empty slot ("Which order is it about?") and one that repeats the id.
LIVE_CONVERSATIONS = """
conversations:
  - name: order id given, then remembered when tracking
    turns:
      - user: hello
        expect:
          must_match: ["hello|hi"]
      - user: my order is 12345
        remember: {order_id: "12345"}
        expect:
          must_recall: [order_id]
      - user: where is my order
        expect:
          must_recall: [order_id]
          must_not_match: ["which order"]
  - name: tracking without an id asks for it
    turns:
      - user: where is my order
        expect:
          must_match: ["which order"]
      - user: thanks
        expect:
          must_match: ["welcome|glad"]
  - name: an expectation the bot does not meet is reported
    turns:
      - user: where is my order
        expect:
          must_match: ["TCK-[0-9]{6}"]
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def rasa_server(mini_bot_archive, tmp_path_factory):
    """``rasa run`` with the REST channel on a free port; stopped (terminate, then kill) afterwards."""
    root = tmp_path_factory.mktemp("rasa_run")
    credentials = root / "credentials.yml"
    credentials.write_text("rest:\n")
    port = _free_port()
    log = root / "rasa.log"
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}
    rasa = Path(sys.executable).with_name("rasa")
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [str(rasa), "run", "--model", str(mini_bot_archive), "--port", str(port), "--interface", "127.0.0.1",
             "--credentials", str(credentials)],
            cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rasa run exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/webhooks/rest/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rasa run did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_player_against_rasa_run(rasa_server, tmp_path, capsys):
    conversations = tmp_path / "live.yml"
    conversations.write_text(LIVE_CONVERSATIONS)
    out = tmp_path / "dialogues.json"
    code = main(["evaluate-dialogues", "--conversations", str(conversations), "--url", rasa_server,
                 "--out", str(out), "--wait", "10", "--fail-under", "0.5"])
    result = json.loads(out.read_text())
    assert code == 0, result["failures"]
    assert result["errors"] == 0 and result["empty_replies"] == 0
    # Context retention on a real tracker: the order id from turn 2 is in turn 3's reply.
    assert result["checks"]["context_retention"] == {"passed": 2, "total": 2, "pass_rate": 1.0}
    first = result["results"][0]["turns"]
    assert "12345" in " ".join(first[2]["bot"]) and "which order" not in " ".join(first[2]["bot"]).lower()
    # The conversations do not leak into each other (fresh sender ids): the second is asked.
    assert "which order" in " ".join(result["results"][1]["turns"][0]["bot"]).lower()
    # Exactly the impossible expectation fails.
    assert [(f["conversation"], f["check"]) for f in result["failures"]] == [
        ("an expectation the bot does not meet is reported", "must_match")]
    assert result["conversations_passed"] == 2
    assert result["latency_ms"]["p50"] > 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failures"] == 1 and summary["turns"] == 6


def test_fail_under_gives_exit_code_1(rasa_server, tmp_path):
    conversations = tmp_path / "live.yml"
    conversations.write_text(LIVE_CONVERSATIONS)
    code = main(["evaluate-dialogues", "--conversations", str(conversations), "--url", rasa_server,
                 "--out", str(tmp_path / "d.json"), "--fail-under", "1.0"])
    assert code == 1


def test_rest_sender_talks_to_the_real_channel(rasa_server):
    send, close = dl.rest_sender(rasa_server, timeout_s=30)
    try:
        assert send("live-sender-check", "are you a bot") == ["I am a bot."]
    finally:
        close()
