"""Scale-out proof: two ``nebras serve`` processes sharing a PostgreSQL SQL tracker store and a
Redis lock store serve one conversation, alternately and concurrently, without losing,
duplicating or interleaving events (checked in the tracker store's ``events`` table afterwards)."""
from __future__ import annotations

import json
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, List, Tuple

import httpx
import pytest
import sqlalchemy as sa

from .conftest import VENV_BIN, child_env, free_port, stop, wait_http

from helpers.services import PG_HOST, PG_PORT, PG_USER, REDIS_HOST, REDIS_PORT, answers, scratch_pg_database

pytestmark = pytest.mark.services

# (message, expected intent, expected bot text prefix)
SCRIPT = [
    ("hello", "greet", "Hello!"),
    ("where is my order", "track_order", ""),
    ("show me the options", "show_options", "Pick one"),
    ("/track_order", "track_order", ""),
    ("hi there", "greet", "Hello!"),
    ("bye", "goodbye", "Goodbye"),
]


@pytest.fixture(scope="module")
def tracker_db() -> Iterator[str]:
    if not answers(REDIS_HOST, REDIS_PORT):
        pytest.skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT}")
    with scratch_pg_database("nebras_scaleout") as name:
        yield name


def _endpoints(path: Path, database: str, prefix: str) -> Path:
    path.write_text(
        "tracker_store:\n  type: SQL\n  dialect: postgresql\n"
        f"  url: {PG_HOST}\n  port: {PG_PORT}\n  db: {database}\n  username: {PG_USER}\n"
        f"lock_store:\n  type: nebras_bot.serving.lock_store.AtomicRedisLockStore\n  url: {REDIS_HOST}\n  port: {REDIS_PORT}\n  db: 1\n  key_prefix: {prefix}\n"
    )
    return path


@pytest.fixture(scope="module")
def two_servers(serving_bot_model: Path, tracker_db: str, tmp_path_factory) -> Iterator[List[str]]:
    workdir = tmp_path_factory.mktemp("scale_out")
    endpoints = _endpoints(workdir / "endpoints.yml", tracker_db, "scaleout" + uuid.uuid4().hex[:6])
    procs: List[Tuple[subprocess.Popen, Path]] = []
    urls = []
    try:
        for index in range(2):
            port = free_port()
            log = workdir / f"serve-{index}.log"
            env = child_env(NEBRAS_RATE_LIMIT_PER_MINUTE="0", NEBRAS_HOME=str(workdir))
            with log.open("w") as out:
                proc = subprocess.Popen(
                    [str(VENV_BIN / "nebras"), "serve", "--port", str(port), "--model", str(serving_bot_model),
                     "--endpoints", str(endpoints)],
                    cwd=str(workdir), env=env, stdout=out, stderr=subprocess.STDOUT)
            procs.append((proc, log))
            urls.append(f"http://127.0.0.1:{port}")
        for (proc, log), url in zip(procs, urls):
            wait_http(url + "/readyz", timeout=300, proc=proc, log=log)
        yield urls
    finally:
        for proc, _ in procs:
            stop(proc)


def _chat(url: str, sender_id: str, message: str) -> dict:
    response = httpx.post(url + "/v1/chat", json={"sender_id": sender_id, "message": message}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def _events(database: str, sender_id: str) -> List[dict]:
    engine = sa.create_engine(f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}", future=True)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT data FROM events WHERE sender_id = :s ORDER BY id"), {"s": sender_id}).all()
    finally:
        engine.dispose()
    return [json.loads(row[0]) for row in rows]


def _turns(events: List[dict]) -> List[List[dict]]:
    """Events cut at each user message: [user, ...everything until the next user message]."""
    turns: List[List[dict]] = []
    for event in events:
        if event["event"] == "user":
            turns.append([event])
        elif turns:
            turns[-1].append(event)
    return turns


def _assert_no_duplicates(events: List[dict]) -> None:
    keys = [(e["event"], e.get("timestamp"), e.get("text"), e.get("name")) for e in events]
    assert len(keys) == len(set(keys)), "an event was stored twice"


def _assert_turn_is_whole(turn: List[dict]) -> None:
    """One user message, its bot reply, and the turn closed by action_listen before anything else."""
    actions = [e.get("name") for e in turn if e["event"] == "action"]
    assert actions and actions[-1] == "action_listen", actions
    assert actions.count("action_listen") == 1, f"two turns interleaved: {actions}"
    assert sum(e["event"] == "bot" for e in turn) == 1, turn


def test_one_conversation_alternating_between_two_servers(two_servers, tracker_db):
    sender_id = "scale-" + uuid.uuid4().hex[:8]
    for index, (message, intent, prefix) in enumerate(SCRIPT):
        url = two_servers[index % 2]
        body = _chat(url, sender_id, message)
        assert body["intent"] == intent, (url, message, body)
        assert body["messages"] and body["messages"][0]["text"].startswith(prefix)

    events = _events(tracker_db, sender_id)
    _assert_no_duplicates(events)
    turns = _turns(events)
    assert [t[0]["text"] for t in turns] == [m for m, _, _ in SCRIPT]  # none lost, none doubled, in order
    assert [t[0]["parse_data"]["intent"]["name"] for t in turns] == [i for _, i, _ in SCRIPT]
    for turn in turns:
        _assert_turn_is_whole(turn)
    assert sum(e["event"] == "session_started" for e in events) == 1  # one session, not one per server


def test_concurrent_messages_on_both_servers_are_serialised_by_the_lock(two_servers, tracker_db):
    sender_id = "race-" + uuid.uuid4().hex[:8]
    _chat(two_servers[0], sender_id, "hello")  # open the session first
    messages = [f"{text} {n}" for n, text in enumerate(["hello", "bye", "hi there", "hello", "bye", "hi there"])]
    with ThreadPoolExecutor(max_workers=len(messages)) as pool:
        results = list(pool.map(lambda pair: _chat(two_servers[pair[0] % 2], sender_id, pair[1]),
                                enumerate(messages)))
    assert all(r["messages"] for r in results)

    events = _events(tracker_db, sender_id)
    _assert_no_duplicates(events)
    turns = _turns(events)
    assert sorted(t[0]["text"] for t in turns) == sorted(["hello"] + messages)
    for turn in turns:
        _assert_turn_is_whole(turn)
