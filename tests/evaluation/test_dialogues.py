"""The dialogue player against a fake assistant (a tiny local HTTP server speaking Rasa's REST channel)."""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from nebras_bot.evaluation import dialogues as dl

CONVERSATIONS = """
conversations:
  - name: order id asked then remembered
    turns:
      - user: where is my order?
        expect:
          must_match: ["order (id|number)"]
      - user: it is 55501234
        remember: {order_id: "55501234"}
        expect:
          must_recall: [order_id]
      - user: where is my order?
        expect:
          must_recall: [order_id]
          must_not_match: ["which order"]
  - name: ticket captured and looked up
    turns:
      - user: open a ticket
        capture: {ticket_id: "(TCK-\\\\d{6})"}
      - user: status of {ticket_id}
        expect:
          must_recall: [ticket_id]
          must_match: ["open"]
  - name: silence
    turns:
      - user: say nothing
"""


class FakeAssistant(BaseHTTPRequestHandler):
    """Remembers an order id per sender; forgets it when the server's ``forgetful`` flag is set."""

    memory: dict = {}

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"Hello from the fake assistant")

    def do_POST(self):
        if self.path != dl.REST_PATH:
            self.send_response(404)
            self.end_headers()
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sender, text = body["sender"], body["message"]
        replies = self.answer(sender, text)
        payload = json.dumps([{"recipient_id": sender, "text": r} for r in replies]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def answer(self, sender: str, text: str) -> list:
        forgetful = self.server.forgetful
        if text.startswith("status of"):
            return [f"Ticket {text.split()[-1]} is open."]
        number = re.search(r"\b\d{6,}\b", text)
        if number and not forgetful:
            self.memory[sender] = number.group(0)
        if number:
            return [f"Thanks, I noted order {number.group(0)}."]
        if "where is my order" in text:
            if sender in self.memory:
                return [f"Order {self.memory[sender]} is on its way."]
            return ["Which order? Please give me your order number."]
        if "open a ticket" in text:
            return ["I created ticket TCK-123456 for you.", "Anything else?"]
        return []


@pytest.fixture
def fake_assistant():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAssistant)
    server.forgetful = False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _play(tmp_path: Path, url: str, text: str = CONVERSATIONS) -> dict:
    path = tmp_path / "conversations.yml"
    path.write_text(text)
    send, close = dl.rest_sender(url, timeout_s=5)
    try:
        return dl.play(dl.load_conversations(path), send)
    finally:
        close()


def test_player_checks_every_type_against_a_good_assistant(tmp_path, fake_assistant):
    _, url = fake_assistant
    report = _play(tmp_path, url)
    checks = report["checks"]
    assert report["conversations"] == 3 and report["turns"] == 6
    assert checks["context_retention"] == {"passed": 3, "total": 3, "pass_rate": 1.0}
    assert checks["capture"] == {"passed": 1, "total": 1, "pass_rate": 1.0}
    assert checks["must_match"]["passed"] == checks["must_match"]["total"] == 2
    assert checks["must_not_match"]["pass_rate"] == 1.0
    # Only the silent conversation fails: its reply is empty.
    assert checks["non_empty"] == {"passed": 5, "total": 6, "pass_rate": 5 / 6}
    assert report["empty_replies"] == 1 and report["errors"] == 0
    assert report["conversations_passed"] == 2
    assert [f["conversation"] for f in report["failures"]] == ["silence"]
    # The captured ticket id was substituted into the next user message.
    assert report["results"][1]["turns"][1]["user"] == "status of TCK-123456"
    assert report["latency_ms"]["p50"] > 0 and report["latency_ms"]["p95"] >= report["latency_ms"]["p50"]
    json.dumps(report)  # the report is JSON-serialisable


def test_player_detects_an_assistant_that_forgets(tmp_path, fake_assistant):
    server, url = fake_assistant
    server.forgetful = True
    report = _play(tmp_path, url)
    retention = report["checks"]["context_retention"]
    # Turn 2 echoes the number it was just given; turn 3 needed the memory and fails twice.
    assert retention["passed"] == 2 and retention["total"] == 3
    assert report["checks"]["must_not_match"]["pass_rate"] == 0.0
    failed = {(f["conversation"], f["turn"], f["check"]) for f in report["failures"]}
    assert ("order id asked then remembered", 3, "context_retention") in failed


def test_unreachable_assistant_is_recorded_per_turn(tmp_path):
    report = _play(tmp_path, "http://127.0.0.1:9")  # discard port: connection refused
    assert report["errors"] == report["turns"] == 6
    assert report["empty_replies"] == 6
    assert report["failures"][0]["error"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("conversations: []", "non-empty 'conversations:'"),
        ("conversations:\n  - name: x\n    turns: [{bot: hi}]", "non-empty 'user'"),
        ("conversations:\n  - name: x\n    turns: [{user: hi, expect: {must_match: ['(']}}]", "invalid regex"),
        ("conversations:\n  - name: x\n    turns: [{user: hi, expect: {must_recall: [email]}}]", "fact 'email'"),
        ("conversations:\n  - name: x\n    turns: [{user: hi, expect: {must_macth: a}}]", "unknown key"),
        ("conversations:\n  - name: x\n    turns: [{user: hi, expect: {silent: true, must_match: a}}]",
         "'silent' cannot be combined"),
    ],
)
def test_malformed_conversation_files_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(dl.ConversationFileError, match=re.escape(message)):
        dl.load_conversations(path)


def test_webhook_url_and_wait(fake_assistant):
    _, url = fake_assistant
    assert dl.webhook_url("http://h:5005/") == "http://h:5005/webhooks/rest/webhook"
    assert dl.webhook_url("http://h:5005/webhooks/rest/webhook") == "http://h:5005/webhooks/rest/webhook"
    assert dl.wait_for(url, 2)
    assert not dl.wait_for("http://127.0.0.1:9", 0.6)


SILENT = """
conversations:
  - name: paused after a hand-off
    turns:
      - user: open a ticket
        capture: {ticket_id: "(TCK-\\\\d{6})"}
      - user: say nothing
        expect: {silent: true}
      - user: where is my order?
        expect: {silent: true}
"""


def test_silent_expectation(tmp_path, fake_assistant):
    _, url = fake_assistant
    report = _play(tmp_path, url, SILENT)
    # The expected silence passes and is not an empty-reply failure; a reply where silence was
    # expected fails the silent check.
    assert report["checks"]["silent"] == {"passed": 1, "total": 2, "pass_rate": 0.5}
    assert report["checks"]["non_empty"] == {"passed": 1, "total": 1, "pass_rate": 1.0}
    assert report["empty_replies"] == 0
    assert [(f["turn"], f["check"]) for f in report["failures"]] == [(3, "silent")]
