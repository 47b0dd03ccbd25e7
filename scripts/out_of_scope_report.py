"""Out-of-scope messages: does the generated reply say what the assistant can and cannot do?

Twelve messages that are not in the NLU data (``data/nlu/chitchat.yml`` holds other out-of-scope
examples), each answered through the serving path as the generative policy asks for it: intent
``out_of_scope``, ``utter_generative`` in generate mode (no template in the prompt), its text as the
fallback (:func:`nebras_bot.evaluation.serving_path.build_generator`). For each reply the script
prints whether it was generated, and reads it three ways:

- ``declines``: it says it cannot help with that ("can't help", "outside", "not able to", ...);
- ``offers``: it names at least two of the things the assistant does (orders, delivery, payments,
  refunds, invoices, the account, a support ticket);
- ``steps``: it gives numbered steps, the generic Bitext answer ("1. Log in to your account ...")
  that earlier models wrote for anything they did not know.

A useful reply declines and offers, without steps. Usage::

    python scripts/out_of_scope_report.py --model models/nlg/current [--timeout 600] [--json out.json]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nebras_bot.evaluation.replay import parse_arguments, replay, save_rows  # noqa: E402

INTENT = "out_of_scope"
MESSAGES = (
    "what's the weather on Mars?",
    "who is the president of France",
    "can you recommend a recipe for lasagna",
    "how many legs does a spider have",
    "translate good morning into Spanish",
    "what time does the football match start tonight",
    "tell me a bedtime story",
    "which stocks should I buy",
    "how do I learn to play guitar",
    "what is the square root of 144",
    "can you find me a cheap hotel in Rome",
    "do you like pizza",
)
DECLINES = re.compile(
    r"\b(can(?:no|')t|cannot|unable to|not able to|outside|beyond|not (?:something|sure)|only help|afraid)\b", re.I
)
TOPICS = {
    "orders": re.compile(r"\border", re.I),
    "delivery": re.compile(r"\b(deliver|shipping|shipment)", re.I),
    "payments": re.compile(r"\bpayment", re.I),
    "refunds": re.compile(r"\brefund", re.I),
    "invoices": re.compile(r"\binvoice", re.I),
    "account": re.compile(r"\baccount\b", re.I),
    "tickets": re.compile(r"\bticket", re.I),
}
STEPS = re.compile(r"(^|\s)[1-9]\.\s+\w")


def read_reply(text: str) -> dict:
    """The three readings of one reply (see the module docstring)."""
    topics = sorted(name for name, pattern in TOPICS.items() if pattern.search(text))
    return {
        "declines": bool(DECLINES.search(text)), "offers": len(topics) >= 2, "topics": topics,
        "steps": bool(STEPS.search(text)),
    }


def useful(row: dict) -> bool:
    """Declines and offers, without generic steps."""
    return row["declines"] and row["offers"] and not row["steps"]


def run(model: str, timeout_s: float) -> List[dict]:
    from nebras_bot.evaluation.evaluate import first_turn_context
    from nebras_bot.evaluation.serving_path import reply_inputs

    served = replay(model, timeout_s)
    prompt_template, fallback = reply_inputs(served.templates.template(INTENT, {}), served.templates.generative,
                                             served.mode)
    rows = []
    for message in MESSAGES:
        result = served.generator.reply(first_turn_context(message, INTENT, {}, prompt_template), fallback, {})
        rows.append({"message": message, "generated": bool(result.generated), "reason": result.reason,
                     "text": result.text, **read_reply(result.text)})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(__doc__.split("\n")[0], argv)
    rows = run(args.model, args.timeout)
    for row in rows:
        status = "generated" if row["generated"] else f"template ({row['reason']})"
        marks = ", ".join(name for name in ("declines", "offers", "steps") if row[name]) or "-"
        print(f"- {row['message']}: {status}; {marks}\n    {row['text']}")
    generated = [r for r in rows if r["generated"]]
    print(f"generated {len(generated)} of {len(rows)}; of those: declines {sum(r['declines'] for r in generated)}, "
          f"offers {sum(r['offers'] for r in generated)}, steps {sum(r['steps'] for r in generated)}, "
          f"useful {sum(useful(r) for r in generated)}; useful replies sent (templates included): "
          f"{sum(useful(r) for r in rows)} of {len(rows)}")
    save_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
