"""Training examples: dialogues -> prompts (the serving prompt format) -> token ids with a loss mask.

Every agent turn that follows a user turn is one example. Its prompt is built exactly as at
serving time (``nebras_bot.generation.prompt.build_training_pair`` with the same
``PromptSettings`` and the model's own token counter): the history so far, the intent and
entities of the latest user message, the slots filled by earlier entities, the domain's templated
reply for the intent and, with retrieval, exemplar replies from the training index (never the
example's own reply). Labels are ``-100`` on every prompt token, so the loss is on the agent's
reply (and its ``<|end|>`` marker) only.

Packing puts several short examples into one row of at most ``max_length`` tokens (first fit in
order), so little compute is spent on padding; each example attends only to itself, with positions
from 0 (``training/packing.py``), as at serving time.

Template sketches (recipe ``template_sketch_share``): Bitext replies do not follow the domain's
templates, so a model trained on them learns to ignore the template in its prompt, and at serving
time it does not rephrase the template it is given. For a share of the training examples the
template is replaced by a sketch of the example's own reply (2-4 of its sentences), so the
template's content is what the reply must carry (:func:`sketch_templates`).

Earlier exchanges (recipe ``prior_exchange_share``): Bitext rows are first messages, but at serving
time most replies follow earlier turns, often about something else ("cancel my order", then "which
payment methods do you accept?"). A model trained only on first messages carried the earlier topic
into its reply. For a share of the single-turn training examples the history starts with an
exchange of another intent (its message and reply; its entities become slots), so the model learns
to answer the latest message and keep the earlier facts (:func:`add_prior_exchanges`).
"""
from __future__ import annotations

import itertools
import logging
import random
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from nebras_bot.data.records import Dialogue
from nebras_bot.data.templates import render_template
from nebras_bot.generation.prompt import PromptContext, PromptSettings, after_exchange, build_training_pair
from nebras_bot.training import packing

if TYPE_CHECKING:
    from nebras_bot.training.recipe import Recipe

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
EXEMPLAR_LINE = "\nexemplar: "  # how the prompt builder writes one exemplar (sanitised: one line)


@dataclass
class Exchange:
    """One training example before tokenisation."""

    context: PromptContext
    reply: str
    query: str  # the latest user message (what retrieval looks up)
    intent: Optional[str]


@dataclass
class Encoded:
    input_ids: List[int]
    labels: List[int]
    # Exemplars the example had (up to the prompt's limit) and how many the prompt builder kept:
    # it drops exemplars when the system block is over its token budget, which silently turns
    # retrieval conditioning off (``conditioning_report`` reports it).
    exemplars_retrieved: int = 0
    exemplars_in_prompt: int = 0
    truncated: bool = False  # the completion (reply + <|end|>) was cut by max_length
    # A packed row: the lengths of the examples it holds, in order (None: one example).
    segments: Optional[List[int]] = None

    def __len__(self) -> int:
        return len(self.input_ids)


def exchanges(dialogues: Sequence[Dialogue], templates: Optional[Mapping[str, List[dict]]] = None) -> List[Exchange]:
    """``Exchange`` objects for every (history, agent reply) pair of the dialogues."""
    templates = templates or {}
    result: List[Exchange] = []
    for dialogue in dialogues:
        for history, agent in dialogue.exchanges():
            latest = history[-1]
            slots: Dict[str, str] = {}
            for turn in history[:-1]:
                slots.update(turn.entities)
            values = {**slots, **latest.entities}
            variants = templates.get(latest.intent or "")
            template = render_template(variants, values) if variants else None
            context = PromptContext(
                history=list(history),
                intent=latest.intent,
                entities=dict(latest.entities),
                slots=slots,
                template=template,
            )
            result.append(Exchange(context=context, reply=agent.text, query=latest.text, intent=latest.intent))
    return result


# Where a reply splits into sentences: after . ! ? before a capital letter or a digit, and at line breaks.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])|\s*\n+\s*")
_TRAILING_ENUMERATOR = re.compile(r"\s*\d+\.$")  # "...follow these steps: 1." -> "...follow these steps:"
SKETCH_MIN_WORDS = 4  # shorter pieces ("2.", "Thanks!") are never part of a sketch
SKETCH_SENTENCES = (2, 4)  # a sketch has this many sentences, at most
SKETCH_MAX_CHARS = 320  # about as long as the domain's templates


