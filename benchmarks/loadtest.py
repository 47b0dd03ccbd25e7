"""Bounded load test of ``nebras serve`` on loopback: ``python -m benchmarks.loadtest``.

The script starts its own servers and stops them again:

1. the shipped assistant (``config.yml``, ``domain.yml``, ``data/``), trained once with
   ``rasa train`` WITHOUT Bitext (hand-written NLU only, so the run is quick and deterministic)
   and cached under ``var/loadtest/`` by a hash of those files (``--rasa-model`` reuses one);
2. a tiny randomly-initialised GPT-2 response model (saved once under ``var/loadtest/``) behind
   ``nebras_bot.nlg.GPT2NaturalLanguageGenerator`` with ``rephrase_all: true``, so every reply
   goes through the generator (and its guard / timeout fallback);
3. the action server (``rasa run actions``) with a fresh SQLite ticket database;
4. ``nebras serve`` with both.

Then ``--concurrency`` simulated customers each run conversations back to back for
``--duration`` seconds (a conversation already running when time is up is finished, bounded by
the HTTP timeout): greet, ask for a ticket, give an e-mail, describe the problem (the bot
confirms a ``TCK-...`` ticket), say thanks. Every reply is checked (HTTP 200, at least one
non-empty message). Afterwards every ticket id the bot confirmed is looked up in the database.

The LAST line on stdout is one JSON object: ``conversations``, ``turns``, ``errors``,
``empty_replies``, ``tickets_confirmed``, ``tickets_in_db``, ``p95_ms`` (and more). The exit
status is 0 only when errors = 0, empty replies = 0 and every confirmed ticket is in the database.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / "var" / "loadtest"
BIN = Path(sys.executable).parent
TINY_NLG_VERSION = "tiny-loadtest"
TICKET_ID = re.compile(r"\bTCK-[A-Z0-9]{6,}\b")
DEFAULT_DURATION_S = 60.0
DEFAULT_CONCURRENCY = 200
DEFAULT_HTTP_TIMEOUT_S = 120.0
START_TIMEOUT_S = 900.0  # loading the Rasa model takes minutes on a busy 2-core machine
TRAIN_TIMEOUT_S = 1200.0
ACTION_SERVER_TIMEOUT_S = 300


def log(message: str) -> None:
    print(f"[loadtest] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- what is served


def assistant_hash() -> str:
    """Hash of everything ``rasa train`` reads for the shipped assistant."""
    digest = hashlib.sha256()
    files = [ROOT / "config.yml", ROOT / "domain.yml", *sorted((ROOT / "data").rglob("*.yml"))]
    for path in files:
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def child_env(**extra: str) -> Dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1",
                "PYTHONWARNINGS": "ignore", "SQLALCHEMY_SILENCE_UBER_WARNING": "1"})
    env.pop("NEBRAS_API_TOKEN", None)
    env.update(extra)
    return env


def ensure_rasa_model(work: Path) -> Path:
    """The shipped assistant trained without Bitext, cached by :func:`assistant_hash`."""
    name = f"assistant-{assistant_hash()}"
    model = work / f"{name}.tar.gz"
    if model.is_file():
        return model
    log(f"training the shipped assistant once (no Bitext) -> {model} (a few minutes on 2 cores)")
    result = subprocess.run(
        [str(BIN / "rasa"), "train", "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
         "--out", str(work), "--fixed-model-name", name],
        cwd=str(ROOT), env=child_env(NEBRAS_BITEXT_DIR=""), capture_output=True, text=True,
        timeout=TRAIN_TIMEOUT_S,
    )
    if result.returncode != 0 or not model.is_file():
        raise RuntimeError(f"rasa train failed ({result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return model


def ensure_tiny_nlg(work: Path) -> Path:
    """A tiny random GPT-2 saved like a registry version (``nebras.json``)."""
    directory = work / "nlg-tiny"
    if (directory / "nebras.json").is_file():
        return directory
    from nebras_bot.generation.loader import save_tiny_gpt2

    return save_tiny_gpt2(directory, TINY_NLG_VERSION, seed=0)


def write_endpoints(path: Path, action_port: int, nlg_dir: Path, rephrase_all: bool, nlg_timeout: float) -> Path:
    path.write_text(
        f"action_endpoint:\n  url: \"http://127.0.0.1:{action_port}/webhook\"\n"
        "nlg:\n  type: nebras_bot.nlg.GPT2NaturalLanguageGenerator\n"
        f"  model: \"{nlg_dir}\"\n  rephrase_all: {str(rephrase_all).lower()}\n"
        f"  timeout: {nlg_timeout}\n  max_new_tokens: 24\n  torch_threads: 1\n"
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- processes


class Server:
    """A child process with its log file; ``stop()`` sends SIGTERM, then SIGKILL after a grace."""

    def __init__(self, name: str, argv: List[str], env: Dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(argv, cwd=str(ROOT), env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = 30.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_until(url: str, server: Server, timeout: float, check=lambda r: r.status_code == 200) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.proc.returncode}):\n{server.tail()}")
        try:
            response = httpx.get(url, timeout=5)
            if check(response):
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready within {timeout:.0f} s (last: {last})\n{server.tail()}")


def warm_up_actions(port: int) -> None:
    """One action call before the traffic: the action server opens (and migrates) the ticket
    database and loads the PII scrubber on its first action, which blocks it for a while; under 200
    simultaneous first calls Sanic drops the queued connections ("Cannot write to closing
    transport" on Rasa's side)."""
    body = {"next_action": "action_ticket_status", "sender_id": "warm-up", "version": "3.6.21", "domain": {},
            "tracker": {"sender_id": "warm-up", "slots": {}, "latest_message": {"text": "TCK-WARMUP1", "intent": {},
                        "entities": []}, "events": [], "paused": False, "followup_action": None,
                        "active_loop": {}, "latest_action_name": "action_listen"}}
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/webhook", json=body, timeout=START_TIMEOUT_S)
        log(f"action server warmed up ({response.status_code})")
    except httpx.HTTPError as error:
        log(f"action server warm-up failed ({error!r}); continuing")


# --------------------------------------------------------------------------- the customers


@dataclass
class Stats:
    conversations: int = 0
    turns: int = 0
    errors: int = 0
    empty_replies: int = 0
    generated_replies: int = 0
    conversations_without_ticket: int = 0
    latencies_ms: List[float] = field(default_factory=list)
    confirmed: List[str] = field(default_factory=list)
    error_samples: List[str] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what[:300])


