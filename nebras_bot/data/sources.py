"""Data sources, each turned into ``Dialogue`` records (``nebras_bot.data.records``).

- Bitext CSVs: one user turn (instruction, intent, entity) and one agent turn (response) per row.
  About a third of Bitext's entity offsets are wrong; the value is then searched in the message
  and widened to the whole token (``123842`` inside ``00123842`` becomes ``00123842``), and dropped
  when it is not in the message at all (counted).
- The assistant's Rasa stories (via Rasa's ``RasaFileImporter``): multi-turn dialogues whose agent
  turns are the domain's ``utter_`` responses (form questions included) and whose user turns are
  NLU examples of the story's intent, chosen deterministically, with the story's entity values.
  Custom actions have no text at training time and are skipped.
- The assistant's domain responses: every NLU example of an intent paired with the domain's
  ``utter_<intent>`` reply (each text variant in turn), so a machine without Bitext still gets a
  few hundred single-exchange dialogues (``nebras data prepare`` adds them when there is no Bitext).
- The assistant's rules that answer an intent with a generated response (``utter_generative`` for
  ``out_of_scope``): every NLU example of the intent paired with that response's text variants.
  Bitext has no out-of-scope rows, so without them the model has never seen what such a reply is.
- Logged conversations and tickets: JSON Lines of ``Dialogue`` records (the continuous-learning
  loop writes these).
"""
from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from nebras_bot.data import bitext
from nebras_bot.data.records import (
    AGENT, SOURCE_BITEXT, SOURCE_DOMAIN, SOURCE_RULES, SOURCE_STORIES, USER, Dialogue, Turn, read_jsonl,
)

logger = logging.getLogger(__name__)

_TOKEN_CHARS = re.compile(r"[\w#@.\-]")


