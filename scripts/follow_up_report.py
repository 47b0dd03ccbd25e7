"""Facts from earlier turns: six follow-up questions after the customer gave an order number.

The conversation so far is "hi, my order number is 48213" / "Thanks, I noted order 48213." (slot
``order_id=48213``); then one question per row of :data:`QUESTIONS`, each answered by the model
through the serving path (the domain's template, placeholders, guard, topic check, reranking:
:func:`nebras_bot.evaluation.serving_path.build_generator`). For each reply the script prints
whether it was generated, why not, whether it kept the order number, and whether it asked for it
again (the ``asks_known`` rule refuses that since the twelfth session, docs/generation.md).

Usage::

    python scripts/follow_up_report.py --model models/nlg/current [--timeout 600] [--json out.json]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nebras_bot.evaluation.baselines import fill_known  # noqa: E402
from nebras_bot.evaluation.replay import parse_arguments, replay, save_rows  # noqa: E402
from nebras_bot.generation.prompt import PromptTurn, after_exchange  # noqa: E402

ORDER_ID = "48213"
SLOTS = {"order_id": ORDER_ID}
OPENING_MESSAGE, OPENING_REPLY = f"hi, my order number is {ORDER_ID}", f"Thanks, I noted order {ORDER_ID}."
QUESTIONS = (
    ("cancel_order", "I want to cancel it"),
    ("track_order", "where is it now?"),
    ("get_refund", "can I get my money back for it?"),
    ("change_shipping_address", "I need to change the delivery address"),
    ("delivery_period", "how long will the delivery take?"),
    ("complaint", "it arrived broken and I want to complain"),
)


def run(model: str, timeout_s: float) -> List[dict]:
    from nebras_bot.evaluation.evaluate import first_turn_context
    from nebras_bot.evaluation.serving_path import reply_inputs
    from nebras_bot.generation import placeholders
    from nebras_bot.generation.known import asks_for_known

    served = replay(model, timeout_s)
    templates, generator = served.templates, served.generator
    generative = fill_known(templates.generative, SLOTS) if templates.generative else None
    rows = []
    for intent, question in QUESTIONS:
        prompt_template, template = reply_inputs(templates.template(intent, SLOTS), generative, served.mode)
        # the question has no entities of its own; the order number is a slot from the earlier exchange
        context = after_exchange(first_turn_context(question, intent, {}, prompt_template),
                                 PromptTurn("user", OPENING_MESSAGE), OPENING_REPLY, SLOTS)
        result = generator.reply(context, template, dict(SLOTS))
        greedy = (result.candidates[0]["raw"] if result.candidates else result.raw) or ""
        rows.append({
            "intent": intent, "question": question, "generated": bool(result.generated), "reason": result.reason,
            "keeps_order_id": ORDER_ID in result.text, "text": result.text,
            # what the greedy reply did, sent or not: does the model itself still ask again?
            "greedy_asks_again": bool(asks_for_known(placeholders.fill(greedy, SLOTS) or greedy, SLOTS)),
        })
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(__doc__.split("\n")[0], argv)
    rows = run(args.model, args.timeout)
    for row in rows:
        status = "generated" if row["generated"] else f"template ({row['reason']})"
        print(f"- {row['intent']}: {status}; keeps {ORDER_ID}: {row['keeps_order_id']}\n    {row['text']}")
    print(f"generated {sum(r['generated'] for r in rows)} of {len(rows)}, kept {ORDER_ID} in "
          f"{sum(r['keeps_order_id'] for r in rows)}, asked for it again (before the guard) in "
          f"{sum(r['greedy_asks_again'] for r in rows)}")
    save_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
