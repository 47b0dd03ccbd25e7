"""scripts/follow_up_report.py: follow-up questions after an order number, through the serving path."""
from __future__ import annotations

import runpy
from pathlib import Path

from nebras_bot.evaluation import serving_path
from nebras_bot.generation.generator import GenerationResult

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "follow_up_report.py"
report = runpy.run_path(str(SCRIPT))


class AskingReplier:
    """The greedy reply asks for the order number on odd calls (refused; a sampled one is sent),
    and keeps it ({order_id}) on even calls."""

    def __init__(self) -> None:
        self.contexts = []

    def reply(self, context, template, values):
        self.contexts.append(context)
        if len(self.contexts) % 2:
            greedy = {"raw": "Could you share your order number?", "text": None, "reason": "asks_known: order_id"}
            return GenerationResult(text="We are on it.", generated=True, raw="We are on it.",
                                    candidates=[greedy, {"raw": "We are on it.", "text": "We are on it."}], chosen=1)
        return GenerationResult(text=f"Order {values['order_id']} is noted.", generated=True, raw="Order {order_id} is noted.")


def test_every_question_follows_the_order_number_and_asking_again_is_counted(monkeypatch, capsys):
    replier = AskingReplier()
    monkeypatch.setattr(serving_path, "build_generator", lambda model, timeout_s=None: replier)
    rows = report["run"]("unused", 600.0)
    assert len(rows) == len(report["QUESTIONS"]) == 6
    for context, (intent, question) in zip(replier.contexts, report["QUESTIONS"]):
        assert context.intent == intent and context.slots == {"order_id": "48213"}
        assert [t.text for t in context.history] == ["hi, my order number is 48213", "Thanks, I noted order 48213.", question]
    assert [r["greedy_asks_again"] for r in rows] == [True, False] * 3
    assert [r["keeps_order_id"] for r in rows] == [False, True] * 3
    assert all(r["generated"] for r in rows)
