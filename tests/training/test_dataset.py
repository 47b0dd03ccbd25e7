"""Tokenisation for training: the loss mask, exemplars, templates, packing, collation."""
from __future__ import annotations

import re

import pytest

from nebras_bot.data.records import Dialogue, Turn
from nebras_bot.generation.loader import gpt2_tokenizer
from nebras_bot.generation.prompt import AGENT, END, PromptSettings
from nebras_bot.generation.retrieval import ExemplarIndex
from nebras_bot.training import dataset as ds

TEMPLATES = {"track_order": [
    {"text": "Order {order_id} is on its way."},
    {"text": "Which order?", "condition": [{"type": "slot", "name": "order_id", "value": None}]},
]}


@pytest.fixture(scope="module")
def tokenizer():
    return gpt2_tokenizer()


def _dialogue(i: str, user: str, agent: str, intent: str = "track_order", entities=None) -> Dialogue:
    return Dialogue(id=i, source="bitext", turns=[
        Turn(role="user", text=user, intent=intent, entities=entities or {}), Turn(role="agent", text=agent)])


def test_loss_mask_covers_exactly_the_agent_reply(tokenizer) -> None:
    dialogue = _dialogue("a", "where is order 12345?", "Order {order_id} ships today.", entities={"order_id": "12345"})
    [example] = ds.exchanges([dialogue], TEMPLATES)
    encoded = ds.encode(example, tokenizer, PromptSettings(), max_length=512)
    assert len(encoded.input_ids) == len(encoded.labels)
    scored = [i for i, label in enumerate(encoded.labels) if label != ds.IGNORE_INDEX]
    assert scored == list(range(scored[0], len(encoded.labels)))  # one contiguous block at the end
    assert [encoded.input_ids[i] for i in scored] == [encoded.labels[i] for i in scored]
    assert tokenizer.decode([encoded.labels[i] for i in scored]) == " Order {order_id} ships today." + END
    prompt = tokenizer.decode(encoded.input_ids[: scored[0]])
    assert prompt.endswith(AGENT) and "where is order 12345?" in prompt
    assert "template: Order 12345 is on its way." in prompt  # the variant Rasa would send, filled
    assert "entities: order_id=12345" in prompt


def test_template_variant_without_value_and_multi_turn_slots(tokenizer) -> None:
    dialogue = Dialogue(id="m", source="rasa_stories", turns=[
        Turn(role="user", text="my order is 777", intent="inform", entities={"order_id": "777"}),
        Turn(role="agent", text="Thanks."),
        Turn(role="user", text="where is it", intent="track_order"),
        Turn(role="agent", text="Order {order_id} is close."),
    ])
    first, second = ds.exchanges([dialogue], TEMPLATES)
    assert second.context.slots == {"order_id": "777"} and second.context.entities == {}
    assert second.context.template == "Order 777 is on its way."  # slot from turn 1 fills it
    alone = ds.exchanges([_dialogue("b", "where is it", "Tell me the order.")], TEMPLATES)[0]
    assert alone.context.template == "Which order?"  # the conditional variant for a missing slot
    assert len(second.context.history) == 3


def test_exemplars_exclude_the_examples_own_reply() -> None:
    dialogues = [
        _dialogue("a", "where is order 1", "Reply A"),
        _dialogue("b", "where is order 2", "Reply B"),
        _dialogue("c", "refund please", "Reply C", intent="get_refund"),
    ]
    examples = ds.exchanges(dialogues)
    index = ExemplarIndex.build([e.query for e in examples], [e.reply for e in examples], [e.intent for e in examples])
    ds.add_exemplars(examples, index, k=2)
    assert examples[0].context.exemplars == ["Reply B"]  # own reply excluded, other intents filtered
    assert examples[1].context.exemplars == ["Reply A"]
    assert examples[2].context.exemplars == []