def script(n: int) -> List[str]:
    """One customer's messages: a complete ticket conversation."""
    return [
        "hello",
        "I want to open a support ticket",
        f"load.customer{n}@example.com",
        f"My parcel number {n % 97} arrived with a broken screen and I need a replacement please.",
        "thank you",
    ]


async def conversation(client: httpx.AsyncClient, base: str, n: int, stats: Stats) -> None:
    sender = f"load-{n}-{uuid.uuid4().hex[:8]}"
    ticket: Optional[str] = None
    for text in script(n):
        started = time.perf_counter()
        try:
            response = await client.post(f"{base}/v1/chat", json={"sender_id": sender, "message": text})
        except httpx.HTTPError as error:
            stats.turns += 1
            stats.error(f"{type(error).__name__}: {error}")
            return
        stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        stats.turns += 1
        if response.status_code != 200:
            stats.error(f"HTTP {response.status_code}: {response.text}")
            return
        body = response.json()
        messages = body.get("messages") or []
        texts = [m.get("text") or "" for m in messages]
        if not messages or not any(t.strip() or m.get("buttons") or m.get("image") or m.get("custom")
                                   for t, m in zip(texts, messages)):
            stats.empty_replies += 1
        stats.generated_replies += sum(1 for m in messages if m.get("generated"))
        for text_out in texts:
            found = TICKET_ID.search(text_out)
            if found and ticket is None:
                ticket = found.group(0)
    stats.conversations += 1
    if ticket is None:
        stats.conversations_without_ticket += 1
    else:
        stats.confirmed.append(ticket)


async def customers(base: str, concurrency: int, duration_s: float, http_timeout_s: float) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + duration_s
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8)

    async with httpx.AsyncClient(timeout=http_timeout_s, limits=limits) as client:
        async def customer() -> None:
            while time.monotonic() < deadline:
                await conversation(client, base, next(counter), stats)

        await asyncio.gather(*(customer() for _ in range(concurrency)))
    return stats


def tickets_in_db(db_url: str, ids: List[str]) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("tickets"):
                return 0  # no action ever ran: nothing was stored
            stored = {row[0] for row in connection.execute(sa.text("SELECT id FROM tickets"))}
    finally:
        engine.dispose()
    return sum(1 for ticket in set(ids) if ticket in stored)


