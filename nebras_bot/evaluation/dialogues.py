"""Play scripted conversations against a running assistant's REST channel and check every bot turn.

The conversation file format (YAML) is documented in ``docs/evaluation.md``::

    conversations:
      - name: order status asks for the order id and remembers it
        turns:
          - user: where is my order?
            expect:
              must_match: ["order (id|number)"]
          - user: it is 12345678
            remember: {order_id: "12345678"}
            expect:
              must_recall: [order_id]
          - user: can I cancel it?
            expect:
              must_recall: [order_id]          # context retention: repeat a fact from an earlier turn
              must_not_match: ["(?i)which order"]

Check types: ``non_empty`` (on by default), ``silent`` (the bot must not answer, e.g. after a hand-off
paused the conversation for a human; such turns do not count as empty replies), ``must_match``, ``must_not_match`` (regexes, searched
case-insensitively unless ``case_sensitive: true``), ``context_retention`` (``must_recall``: facts
named by an earlier ``remember`` or ``capture``) and ``capture`` (a regex whose first group, or
whole match, becomes a fact, e.g. a ticket id the bot issued; ``{name}`` in later user text is
replaced by the fact).
"""
from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from nebras_bot.evaluation.textmetrics import percentile

REST_PATH = "/webhooks/rest/webhook"
CHECK_TYPES: tuple[str, ...] = ("non_empty", "silent", "must_match", "must_not_match", "context_retention", "capture")
_TURN_KEYS = {"user", "remember", "capture", "expect"}
_EXPECT_KEYS = {"non_empty", "silent", "must_match", "must_not_match", "must_recall", "case_sensitive"}
_FACT_REF = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")


class ConversationFileError(ValueError):
    """The conversation YAML is malformed; the message says where."""


@dataclass
class Expectation:
    non_empty: bool = True
    silent: bool = False
    must_match: List[str] = field(default_factory=list)
    must_not_match: List[str] = field(default_factory=list)
    must_recall: List[str] = field(default_factory=list)
    case_sensitive: bool = False


@dataclass
class ScriptTurn:
    user: str
    expect: Expectation = field(default_factory=Expectation)
    remember: Dict[str, str] = field(default_factory=dict)
    capture: Dict[str, str] = field(default_factory=dict)


@dataclass
class Conversation:
    name: str
    turns: List[ScriptTurn]
    description: str = ""


