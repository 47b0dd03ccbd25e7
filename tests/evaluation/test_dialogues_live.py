"""The dialogue player against a REAL assistant: the mini fixture bot's trained Rasa agent on
Rasa's REST channel over HTTP (served in-process by ``live_server.serve_rest`` on a free port),
played through ``nebras evaluate-dialogues``."""
from __future__ import annotations

import json

import pytest

from nebras_bot.cli import main
from nebras_bot.evaluation import dialogues as dl

from .live_server import serve_rest

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


@pytest.fixture(scope="module")
def rasa_server(mini_nlu):
    """The mini bot (loaded once per session) answering on its REST channel."""
    with serve_rest(mini_nlu.agent) as url:
        yield url


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
    printed = capsys.readouterr().out  # the in-process server's log lines may be mixed in
    summary = json.JSONDecoder().raw_decode(printed[printed.index('{\n  "conversations"'):])[0]
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