def percentile(values: List[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> Dict[str, object]:
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.rasa_model) if args.rasa_model else ensure_rasa_model(work)
    nlg_dir = ensure_tiny_nlg(work)
    run_dir = work / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    run_dir.mkdir()
    db_url = f"sqlite:///{run_dir / 'tickets.db'}"
    action_port, port = free_port(), free_port()
    endpoints = write_endpoints(run_dir / "endpoints.yml", action_port, nlg_dir, args.rephrase_all, args.nlg_timeout)
    env = child_env(NEBRAS_DB_URL=db_url, NEBRAS_HOME=str(ROOT))
    log(f"model {model.name}, response model {nlg_dir}, run dir {run_dir}")

    # rasa_sdk runs synchronous actions on Sanic's event loop: under 200 simultaneous conversations
    # requests wait in line longer than Sanic's default 60 s request/response timeouts, and Sanic
    # then closes them ("Cannot write to closing transport" on Rasa's side). Sanic reads SANIC_*.
    action_env = dict(env, SANIC_REQUEST_TIMEOUT=str(ACTION_SERVER_TIMEOUT_S),
                      SANIC_RESPONSE_TIMEOUT=str(ACTION_SERVER_TIMEOUT_S))
    actions = Server("action server", [str(BIN / "rasa"), "run", "actions", "--port", str(action_port),
                                      "--actions", "actions"], action_env, run_dir / "actions.log")
    serve = None
    try:
        wait_until(f"http://127.0.0.1:{action_port}/health", actions, START_TIMEOUT_S)
        warm_up_actions(action_port)
        serve = Server("nebras serve", [str(BIN / "nebras"), "serve", "--host", "127.0.0.1", "--port", str(port),
                                        "--model", str(model), "--endpoints", str(endpoints)],
                       env, run_dir / "serve.log")
        base = f"http://127.0.0.1:{port}"
        wait_until(f"{base}/readyz", serve, START_TIMEOUT_S)
        log(f"servers up; {args.concurrency} customers for {args.duration:.0f} s")
        started = time.monotonic()
        stats = asyncio.run(customers(base, args.concurrency, args.duration, args.http_timeout))
        elapsed = time.monotonic() - started
        serve_alive = serve.proc.poll() is None
    finally:
        serve_rc = serve.stop() if serve is not None else None
        actions.stop()
    in_db = tickets_in_db(db_url, stats.confirmed)
    summary: Dict[str, object] = {
        "conversations": stats.conversations,
        "turns": stats.turns,
        "errors": stats.errors,
        "empty_replies": stats.empty_replies,
        "tickets_confirmed": len(set(stats.confirmed)),
        "tickets_in_db": in_db,
        "p95_ms": round(percentile(stats.latencies_ms, 95), 1),
        "p50_ms": round(percentile(stats.latencies_ms, 50), 1),
        "max_ms": round(max(stats.latencies_ms, default=0.0), 1),
        "turns_per_s": round(stats.turns / elapsed, 2) if elapsed else 0.0,
        "generated_replies": stats.generated_replies,
        "conversations_without_ticket": stats.conversations_without_ticket,
        "duplicate_ticket_ids": len(stats.confirmed) - len(set(stats.confirmed)),
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "elapsed_s": round(elapsed, 1),
        "server_alive_at_end": serve_alive,
        "server_exit_code": serve_rc,
        "run_dir": str(run_dir),
    }
    if stats.error_samples:
        summary["error_samples"] = stats.error_samples
    return summary


def passed(summary: Dict[str, object]) -> bool:
    return (summary["errors"] == 0 and summary["empty_replies"] == 0 and summary["conversations"] > 0
            and summary["tickets_in_db"] == summary["tickets_confirmed"] and summary["tickets_confirmed"] > 0
            and summary["duplicate_ticket_ids"] == 0)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY,
                        help="simultaneous conversations (default 200)")
    parser.add_argument("--http-timeout", type=float, default=DEFAULT_HTTP_TIMEOUT_S, help="per request, seconds")
    parser.add_argument("--rasa-model", default=None, help="Rasa model to serve (default: train/reuse the shipped one)")
    parser.add_argument("--work-dir", default=str(WORK_DIR), help="cache and run directories (default var/loadtest)")
    parser.add_argument("--nlg-timeout", type=float, default=3.0, help="generator per-reply timeout, seconds")
    parser.add_argument("--no-rephrase-all", dest="rephrase_all", action="store_false",
                        help="only responses that opt in go through the generator")
    parser.add_argument("--out", default=None, help="also write the JSON summary to this file")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    summary = run(args)
    summary["passed"] = passed(summary)
    line = json.dumps(summary)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line, flush=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