def stable_id(*parts: str) -> str:
    """A short deterministic id from the given strings."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:12]


def resolve_entity(row: bitext.BitextRow, stats: Optional[Counter] = None) -> Dict[str, str]:
    """``{entity_type: value}`` for a Bitext row, with the offset/value problems repaired."""
    stats = stats if stats is not None else Counter()
    if not row.entity_type or not row.entity_value.strip():
        return {}
    if row.entity_span_ok:
        return {row.entity_type: row.entity_value}
    value = row.entity_value.strip()
    text = row.instruction
    index = text.find(value)
    if index < 0:
        index = text.lower().find(value.lower())
    if index < 0:
        stats["entity_not_in_message"] += 1
        return {}
    start, end = index, index + len(value)
    if value[:1].isalnum() or value[-1:].isalnum():
        while start > 0 and _TOKEN_CHARS.match(text[start - 1]) and text[start - 1] not in ".-":
            start -= 1
        while end < len(text) and _TOKEN_CHARS.match(text[end]) and text[end] not in ".-":
            end += 1
    stats["entity_offset_repaired"] += 1
    return {row.entity_type: text[start:end]}


def bitext_dialogues(
    directory: Path | str, files: Sequence[str] = ("responses.csv",), stats: Optional[Counter] = None
) -> Iterator[Dialogue]:
    """Dialogues from the Bitext CSVs in ``directory`` (rows without a response are skipped)."""
    stats = stats if stats is not None else Counter()
    for filename in files:
        for number, row in enumerate(bitext.iter_dir(directory, filename)):
            if not row.response.strip():
                stats["bitext_row_without_response"] += 1
                continue
            found = resolve_entity(row, stats)
            yield Dialogue(
                id=f"bitext-{Path(filename).stem}-{number:05d}-{stable_id(row.instruction, row.response)[:6]}",
                source=SOURCE_BITEXT,
                turns=[
                    Turn(role=USER, text=row.instruction, intent=row.intent, entities=found),
                    Turn(role=AGENT, text=row.response),
                ],
                slots=dict(found),
                meta={"file": filename, "category": row.category, "tags": row.tags},
            )


def jsonl_dialogues(paths: Iterable[Path | str]) -> Iterator[Dialogue]:
    """Logged conversations and tickets (JSON Lines of ``Dialogue``); a bad line raises with its number."""
    for path in paths:
        path = Path(path)
        with path.open(encoding="utf-8") as handle:
            try:
                yield from read_jsonl(handle)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from error


# --------------------------------------------------------------------------- Rasa stories


def _importer(domain_path: Path | str, data_paths: Sequence[Path | str]):
    """Rasa's file importer over the project's domain and training data."""
    from rasa.shared.importers.rasa import RasaFileImporter

    return RasaFileImporter(domain_path=str(domain_path), training_data_paths=[str(p) for p in data_paths])


def _response_text(domain, action: str) -> Optional[str]:
    """The first unconditional text variant of a domain response (else the first with text)."""
    variants = domain.responses.get(action) or []
    plain = [v for v in variants if v.get("text") and not v.get("condition")]
    chosen = plain or [v for v in variants if v.get("text")]
    return chosen[0]["text"] if chosen else None


def _examples_by_intent(nlu_data) -> Dict[str, List[Tuple[str, List[dict]]]]:
    examples: Dict[str, List[Tuple[str, List[dict]]]] = {}
    for message in nlu_data.intent_examples:
        text, intent = message.get("text"), message.get("intent")
        if text and intent:
            examples.setdefault(intent, []).append((text, list(message.get("entities") or [])))
    return examples


def _user_text(
    intent: str, wanted: Dict[str, str], examples: Dict[str, List[Tuple[str, List[dict]]]], rng: random.Random
) -> Optional[str]:
    """An NLU example of ``intent`` carrying exactly the wanted entity types, values substituted."""
    candidates = [
        (text, ents) for text, ents in examples.get(intent, [])
        if sorted({e["entity"] for e in ents}) == sorted(wanted)
    ]
    if not candidates:
        return None
    text, ents = rng.choice(candidates)
    for entity in sorted(ents, key=lambda e: -e["start"]):
        value = wanted.get(entity["entity"])
        if value is not None:
            text = text[: entity["start"]] + value + text[entity["end"] :]
    return text


def story_dialogues(
    domain_path: Path | str, data_paths: Sequence[Path | str], seed: int = 13, stats: Optional[Counter] = None
) -> Iterator[Dialogue]:
    """Multi-turn dialogues from the assistant's stories (rules are not conversations; skipped)."""
    from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
    from rasa.shared.core.training_data.structures import RuleStep

    stats = stats if stats is not None else Counter()
    importer = _importer(domain_path, data_paths)
    domain = importer.get_domain()
    examples = _examples_by_intent(importer.get_nlu_data())
    for step in importer.get_stories().story_steps:
        if isinstance(step, RuleStep):
            continue
        rng = random.Random(f"{seed}:{step.block_name}")
        turns: List[Turn] = []
        slots: Dict[str, str] = {}
        pending_agent: List[str] = []
        last_form: Optional[str] = None

        def flush() -> None:
            if pending_agent:
                turns.append(Turn(role=AGENT, text=" ".join(pending_agent)))
                pending_agent.clear()

        for event in step.events:
            if isinstance(event, UserUttered):
                flush()
                intent = event.intent_name
                wanted = {e["entity"]: str(e["value"]) for e in (event.entities or []) if "value" in e}
                text = event.text or (intent and _user_text(intent, wanted, examples, rng))
                if not text or not intent:
                    stats["story_user_turn_without_example"] += 1
                    continue
                turns.append(Turn(role=USER, text=text, intent=intent, entities=wanted))
                slots.update(wanted)
            elif isinstance(event, ActionExecuted):
                name = event.action_name or ""
                if name.endswith("_form"):
                    last_form = name
                text = _response_text(domain, name) if name.startswith("utter_") else None
                if text:
                    pending_agent.append(text)
                elif event.action_text:
                    pending_agent.append(event.action_text)
            elif isinstance(event, SlotSet):
                if event.key == "requested_slot" and event.value and last_form:
                    question = _response_text(domain, f"utter_ask_{event.value}")
                    if question:
                        pending_agent.append(question)
                elif event.key != "requested_slot" and event.value is not None:
                    slots[event.key] = str(event.value)
        flush()
        dialogue = Dialogue(
            id=f"story-{stable_id(step.block_name, str(len(turns)))}",
            source=SOURCE_STORIES,
            turns=turns,
            slots=slots,
            meta={"story": step.block_name},
        )
        if any(True for _ in dialogue.exchanges()):
            yield dialogue
        else:
            stats["story_without_text_exchange"] += 1