def test_truncation_to_max_length(tokenizer) -> None:
    example = ds.exchanges([_dialogue("a", "hi", "word " * 400)])[0]
    encoded = ds.encode(example, tokenizer, PromptSettings(), max_length=64)
    assert len(encoded.input_ids) == 64 and any(label != ds.IGNORE_INDEX for label in encoded.labels)
    assert encoded.truncated and ds.conditioning_report([encoded])["truncated"] == 1
    whole = ds.encode(example, tokenizer, PromptSettings(), max_length=1024)
    assert not whole.truncated and ds.conditioning_report([whole])["truncated"] == 0


def _with_exemplars(words: int) -> ds.Exchange:
    example = ds.exchanges([_dialogue("a", "where is order 1", "Reply.")], TEMPLATES)[0]
    example.context.exemplars = [f"First exemplar {'alpha ' * words}", f"Second exemplar {'beta ' * words}"]
    return example


@pytest.mark.parametrize(
    "max_prompt_tokens, words, kept",
    [(384, 10, 2), (384, 110, 1), (384, 190, 0), (1024, 110, 2), (1024, 190, 2)],  # 110 words ~ a typical reply
)
def test_report_counts_exemplars_the_prompt_budget_drops(tokenizer, max_prompt_tokens, words, kept) -> None:
    settings = PromptSettings(max_prompt_tokens=max_prompt_tokens, max_field_chars=1200, max_exemplars=2)
    encoded = ds.encode(_with_exemplars(words), tokenizer, settings, max_length=2048)
    assert (encoded.exemplars_retrieved, encoded.exemplars_in_prompt) == (2, kept)
    report = ds.conditioning_report([encoded])
    assert report["mean_retrieved"] == 2 and report["mean_in_prompt"] == kept and report["kept_share"] == kept / 2


PACK_CASES = [
    # (example lengths, max_length, expected row lengths)
    ([3, 3, 3], 10, [9]),
    ([6, 6, 6], 10, [6, 6, 6]),
    ([6, 4, 5, 5], 10, [10, 10]),
    ([10, 1], 10, [10, 1]),
    ([2, 9, 7], 10, [9, 9]),
]


@pytest.mark.parametrize("lengths, max_length, expected", PACK_CASES)
def test_packing(lengths, max_length, expected) -> None:
    examples = [ds.Encoded(input_ids=[n * 100 + i for i in range(n)], labels=[ds.IGNORE_INDEX] + list(range(1, n)))
                for n in lengths]
    rows = ds.pack(examples, max_length)
    assert [len(r) for r in rows] == expected
    assert all(len(r.input_ids) == len(r.labels) <= max_length for r in rows)
    # Nothing is lost or reordered within a row, and every label stays aligned with its token.
    assert sorted(t for r in rows for t in r.input_ids) == sorted(t for e in examples for t in e.input_ids)
    assert sum(l != ds.IGNORE_INDEX for r in rows for l in r.labels) == sum(n - 1 for n in lengths)


def test_collate_pads_without_scoring_padding() -> None:
    rows = [ds.Encoded([1, 2, 3], [ds.IGNORE_INDEX, 2, 3]), ds.Encoded([4], [4])]
    batch = ds.collate(rows, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]


def test_batches_are_deterministic_per_epoch() -> None:
    rows = [ds.Encoded([i], [i]) for i in range(10)]
    first = [[r.input_ids[0] for r in b] for b in ds.batches(rows, 3, seed=1, epoch=0)]
    assert first == [[r.input_ids[0] for r in b] for b in ds.batches(rows, 3, seed=1, epoch=0)]
    assert first != [[r.input_ids[0] for r in b] for b in ds.batches(rows, 3, seed=1, epoch=1)]
    assert sorted(sum(first, [])) == list(range(10))


# --------------------------------------------------------------------------- template sketches

SKETCHED_REPLY = (
    "I understand that you want to cancel order {order_id}. To cancel it, please follow these steps: "
    "1. Log in to your account on our website. 2. Open the Order History section. "
    "3. Click on Cancel next to order {order_id}. 4. Confirm the cancellation when asked.\n"
    "If you need any further help, our support team is here for you."
)


