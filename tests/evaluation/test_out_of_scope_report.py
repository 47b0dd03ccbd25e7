"""scripts/out_of_scope_report.py: out-of-scope messages through the serving path, replies read three ways."""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from nebras_bot.evaluation import serving_path
from nebras_bot.generation.generator import GenerationResult

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "out_of_scope_report.py"
report = runpy.run_path(str(SCRIPT))

REDIRECT = ("I'm sorry, I can't help with that. I can help with orders, delivery, payments and refunds, "
            "or open a support ticket.")
STEPS = "I understand. 1. Log in to your account. 2. Go to the Orders section."


@pytest.mark.parametrize("text, declines, offers, steps", [
    (REDIRECT, True, True, False),
    (STEPS, False, True, True),  # account + orders: offers, but as generic steps
    ("That is outside what I do.", True, False, False),
    ("Sure! Mars is cold today.", False, False, False),
    ("I'm afraid I cannot tell. Ask me about an invoice or your account.", True, True, False),
])
def test_a_reply_is_read_for_declining_offering_and_steps(text, declines, offers, steps):
    reading = report["read_reply"](text)
    assert (reading["declines"], reading["offers"], reading["steps"]) == (declines, offers, steps)
    assert report["useful"](reading) == (declines and offers and not steps)


class Replier:
    """Alternates a redirect and generic steps; records every context it was given."""

    def __init__(self) -> None:
        self.calls = []

    def reply(self, context, template, values):
        self.calls.append((context, template, values))
        text = REDIRECT if len(self.calls) % 2 else STEPS
        return GenerationResult(text=text, generated=True, raw=text)


def test_every_message_is_an_out_of_scope_first_turn_in_generate_mode(monkeypatch, capsys):
    replier = Replier()
    monkeypatch.setattr(serving_path, "build_generator", lambda model, timeout_s=None: replier)
    rows = report["run"]("unused", 600.0)
    assert len(rows) == len(report["MESSAGES"]) == 12
    for (context, template, values), message in zip(replier.calls, report["MESSAGES"]):
        assert context.intent == "out_of_scope" and [t.text for t in context.history] == [message]
        assert context.template is None  # utter_generative is written in generate mode
        assert template.startswith("Sorry, I'm not sure I can help with that")  # the domain's fallback
        assert values == {}
    assert [r["steps"] for r in rows] == [False, True] * 6
    assert [r["declines"] for r in rows] == [True, False] * 6
    assert report["main"](["--model", "unused"]) == 0
    assert "useful replies sent (templates included): 6 of 12" in capsys.readouterr().out
