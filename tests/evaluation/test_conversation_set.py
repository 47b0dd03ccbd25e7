"""The shipped conversation set (tests/dialogues/conversations.yml) is valid and covers every flow."""
from __future__ import annotations

from pathlib import Path

from nebras_bot.evaluation.dialogues import load_conversations

SET = Path(__file__).resolve().parents[1] / "dialogues" / "conversations.yml"


def test_conversation_set_parses_and_covers_the_multi_turn_flows():
    conversations = load_conversations(SET)
    names = " ".join(c.name for c in conversations).lower()
    for flow in ("order", "refund", "ticket", "hand-off", "feedback", "out-of-scope", "complaint", "decline",
                 "interrupted", "out of the blue", "cancel an order whose id is asked for", "status"):
        assert flow in names, f"no conversation covers {flow}"
    turns = [t for c in conversations for t in c.turns]
    assert sum(bool(t.expect.must_recall) for t in turns) >= 10  # context-retention checks
    assert sum(bool(t.capture) for t in turns) >= 4  # ticket ids issued by the bot, reused later
    assert all(len(c.turns) >= 2 for c in conversations)
    assert any(t.expect.silent for t in turns)  # the bot stays quiet once a human took over