def test_a_sketch_is_a_few_body_sentences_of_the_reply() -> None:
    import random

    from nebras_bot.training.dataset import SKETCH_MAX_CHARS, sketch

    seen = set()
    for seed in range(30):
        text = sketch(SKETCHED_REPLY, random.Random(seed))
        assert text and len(text) <= SKETCH_MAX_CHARS
        assert "I understand" not in text and "further help" not in text  # opening and closing left out
        assert not text.rstrip().endswith(("1.", "2.", "3.")), text  # no dangling list numbers
        for sentence in re.split(r"(?<=[.:])\s+", text):  # each piece is the reply's own text
            assert sentence in SKETCHED_REPLY, sentence
        seen.add(text)
    assert len(seen) > 3  # different examples get different sketches
    assert sketch("Thanks! Bye.", random.Random(0)) is None


def test_sketch_templates_replaces_the_asked_share_and_only_that(tiny_dataset) -> None:
    from nebras_bot.data.prepare import load_split
    from nebras_bot.training.dataset import exchanges, sketch_templates

    examples = exchanges(load_split(tiny_dataset, "train"), {})
    replies = [e.reply for e in examples]
    assert sketch_templates(examples, 0.0, seed=1) == 0
    assert all(e.context.template is None for e in examples)
    replaced = sketch_templates(examples, 0.5, seed=1)
    assert 0.25 * len(examples) < replaced < 0.75 * len(examples)
    sketched = [e for e in examples if e.context.template]
    assert len(sketched) == replaced
    assert all(e.context.template.split(". ")[0].rstrip(".") in e.reply for e in sketched)
    assert [e.reply for e in examples] == replies  # the replies are untouched


def _encode_train_split(tiny_dataset, recipe, training: bool):
    """``encode_split`` of the fixture's training dialogues without retrieval: as validation
    (``training=False``) or as training (sketches and earlier exchanges applied)."""
    from nebras_bot.data.prepare import load_split
    from nebras_bot.generation.loader import gpt2_tokenizer
    from nebras_bot.training.dataset import encode_split

    return encode_split(load_split(tiny_dataset, "train"), gpt2_tokenizer(), recipe, {}, None, sketches=training)


def test_only_training_prompts_are_sketched(tiny_dataset, tiny_recipe) -> None:
    recipe = tiny_recipe.with_overrides({"template_sketch_share": 1.0, "retrieval": False})
    plain, _ = _encode_train_split(tiny_dataset, recipe, training=False)
    sketched, _ = _encode_train_split(tiny_dataset, recipe, training=True)
    assert not any(e.context.template for e in plain)
    assert sum(bool(e.context.template) for e in sketched) > 0.5 * len(sketched)


# --------------------------------------------------------------------------- earlier exchanges


def test_add_prior_exchanges_puts_another_intents_exchange_first(tiny_dataset) -> None:
    from nebras_bot.data.prepare import load_split
    from nebras_bot.training.dataset import add_prior_exchanges, exchanges

    examples = exchanges(load_split(tiny_dataset, "train"), {})
    singles = [e for e in examples if len(e.context.history) == 1]
    before = {id(e): (e.reply, e.query, e.intent, e.context.history[0], dict(e.context.slots)) for e in examples}
    by_message = {e.context.history[0].text: (e.reply, e.intent, dict(e.context.entities)) for e in singles}
    assert add_prior_exchanges(examples, 0.0, seed=1) == 0
    added = add_prior_exchanges(examples, 0.5, seed=1)
    assert 0.25 * len(singles) < added < 0.75 * len(singles)
    changed = [e for e in singles if len(e.context.history) == 3]
    assert len(changed) == added
    for example in changed:
        reply, query, intent, latest, slots = before[id(example)]
        assert (example.reply, example.query, example.intent) == (reply, query, intent)  # the target is untouched
        user, agent, last = example.context.history
        assert (user.role, agent.role, last) == ("user", "agent", latest)
        prior_reply, prior_intent, prior_entities = by_message[user.text]
        assert prior_intent != intent  # a change of subject
        assert agent.text == prior_reply  # the earlier exchange as it was, never an augmented one
        assert dict(example.context.slots) == {**prior_entities, **slots}
    assert all(len(e.context.history) in (1, 3) for e in singles)


