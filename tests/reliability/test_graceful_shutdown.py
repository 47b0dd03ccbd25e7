"""SIGTERM to a real ``nebras serve`` process: the requests in flight finish (graceful drain), new
connections are refused, then the process exits (uvicorn re-raises the SIGTERM after its graceful
shutdown, so the status is "terminated by SIGTERM", as an orchestrator expects).

To have a request reliably in flight, the fixture bot's replies come from a local NLG endpoint
(Rasa's ``nlg: url:`` protocol) that takes :data:`NLG_DELAY_S` to answer."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from reliability.conftest import child_env, free_port, stop, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NLG_DELAY_S = 4.0
SLOW_TEXT = "A deliberately slow reply."


class SlowNLG(BaseHTTPRequestHandler):
    delay_s = 0.0

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self.rfile.read(int(self.headers.get("content-length") or 0))
        time.sleep(self.delay_s)
        body = json.dumps({"text": SLOW_TEXT}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_sigterm_drains_in_flight_requests(serving_bot_model: Path, tmp_path: Path) -> None:
    nlg_server = ThreadingHTTPServer(("127.0.0.1", 0), SlowNLG)
    threading.Thread(target=nlg_server.serve_forever, daemon=True).start()
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(f"nlg:\n  url: http://127.0.0.1:{nlg_server.server_address[1]}/nlg\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "nebras"), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--model", str(serving_bot_model), "--endpoints", str(endpoints)],
            cwd=str(tmp_path), env=child_env(NEBRAS_RATE_LIMIT_PER_MINUTE="0"), stdout=out,
            stderr=subprocess.STDOUT)
    try:
        wait_http(base + "/readyz", timeout=480, proc=proc, log=log)
        SlowNLG.delay_s = NLG_DELAY_S
        results = {}

        def ask(n: int) -> None:
            try:
                response = httpx.post(base + "/v1/chat", json={"sender_id": f"drain-{n}", "message": "hello"},
                                      timeout=60)
                results[n] = (response.status_code, response.json())
            except Exception as error:  # noqa: BLE001 - recorded, asserted below
                results[n] = (None, repr(error))

        clients = [threading.Thread(target=ask, args=(n,)) for n in range(3)]
        for client in clients:
            client.start()
        time.sleep(NLG_DELAY_S / 3)  # the requests are now waiting on the slow NLG
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx.HTTPError):
            httpx.post(base + "/v1/chat", json={"sender_id": "late", "message": "hello"}, timeout=5)
        for client in clients:
            client.join(60)
        code = proc.wait(timeout=60)
        waited = time.monotonic() - sent_at
    finally:
        stop(proc)
        nlg_server.shutdown()

    for n in range(3):
        status, body = results[n]
        assert status == 200, (status, body, log.read_text()[-3000:])
        assert [m["text"] for m in body["messages"]] == [SLOW_TEXT]
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown: "terminated by SIGTERM"
    assert code in (0, -signal.SIGTERM), (code, log.read_text()[-3000:])
    assert waited >= NLG_DELAY_S / 2, "the process exited before the in-flight requests could finish"