def _text_variants(domain, response: str) -> List[str]:
    """The unconditional text variants of a domain response."""
    return [v["text"] for v in domain.responses.get(response) or [] if v.get("text") and not v.get("condition")]


def _example_dialogues(
    intent: str, examples: List[Tuple[str, List[dict]]], response: str, variants: List[str], source: str,
    id_prefix: str, stats: Counter,
) -> Iterator[Dialogue]:
    """Each NLU example of ``intent`` -> variant ``i mod n`` of ``response``; a variant with a
    placeholder the example has no value for is skipped (counted)."""
    for number, (text, entities) in enumerate(examples):
        found = {e["entity"]: str(e.get("value", "")) for e in entities if e.get("value")}
        reply = variants[number % len(variants)]
        missing = [name for name in re.findall(r"\{(\w+)\}", reply) if name not in found]
        if missing:
            stats["domain_response_missing_slot"] += 1
            continue
        yield Dialogue(
            id=f"{id_prefix}-{intent}-{number:04d}-{stable_id(text, reply)[:6]}",
            source=source,
            turns=[Turn(role=USER, text=text, intent=intent, entities=found), Turn(role=AGENT, text=reply)],
            slots=dict(found),
            meta={"response": response},
        )


def domain_response_dialogues(
    domain_path: Path | str, data_paths: Sequence[Path | str], stats: Optional[Counter] = None
) -> Iterator[Dialogue]:
    """One-exchange dialogues: each NLU example of an intent -> the domain's ``utter_<intent>`` text.

    Variants are used in turn (example ``i`` gets variant ``i mod n``); variants with conditions or
    placeholders whose value the example does not carry are skipped. Intents without such a
    response (e.g. ``track_order``, answered by a custom action) give nothing.
    """

    stats = stats if stats is not None else Counter()
    importer = _importer(domain_path, data_paths)
    domain = importer.get_domain()
    for intent, examples in sorted(_examples_by_intent(importer.get_nlu_data()).items()):
        variants = _text_variants(domain, f"utter_{intent}")
        if not variants:
            stats["domain_intent_without_response"] += 1
            continue
        yield from _example_dialogues(intent, examples, f"utter_{intent}", variants, SOURCE_DOMAIN, "domain", stats)


def rule_response_dialogues(
    domain_path: Path | str, data_paths: Sequence[Path | str], responses: Sequence[str],
    stats: Optional[Counter] = None,
) -> Iterator[Dialogue]:
    """One-exchange dialogues from the rules that answer an intent with one of ``responses``.

    A rule step ``intent: X`` directly followed by ``action: R`` (R in ``responses``) pairs every
    NLU example of X with R's text variants in turn, as ``domain_response_dialogues`` does.
    """
    from rasa.shared.core.events import ActionExecuted, UserUttered
    from rasa.shared.core.training_data.structures import RuleStep

    stats = stats if stats is not None else Counter()
    importer = _importer(domain_path, data_paths)
    domain = importer.get_domain()
    pairs = set()
    for step in importer.get_stories().story_steps:
        if not isinstance(step, RuleStep):
            continue
        events = [e for e in step.events if isinstance(e, (UserUttered, ActionExecuted))]
        for first, second in zip(events, events[1:]):
            if isinstance(first, UserUttered) and isinstance(second, ActionExecuted) and first.intent_name \
                    and second.action_name in responses:
                pairs.add((first.intent_name, second.action_name))
    examples = _examples_by_intent(importer.get_nlu_data())
    for intent, response in sorted(pairs):
        variants = _text_variants(domain, response)
        if not variants or not examples.get(intent):
            stats["rule_response_without_text_or_examples"] += 1
            continue
        yield from _example_dialogues(intent, examples[intent], response, variants, SOURCE_RULES, "rule", stats)