def test_prior_exchanges_are_deterministic_and_training_only(tiny_dataset, tiny_recipe) -> None:
    from nebras_bot.generation.loader import gpt2_tokenizer

    recipe = tiny_recipe.with_overrides({"prior_exchange_share": 1.0, "retrieval": False})
    tokenizer = gpt2_tokenizer()
    plain, _ = _encode_train_split(tiny_dataset, recipe, training=False)
    first, encoded = _encode_train_split(tiny_dataset, recipe, training=True)
    again, _ = _encode_train_split(tiny_dataset, recipe, training=True)
    histories = [[t.text for t in e.context.history] for e in first]
    assert histories == [[t.text for t in e.context.history] for e in again]
    changed = [i for i, (p, f) in enumerate(zip(plain, first)) if len(f.context.history) == len(p.context.history) + 2]
    assert len(changed) > 0.8 * sum(len(p.context.history) == 1 for p in plain)  # share 1.0: almost every single turn
    # the earlier exchange reaches the tokens the model is trained on, before the latest message
    i = changed[0]
    prompt = tokenizer.decode([t for t, label in zip(encoded[i].input_ids, encoded[i].labels) if label == -100])
    assert prompt.count("<|user|>") == 2
    assert prompt.index(histories[i][0][:20]) < prompt.rindex("<|user|>") < prompt.index(histories[i][-1][:20])


# --------------------------------------------------------------------------- source repeats


@pytest.mark.parametrize("copies, expected", [
    ({}, ["b1", "r1", "b2", "s1"]),
    ({"rasa_rules": 1}, ["b1", "r1", "b2", "s1"]),
    ({"rasa_rules": 3}, ["b1", "r1", "r1", "r1", "b2", "s1"]),
    ({"rasa_rules": 2, "rasa_stories": 2}, ["b1", "r1", "r1", "b2", "s1", "s1"]),
    ({"tickets": 5}, ["b1", "r1", "b2", "s1"]),  # a source with no dialogues changes nothing
])
def test_repeat_sources_copies_only_the_named_sources_in_place(copies, expected) -> None:
    def dialogue(i: str, source: str) -> Dialogue:
        return Dialogue(id=i, source=source, turns=[Turn(role="user", text="hi"), Turn(role="agent", text="hello")])

    dialogues = [dialogue("b1", "bitext"), dialogue("r1", "rasa_rules"), dialogue("b2", "bitext"),
                 dialogue("s1", "rasa_stories")]
    assert [d.id for d in ds.repeat_sources(dialogues, copies)] == expected
    assert [d.id for d in dialogues] == ["b1", "r1", "b2", "s1"]  # the input list is untouched


@pytest.mark.parametrize("value, message", [
    ({"bitexts": 2}, "unknown source"),
    ({"rasa_rules": 0}, "copies must be >= 1"),
])
def test_recipe_refuses_bad_source_repeats(value, message) -> None:
    from nebras_bot.training.recipe import Recipe

    with pytest.raises(ValueError, match=message):
        Recipe(source_repeats=value)


def test_source_repeats_apply_to_training_prompts_only(tiny_dataset, tiny_recipe) -> None:
    from nebras_bot.data.prepare import load_split

    rules = [d for d in load_split(tiny_dataset, "train") if d.source == "rasa_rules"]
    assert rules  # the fixture project's out-of-scope exchanges are in the training split
    recipe = tiny_recipe.with_overrides({"source_repeats": {"rasa_rules": 4}, "retrieval": False})
    plain, _ = _encode_train_split(tiny_dataset, recipe, training=False)
    repeated, encoded = _encode_train_split(tiny_dataset, recipe, training=True)
    assert len(repeated) == len(encoded) == len(plain) + 3 * len(rules)
    rule_replies = {d.turns[-1].text for d in rules}
    assert sum(e.reply in rule_replies for e in repeated) == 4 * sum(e.reply in rule_replies for e in plain)