def _string_list(value: Any, where: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConversationFileError(f"{where}: expected a string or a list of strings, got {value!r}")


def _compile_all(patterns: Sequence[str], where: str) -> None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ConversationFileError(f"{where}: invalid regex {pattern!r}: {error}") from error


def _parse_turn(raw: Any, where: str, known_facts: set) -> ScriptTurn:
    if isinstance(raw, dict) and isinstance(raw.get("user"), (int, float)) and not isinstance(raw["user"], bool):
        raw = {**raw, "user": str(raw["user"])}  # `user: 4587345` (quote ids with leading zeros)
    if not isinstance(raw, dict) or not isinstance(raw.get("user"), str) or not raw["user"].strip():
        raise ConversationFileError(f"{where}: a turn needs a non-empty 'user' message")
    unknown = set(raw) - _TURN_KEYS
    if unknown:
        raise ConversationFileError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {sorted(_TURN_KEYS)}")
    expect_raw = raw.get("expect") or {}
    if not isinstance(expect_raw, dict):
        raise ConversationFileError(f"{where}.expect: expected a mapping")
    unknown = set(expect_raw) - _EXPECT_KEYS
    if unknown:
        raise ConversationFileError(f"{where}.expect: unknown key(s) {sorted(unknown)}; allowed {sorted(_EXPECT_KEYS)}")
    silent = bool(expect_raw.get("silent", False))
    if silent and any(expect_raw.get(k) for k in ("must_match", "must_recall")):
        raise ConversationFileError(f"{where}.expect: 'silent' cannot be combined with must_match/must_recall")
    expect = Expectation(
        non_empty=bool(expect_raw.get("non_empty", not silent)) and not silent,
        silent=silent,
        must_match=_string_list(expect_raw.get("must_match"), f"{where}.expect.must_match"),
        must_not_match=_string_list(expect_raw.get("must_not_match"), f"{where}.expect.must_not_match"),
        must_recall=_string_list(expect_raw.get("must_recall"), f"{where}.expect.must_recall"),
        case_sensitive=bool(expect_raw.get("case_sensitive", False)),
    )
    _compile_all(expect.must_match + expect.must_not_match, f"{where}.expect")
    remember = raw.get("remember") or {}
    capture = raw.get("capture") or {}
    for key, mapping in (("remember", remember), ("capture", capture)):
        if not isinstance(mapping, dict) or not all(isinstance(v, (str, int)) for v in mapping.values()):
            raise ConversationFileError(f"{where}.{key}: expected a mapping of fact name -> string")
    _compile_all([str(v) for v in capture.values()], f"{where}.capture")
    # Facts used by this turn must have been introduced earlier (or by this turn's remember).
    available = known_facts | set(remember)
    for name in expect.must_recall + _FACT_REF.findall(raw["user"]):
        if name not in available:
            raise ConversationFileError(f"{where}: fact {name!r} is used before any turn remembers or captures it")
    known_facts.update(remember, capture)
    return ScriptTurn(
        user=raw["user"],
        expect=expect,
        remember={k: str(v) for k, v in remember.items()},
        capture={k: str(v) for k, v in capture.items()},
    )


def parse_conversations(content: Any, source: str = "<conversations>") -> List[Conversation]:
    """Validate the parsed YAML and build the conversations (errors name the conversation/turn)."""
    if isinstance(content, dict):
        content = content.get("conversations")
    if not isinstance(content, list) or not content:
        raise ConversationFileError(f"{source}: expected a non-empty 'conversations:' list")
    conversations = []
    for index, raw in enumerate(content):
        where = f"{source}: conversations[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("turns"), list) or not raw["turns"]:
            raise ConversationFileError(f"{where}: a conversation needs a 'name' and a non-empty 'turns' list")
        name = str(raw.get("name") or f"conversation {index + 1}")
        facts: set = set()
        turns = [
            _parse_turn(turn, f"{where} ({name}) turn {number + 1}", facts)
            for number, turn in enumerate(raw["turns"])
        ]
        conversations.append(Conversation(name=name, turns=turns, description=str(raw.get("description", ""))))
    return conversations


def load_conversations(path: Path | str) -> List[Conversation]:
    path = Path(path)
    if not path.is_file():
        raise ConversationFileError(f"conversation file {path} not found")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConversationFileError(f"{path}: not valid YAML: {error}") from error
    return parse_conversations(content, str(path))


def webhook_url(url: str) -> str:
    """The REST channel endpoint for an assistant base URL (or the endpoint itself)."""
    url = url.rstrip("/")
    return url if url.endswith(REST_PATH) else url + REST_PATH


# A sender: (sender_id, message) -> list of bot message texts.
Sender = Callable[[str, str], List[str]]


def rest_sender(url: str, timeout_s: float) -> Tuple[Sender, Callable[[], None]]:
    """A sender posting to Rasa's REST channel, and a function closing its connection pool."""
    import httpx

    client = httpx.Client(timeout=timeout_s)
    endpoint = webhook_url(url)

    def send(sender_id: str, message: str) -> List[str]:
        response = client.post(endpoint, json={"sender": sender_id, "message": message})
        response.raise_for_status()
        payload = response.json()
        if not isinstance(payload, list):
            raise ValueError(f"unexpected REST channel answer: {payload!r:.200}")
        return [str(m["text"]) for m in payload if isinstance(m, dict) and m.get("text")]

    return send, client.close


def _flags(expect: Expectation) -> int:
    return 0 if expect.case_sensitive else re.IGNORECASE


def check_turn(reply: str, turn: ScriptTurn, facts: Dict[str, str]) -> List[Dict[str, Any]]:
    """Evaluate one bot reply; returns one record per check. Updates ``facts`` from captures."""
    expect, flags, checks = turn.expect, _flags(turn.expect), []
    if expect.non_empty:
        checks.append({"type": "non_empty", "passed": bool(reply.strip()), "detail": ""})
    if expect.silent:
        checks.append({"type": "silent", "passed": not reply.strip(), "detail": ""})
    for pattern in expect.must_match:
        checks.append({"type": "must_match", "passed": bool(re.search(pattern, reply, flags)), "detail": pattern})
    for pattern in expect.must_not_match:
        checks.append({"type": "must_not_match", "passed": not re.search(pattern, reply, flags), "detail": pattern})
    for name in expect.must_recall:
        value = facts.get(name)
        passed = bool(value) and value.lower() in reply.lower()
        checks.append({"type": "context_retention", "passed": passed, "detail": f"{name}={value}"})
    for name, pattern in turn.capture.items():
        match = re.search(pattern, reply, flags)
        if match:
            facts[name] = match.group(1) if match.groups() else match.group(0)
        checks.append({"type": "capture", "passed": bool(match), "detail": f"{name}: {pattern}"})
    return checks


def _substitute(text: str, facts: Dict[str, str]) -> str:
    return _FACT_REF.sub(lambda m: facts.get(m.group(1), m.group(0)), text)


def play(
    conversations: Sequence[Conversation],
    send: Sender,
    sender_prefix: str = "nebras-eval",
    progress: Optional[Callable[[int], None]] = None,
) -> Dict[str, Any]:
    """Play every conversation (a fresh sender id each) and summarise the checks as a dict."""
    run_id = uuid.uuid4().hex[:8]
    results, latencies, empty_replies, errors = [], [], 0, 0
    for index, conversation in enumerate(conversations):
        sender_id, facts, turns_out = f"{sender_prefix}-{run_id}-{index}", {}, []
        for number, turn in enumerate(conversation.turns, start=1):
            facts.update(turn.remember)
            message = _substitute(turn.user, facts)
            started = time.perf_counter()
            error = None
            try:
                texts = send(sender_id, message)
            except Exception as exc:  # the assistant failed this turn: record it, keep playing
                texts, error = [], f"{type(exc).__name__}: {exc}"
                errors += 1
            latency_ms = (time.perf_counter() - started) * 1000.0
            latencies.append(latency_ms)
            reply = "\n".join(texts)
            empty_replies += not reply.strip() and not turn.expect.silent  # expected silence is not a failure
            checks = check_turn(reply, turn, facts)
            turns_out.append({
                "turn": number, "user": message, "bot": texts, "latency_ms": round(latency_ms, 2),
                "error": error, "checks": checks, "passed": all(c["passed"] for c in checks),
            })
        results.append({
            "name": conversation.name, "sender": sender_id, "turns": turns_out,
            "passed": all(t["passed"] for t in turns_out),
        })
        if progress is not None:
            progress(1)
    return summarise(results, latencies, empty_replies, errors)


def summarise(results: List[Dict[str, Any]], latencies: List[float], empty: int, errors: int) -> Dict[str, Any]:
    by_type = {name: {"passed": 0, "total": 0} for name in CHECK_TYPES}
    failures = []
    for conversation in results:
        for turn in conversation["turns"]:
            for check in turn["checks"]:
                by_type[check["type"]]["total"] += 1
                by_type[check["type"]]["passed"] += check["passed"]
                if not check["passed"]:
                    failures.append({
                        "conversation": conversation["name"], "turn": turn["turn"], "user": turn["user"],
                        "bot": " | ".join(turn["bot"]), "check": check["type"], "detail": check["detail"],
                        "error": turn["error"],
                    })
    for counts in by_type.values():
        counts["pass_rate"] = counts["passed"] / counts["total"] if counts["total"] else None
    passed = sum(c["passed"] for c in by_type.values())
    total = sum(c["total"] for c in by_type.values())
    turns = sum(len(c["turns"]) for c in results)
    return {
        "conversations": len(results),
        "conversations_passed": sum(c["passed"] for c in results),
        "turns": turns,
        "turns_passed": sum(t["passed"] for c in results for t in c["turns"]),
        "checks": by_type,
        "pass_rate": passed / total if total else None,
        "context_retention": by_type["context_retention"]["pass_rate"],
        "empty_replies": empty,
        "errors": errors,
        "latency_ms": {
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95),
            "max": max(latencies) if latencies else None,
            "mean": sum(latencies) / len(latencies) if latencies else None,
        },
        "failures": failures,
        "results": results,
    }


def wait_for(url: str, timeout_s: float) -> bool:
    """Poll the assistant's base URL until it answers (any HTTP status) or the timeout passes."""
    import httpx

    base = url.rstrip("/")
    if base.endswith(REST_PATH):
        base = base[: -len(REST_PATH)]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(base + "/", timeout=2.0)
            return True
        except httpx.HTTPError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
