"""Prompt builder (shared format): properties with hypothesis, plus the multi-turn carry-over."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nebras_bot.generation.prompt import (
    AGENT,
    END,
    ROLE_MARKERS,
    SYSTEM,
    USER,
    PromptContext,
    PromptSettings,
    PromptTurn,
    after_exchange,
    build_prompt,
    contains_role_marker,
    cut_at_end,
    sanitize,
)

# Text that tries hard to look like our markers and fields.
hostile = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(["<|", "|>", "user", "agent", "system", "end", "\n", "intent:", "＜｜", "｜＞", " ", "\u200b", "<", ">", "|", "x"]),
        max_size=30,
    ).map("".join),
)
turns = st.lists(
    st.tuples(st.sampled_from(["user", "agent"]), hostile).map(lambda t: PromptTurn(*t)), min_size=1, max_size=10
).map(lambda ts: ts + [PromptTurn("user", "latest question")])


@given(hostile)
def test_sanitized_text_never_holds_a_marker_or_a_new_line(text):
    clean = sanitize(text)
    assert not contains_role_marker(clean)
    assert "\n" not in clean
    assert sanitize(clean) == clean  # idempotent


@settings(max_examples=60, deadline=None)
@given(turns, hostile, st.integers(min_value=64, max_value=400), st.integers(min_value=0, max_value=8))
def test_prompt_structure_holds_for_any_input(history, template, budget, max_turns):
    context = PromptContext(history=history, intent="track_order", slots={"order_id": "12345"}, template=template)
    prompt = build_prompt(context, PromptSettings(max_prompt_tokens=budget, max_history_turns=max_turns))
    lines = prompt.split("\n")
    assert lines[0] == SYSTEM
    assert lines[-1] == AGENT
    # every line is either a system field or one turn: user text can never add lines or markers
    body = [line for line in lines[1:-1] if not line.startswith(("intent:", "entities:", "slots:", "template:", "exemplar:"))]
    for line in body:
        assert line.startswith((USER + " ", AGENT + " ")), line
        inner = line[len(USER) + 1 :] if line.startswith(USER) else line[len(AGENT) + 1 :]
        if line.startswith(AGENT):
            assert inner.endswith(END)
            inner = inner[: -len(END)]
        assert not any(marker in inner for marker in ROLE_MARKERS)
    assert prompt.count(SYSTEM) == 1
    if max_turns > 0:
        assert body and body[-1] == USER + " latest question"  # the latest message is always kept


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh ", min_size=5, max_size=60), min_size=1, max_size=20))
def test_most_recent_turns_are_kept_first(texts):
    history = [PromptTurn("user" if i % 2 == 0 else "agent", f"t{i} {text}") for i, text in enumerate(texts)]
    prompt = build_prompt(PromptContext(history=history), PromptSettings(max_prompt_tokens=80, max_history_turns=20))
    kept = [line for line in prompt.split("\n")[1:-1]]
    if len(kept) > 0:
        indices = [int(line.split()[1][1:]) for line in kept]
        assert indices == list(range(len(history) - len(kept), len(history)))  # a suffix of the history


def test_prompt_for_turn_three_carries_the_order_id_from_turn_one():
    from rasa.shared.core.domain import Domain
    from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered
    from rasa.shared.core.trackers import DialogueStateTracker

    from nebras_bot.generation.context import context_from_tracker

    domain = Domain.from_yaml(
        """
version: "3.1"
intents: [inform, thank_you, track_order]
entities: [order_id]
slots:
  order_id:
    type: text
    mappings: [{type: from_entity, entity: order_id}]
"""
    )
    tracker = DialogueStateTracker.from_events(
        "s1",
        [
            ActionExecuted("action_listen"),
            UserUttered("my order is 48213", {"name": "inform", "confidence": 0.9},
                        [{"entity": "order_id", "value": "48213", "start": 12, "end": 17}]),
            SlotSet("order_id", "48213"),
            BotUttered("Thanks, noted."),
            ActionExecuted("action_listen"),
            UserUttered("thanks", {"name": "thank_you", "confidence": 0.9}),
            BotUttered("You're welcome."),
            ActionExecuted("action_listen"),
            UserUttered("so where is it?", {"name": "track_order", "confidence": 0.8}),
        ],
        slots=domain.slots,
    )
    context = context_from_tracker(tracker, template="Your order is on its way.")
    assert context.intent == "track_order" and context.entities == {}
    prompt = build_prompt(context)
    assert "slots: order_id=48213" in prompt
    assert "<|user|> my order is 48213" in prompt
    assert prompt.endswith("<|user|> so where is it?\n<|agent|>")


def test_cut_at_end_stops_at_any_marker():
    assert cut_at_end(" Your order is here.<|end|><|user|> more") == "Your order is here."
    assert cut_at_end(" Sure <|user|> fake turn") == "Sure"
    assert cut_at_end("<|agent|>") == ""


def test_after_exchange_puts_the_earlier_exchange_first_and_keeps_the_own_slots():
    latest = PromptTurn("user", "which payment methods do you accept?")
    context = PromptContext(history=[latest], intent="check_payment_methods", slots={"email": "a@b.c"})
    earlier = PromptTurn("user", "cancel order 123 please")
    assert after_exchange(context, earlier, "Order 123 is cancelled.", {"order_id": "123", "email": "x@y.z"}) is context
    assert [(t.role, t.text) for t in context.history] == [
        ("user", "cancel order 123 please"), ("agent", "Order 123 is cancelled."), ("user", latest.text)]
    assert context.slots == {"order_id": "123", "email": "a@b.c"}  # the context's own slot wins
    prompt = build_prompt(context)
    assert prompt.index("cancel order 123") < prompt.index("Order 123 is cancelled.") < prompt.index(latest.text)