def sketch(reply: str, rng: random.Random) -> Optional[str]:
    """A short template that states part of ``reply``: 2-4 consecutive sentences of its body (the
    opening acknowledgement and the closing offer left out when it has more than three), at most
    :data:`SKETCH_MAX_CHARS` characters; None when no sentence has :data:`SKETCH_MIN_WORDS` words."""
    pieces = [_TRAILING_ENUMERATOR.sub("", p.strip()) for p in _SENTENCE_BREAK.split(reply)]
    pieces = [p for p in pieces if len(p.split()) >= SKETCH_MIN_WORDS]
    if not pieces:
        return None
    body = pieces[1:-1] if len(pieces) > 3 else pieces
    count = rng.randint(*SKETCH_SENTENCES)
    start = rng.randrange(max(1, len(body) - count + 1))
    text = ""
    for sentence in body[start : start + count]:
        if text and len(text) + 1 + len(sentence) > SKETCH_MAX_CHARS:
            break
        text = f"{text} {sentence}".strip()
    return text[:SKETCH_MAX_CHARS]


def sketch_templates(examples: Sequence[Exchange], share: float, seed: int) -> int:
    """Replace the template of ``share`` of ``examples`` (chosen with ``seed``) by a sketch of
    their own reply; returns how many were replaced."""
    if share <= 0:
        return 0
    rng = random.Random(seed)
    replaced = 0
    for example in examples:
        if rng.random() >= share:
            continue
        text = sketch(example.reply, rng)
        if text:
            example.context.template = text
            replaced += 1
    return replaced


PRIOR_TRIES = 8  # draws for an earlier exchange of another intent before an example keeps its single turn


def add_prior_exchanges(examples: Sequence[Exchange], share: float, seed: int) -> int:
    """Put an exchange of another intent before ``share`` of the single-turn ``examples`` (chosen
    with ``seed``): its user message and agent reply start the history, its entities become slots
    (the latest message's own entities stay as they are). Returns how many examples were changed;
    the replies, queries and intents are untouched."""
    if share <= 0:
        return 0
    rng = random.Random(f"prior:{seed}")
    singles = [e for e in examples if len(e.context.history) == 1 and e.intent]
    # What the earlier exchanges are drawn from: the examples as they were, never an augmented one.
    pool = [(e.context.history[0], e.reply, dict(e.context.entities), e.intent) for e in singles]
    added = 0
    for example in singles:
        if rng.random() >= share:
            continue
        for _ in range(PRIOR_TRIES):
            user, reply, entities, intent = pool[rng.randrange(len(pool))]
            if intent != example.intent:
                break
        else:
            continue
        after_exchange(example.context, user, reply, entities)
        added += 1
    return added


def add_exemplars(examples: Sequence[Exchange], index, k: int) -> None:
    """Fill each example's exemplars from ``index`` (an ``ExemplarIndex``), excluding its own reply."""
    for example in examples:
        example.context.exemplars = index.top_k(example.query, k=k, intent=example.intent, exclude=[example.reply])


def encode(
    example: Exchange, tokenizer, settings: PromptSettings, max_length: int
) -> Encoded:
    """Token ids of prompt + completion; labels only on the completion; cut to ``max_length``."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False).input_ids)

    prompt, completion = build_training_pair(example.context, example.reply, settings, count)
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    completion_ids = tokenizer(completion, add_special_tokens=False).input_ids
    if len(prompt_ids) >= max_length:  # keep the end of the prompt (the open agent turn)
        prompt_ids = prompt_ids[-(max_length // 2) :]
    truncated = len(prompt_ids) + len(completion_ids) > max_length
    input_ids = (prompt_ids + completion_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + completion_ids)[:max_length]
    return Encoded(
        input_ids=input_ids,
        labels=labels,
        exemplars_retrieved=min(len(example.context.exemplars), settings.max_exemplars),
        exemplars_in_prompt=prompt.count(EXEMPLAR_LINE),
        truncated=truncated,
    )


def conditioning_report(examples: Sequence[Encoded]) -> Dict[str, float]:
    """How many retrieved exemplars reached the prompts, and how many examples were cut.

    ``kept_share`` below 1 means the prompt budget (``max_prompt_tokens // 2`` for the system
    block) is too small for the recipe's ``exemplars``; ``truncated`` counts examples whose
    reply lost its end (``<|end|>``) to ``max_length``.
    """
    retrieved = sum(e.exemplars_retrieved for e in examples)
    kept = sum(e.exemplars_in_prompt for e in examples)
    n = max(1, len(examples))
    return {
        "mean_retrieved": round(retrieved / n, 3),
        "mean_in_prompt": round(kept / n, 3),
        "kept_share": round(kept / retrieved, 3) if retrieved else 1.0,
        "truncated": sum(1 for e in examples if e.truncated),
    }


def pack(examples: Sequence[Encoded], max_length: int) -> List[Encoded]:
    """First-fit packing of examples (in order) into rows of at most ``max_length`` tokens."""
    rows: List[Encoded] = []
    open_rows: List[Encoded] = []
    for example in examples:
        for row in open_rows:
            if len(row) + len(example) <= max_length:
                row.input_ids.extend(example.input_ids)
                row.labels.extend(example.labels)
                row.segments.append(len(example))
                break
        else:
            row = Encoded(list(example.input_ids), list(example.labels), segments=[len(example)])
            rows.append(row)
            open_rows.append(row)
            # Only the last few rows are worth trying: keeps packing linear and order-preserving.
            open_rows = open_rows[-8:]
    return rows


def collate(rows: Sequence[Encoded], pad_id: int) -> Dict[str, "object"]:
    """Right-padded tensors ``input_ids``, ``attention_mask``, ``labels`` (padding is never scored).

    Packed rows (from ``pack``) are flattened into one row without padding, with ``position_ids``
    restarting at every example and the examples' boundaries (``training.packing``)."""
    import torch

    if rows and all(row.segments for row in rows):
        return _collate_packed(rows)
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row.input_ids)
        labels[i, :n] = torch.tensor(row.labels)
        attention[i, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def _collate_packed(rows: Sequence[Encoded]) -> Dict[str, "object"]:
    import torch

    lengths = [n for row in rows for n in row.segments]
    if sum(lengths) != sum(len(row) for row in rows):
        raise ValueError("a packed row's segment lengths do not add up to its length")
    input_ids = torch.tensor([[t for row in rows for t in row.input_ids]], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": torch.tensor([[t for row in rows for t in row.labels]], dtype=torch.long),
        packing.POSITIONS: torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0),
        packing.BOUNDARIES: torch.tensor([0] + list(itertools.accumulate(lengths)), dtype=torch.int32),
    }


