"""What the language model did in a recorded conversation: one line per bot reply, then a summary.

Reads the tracker store that ``rasa shell`` / ``rasa run`` wrote (the SQL ``tracker_store`` of
``endpoints.yml``, read as ``nebras learn`` reads it: ``var/tracker.db`` in this project) and prints, for each reply the NLG class handled, the customer's
message before it, whether the reply was generated or why the template was sent instead
(``generation_fallback``), and the start of the reply. Replies sent word for word
(``rephrase: false``: ``generated`` false and no fallback reason) are left out.

    cat benchmarks/shell_conversation.txt | make run        # the 13-turn conversation of docs/generation.md
    .venv/bin/python scripts/shell_session_report.py          # the newest conversation of endpoints.yml's store
    .venv/bin/python scripts/shell_session_report.py --db postgresql://localhost/test --sender default
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, Dict, List, Optional

from nebras_bot import paths
from nebras_bot.nlg import FALLBACK_REASON, GENERATED

SHOWN_CHARS = 110


def conversation_events(url: str, sender: Optional[str]) -> List[Dict[str, Any]]:
    """The events of ``sender``'s conversation (the most recently active one when None), in order."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as connection:
        if sender is None:
            row = connection.execute(sa.text("SELECT sender_id FROM events ORDER BY timestamp DESC LIMIT 1")).first()
            if row is None:
                raise SystemExit(f"{url}: no conversations recorded")
            sender = row[0]
        rows = connection.execute(sa.text("SELECT data FROM events WHERE sender_id = :sender ORDER BY id"),
                                  {"sender": sender}).all()
    return [json.loads(data) for (data,) in rows]


def model_turns(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One record per bot reply that went to the model: the message before it, outcome, text."""
    turns, last_user = [], ""
    for event in events:
        if event.get("event") == "user":
            last_user = event.get("text") or ""
        elif event.get("event") == "bot":
            metadata = event.get("metadata") or {}
            if metadata.get(GENERATED) or metadata.get(FALLBACK_REASON):
                turns.append({"user": last_user, "generated": bool(metadata.get(GENERATED)),
                              "reason": metadata.get(FALLBACK_REASON), "text": event.get("text") or ""})
    return turns


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="tracker store SQLAlchemy URL (default: the SQL tracker_store of endpoints.yml)")
    parser.add_argument("--sender", help="conversation id (default: the most recently active)")
    parser.add_argument("--full", action="store_true", help="print whole replies")
    args = parser.parse_args(argv)
    from nebras_bot.learning.harvest import tracker_url_from_endpoints

    url = args.db or tracker_url_from_endpoints(paths.home() / "endpoints.yml")
    if url is None:
        print("endpoints.yml has no SQL tracker_store: pass --db URL", file=sys.stderr)
        return 2
    turns = model_turns(conversation_events(url, args.sender))
    if not turns:
        print("no reply in this conversation went to the model", file=sys.stderr)
        return 1
    for turn in turns:
        outcome = "generated" if turn["generated"] else f"template ({turn['reason']})"
        text = turn["text"] if args.full else turn["text"][:SHOWN_CHARS]
        print(f"- {turn['user'][:50]!r}: {outcome}\n    {text!r}")
    reasons = Counter(str(t["reason"]).split(":")[0] for t in turns if not t["generated"])
    print(f"{sum(t['generated'] for t in turns)} of {len(turns)} generated; fallbacks: {dict(reasons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