def batches(rows: Sequence[Encoded], batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> List[List[Encoded]]:
    """The batches of one epoch in a deterministic order (seed + epoch), rows sorted within."""
    order = list(range(len(rows)))
    if shuffle:
        random.Random(f"{seed}:{epoch}").shuffle(order)
    return [[rows[i] for i in order[start : start + batch_size]] for start in range(0, len(order), batch_size)]


def token_counts(rows: Sequence[Encoded]) -> Tuple[int, int]:
    """``(tokens, scored tokens)`` over rows."""
    return sum(len(r) for r in rows), sum(1 for r in rows for label in r.labels if label != IGNORE_INDEX)


def iterate_forever(items: Sequence) -> Iterator:
    while True:
        yield from items


def repeat_sources(dialogues: Sequence[Dialogue], copies: Mapping[str, int]) -> List[Dialogue]:
    """``dialogues`` with each one of a source named in ``copies`` there that many times (in place,
    so each copy is shuffled, packed and given an earlier exchange on its own); others once."""
    return [d for d in dialogues for _ in range(copies.get(d.source, 1))]


def encode_split(dialogues, tokenizer, recipe: "Recipe", templates, index, limit: Optional[int] = None,
                 sketches: bool = False):
    """Encoded examples of ``dialogues``; ``sketches``: apply the recipe's source repeats, template
    sketches and earlier exchanges (training only)."""
    if sketches and recipe.source_repeats:
        before = len(dialogues)
        dialogues = repeat_sources(dialogues, recipe.source_repeats)
        logger.info("source repeats %s: %d -> %d training dialogues", recipe.source_repeats, before, len(dialogues))
    examples = exchanges(dialogues, templates)
    if limit:
        examples = examples[:limit]
    if sketches and recipe.template_sketch_share > 0:
        replaced = sketch_templates(examples, recipe.template_sketch_share, recipe.seed)
        logger.info("template sketches: %d of %d training prompts", replaced, len(examples))
    if sketches and recipe.prior_exchange_share > 0:
        added = add_prior_exchanges(examples, recipe.prior_exchange_share, recipe.seed)
        logger.info("earlier exchanges: %d of %d training prompts", added, len(examples))
    if index is not None and recipe.retrieval and recipe.exemplars > 0:
        add_exemplars(examples, index, recipe.exemplars)
    settings = prompt_settings(recipe)
    encoded = [encode(e, tokenizer, settings, recipe.max_length) for e in examples]
    return examples, encoded


def prompt_settings(recipe: "Recipe") -> PromptSettings:
    """The recipe's prompt limits (the generator reads the same from the model's ``nebras.json``)."""
    return PromptSettings(
        max_history_turns=recipe.prompt.max_history_turns,
        max_prompt_tokens=recipe.prompt.max_prompt_tokens,
        max_exemplars=recipe.exemplars if recipe.retrieval else 0,
        max_field_chars=recipe.prompt.max_field_chars,
    )
