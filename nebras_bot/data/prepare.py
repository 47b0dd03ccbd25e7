"""``nebras data prepare``: sources -> cleaned, scrubbed, deduplicated, split, versioned dataset.

Writes ``<out>/<version>/`` (default ``models/datasets/<version>/``) with
``{train,validation,test}.jsonl`` (``Dialogue`` records), ``{train,validation,test}.csv`` (Bitext
columns, Bitext-sourced single exchanges only, for ``nebras evaluate``), ``data_card.json`` and
``data_card.md``. ``version`` is a hash of the written content, so the same inputs and settings
always give the same version, and any change gives a new one.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence

from nebras_bot import paths
from nebras_bot.data import bitext, cleaning
from nebras_bot.data.dedup import group_key, remove_duplicates
from nebras_bot.data.records import AGENT, SOURCE_BITEXT, SOURCE_DOMAIN, USER, Dialogue, Turn
from nebras_bot.data.settings import DOMAIN_RESPONSES_ALWAYS, DOMAIN_RESPONSES_AUTO, DataSettings
from nebras_bot.data.sources import (
    bitext_dialogues, domain_response_dialogues, jsonl_dialogues, rule_response_dialogues, story_dialogues,
)
from nebras_bot.data.split import SPLITS, stratified_split

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "context", "role", "instruction", "intent", "entity_type", "entity_value",
    "start_offset", "end_offset", "category", "tags", "response",
)
# Sources whose single exchanges also go into the Bitext-format CSVs (for `nebras evaluate`).
CSV_SOURCES = (SOURCE_BITEXT, SOURCE_DOMAIN)
CARD_JSON = "data_card.json"
CARD_MD = "data_card.md"
VERSION_LENGTH = 12


@dataclass
class PreparedDataset:
    version: str
    directory: Path
    splits: Dict[str, List[Dialogue]]
    card: Dict = field(default_factory=dict)


def clean_dialogue(dialogue: Dialogue, stats: cleaning.CleaningStats) -> Dialogue:
    """All cleaning rules on every turn; entity values seen so far are the known slot values."""
    known: Dict[str, str] = {}
    turns: List[Turn] = []
    pending_user: Optional[str] = None
    for turn in dialogue.turns:
        if turn.role == USER:
            entities = {k: cleaning.normalize_text(v) for k, v in turn.entities.items() if v}
            known.update(entities)
            text = cleaning.scrub_protecting(cleaning.normalize_text(turn.text), known, stats)
            turns.append(turn.copy(update={"text": text, "entities": entities}))
            pending_user = text
        else:
            _, reply = cleaning.clean_exchange(pending_user or "", turn.text, known, stats)
            turns.append(turn.copy(update={"text": reply}))
    slots = {k: cleaning.normalize_text(v) for k, v in dialogue.slots.items() if v}
    return dialogue.copy(update={"turns": turns, "slots": slots})


def _length_problem(dialogue: Dialogue, settings: DataSettings) -> Optional[str]:
    for turn in dialogue.turns:
        words = len(turn.text.split())
        if turn.role == USER and words > settings.max_instruction_words:
            return "instruction_too_long"
        if turn.role == AGENT and words < settings.min_reply_words:
            return "reply_too_short"
        if turn.role == AGENT and words > settings.max_reply_words:
            return "reply_too_long"
    if not any(True for _ in dialogue.exchanges()):
        return "no_user_agent_exchange"
    return None


def collect(
    bitext_dir: Optional[Path],
    settings: DataSettings,
    logs: Sequence[Path] = (),
    domain: Optional[Path] = None,
    stories: Sequence[Path] = (),
    stats: Optional[Counter] = None,
) -> List[Dialogue]:
    """Every source's dialogues, raw (before cleaning)."""
    stats = stats if stats is not None else Counter()
    dialogues: List[Dialogue] = []
    if bitext_dir is not None:
        dialogues.extend(bitext_dialogues(bitext_dir, settings.bitext_files, stats))
    else:
        logger.warning("no Bitext directory (set NEBRAS_BITEXT_DIR or --bitext); using the other sources only")
    rasa_project = domain is not None and bool(stories)
    if settings.include_stories and rasa_project:
        _extend_or_skip(dialogues, lambda: story_dialogues(domain, stories, settings.seed, stats),
                        "Rasa stories", "stories_unreadable", stats)
    wanted = settings.domain_responses == DOMAIN_RESPONSES_ALWAYS or (
        settings.domain_responses == DOMAIN_RESPONSES_AUTO and bitext_dir is None
    )
    if wanted and rasa_project:
        _extend_or_skip(dialogues, lambda: domain_response_dialogues(domain, stories, stats),
                        "the domain responses", "domain_responses_unreadable", stats)
    if settings.rule_responses and rasa_project:
        _extend_or_skip(dialogues, lambda: rule_response_dialogues(domain, stories, settings.rule_responses, stats),
                        "the rules' responses", "rule_responses_unreadable", stats)
    dialogues.extend(jsonl_dialogues(logs))
    return dialogues


def _extend_or_skip(
    dialogues: List[Dialogue], read: Callable[[], Iterable[Dialogue]], what: str, stat: str, stats: Counter
) -> None:
    """Add what ``read`` yields; a broken Rasa file loses that source only, logged and counted."""
    try:
        dialogues.extend(read())
    except Exception as error:  # keep whatever else there is
        logger.error("could not read %s (%s); continuing without them", what, error)
        stats[stat] += 1


def _length_stats(values: List[int]) -> Dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    return {
        "min": ordered[0],
        "mean": round(statistics.fmean(ordered), 1),
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
    }


def csv_row(dialogue: Dialogue) -> Optional[Dict[str, str]]:
    """A Bitext-column row for a single-exchange dialogue (None for multi-turn ones).

    ``response`` has its ``{slot}`` placeholders filled from the message's entity, so references
    read like real replies (a generated reply is filled the same way before it is scored).
    """
    if len(dialogue.turns) != 2 or dialogue.turns[0].role != USER or dialogue.turns[1].role != AGENT:
        return None
    user, agent = dialogue.turns
    entity_type, entity_value = next(iter(user.entities.items()), ("", ""))
    start = user.text.find(entity_value) if entity_value else -1
    return {
        "context": "customer support",
        "role": "virtual assistant",
        "instruction": user.text,
        "intent": user.intent or "",
        "entity_type": entity_type,
        "entity_value": entity_value,
        "start_offset": str(start) if start >= 0 else "",
        "end_offset": str(start + len(entity_value)) if start >= 0 else "",
        "category": str(dialogue.meta.get("category", "")),
        "tags": str(dialogue.meta.get("tags", "")),
        # As the customer would read it: placeholders filled with the message's values.
        "response": cleaning.fill_slots(agent.text, user.entities),
    }


def build_card(
    splits: Dict[str, List[Dialogue]],
    raw_counts: Counter,
    removed: Counter,
    cleaning_counts: Counter,
    source_stats: Counter,
    settings: DataSettings,
    inputs: Dict[str, str],
) -> Dict:
    everything = [d for split in splits.values() for d in split]
    user_words = [len(t.text.split()) for d in everything for t in d.turns if t.role == USER]
    agent_words = [len(t.text.split()) for d in everything for t in d.turns if t.role == AGENT]
    intents = sorted({group_key(d) for d in everything})
    return {
        "inputs": inputs,
        "settings": json.loads(settings.json()),
        "raw_dialogues_per_source": dict(sorted(raw_counts.items())),
        "dialogues_per_source": dict(sorted(Counter(d.source for d in everything).items())),
        "dialogues_per_split": {name: len(items) for name, items in splits.items()},
        "exchanges_per_split": {name: sum(1 for d in items for _ in d.exchanges()) for name, items in splits.items()},
        "per_intent": {
            intent: {name: sum(1 for d in items if group_key(d) == intent) for name, items in splits.items()}
            for intent in intents
        },
        "length_words": {"user": _length_stats(user_words), "agent": _length_stats(agent_words)},
        "removed": dict(sorted(removed.items())),
        "changed": dict(sorted(cleaning_counts.items())),
        "source_notes": dict(sorted(source_stats.items())),
        "licence": bitext.ATTRIBUTION,
    }


def card_markdown(version: str, card: Dict) -> str:
    lines = [f"# Data card: dataset {version}", "", f"Bitext data: {card['licence']}.", ""]
    lines += ["## Counts", "", "| split | dialogues | exchanges |", "| --- | ---: | ---: |"]
    for name in SPLITS:
        lines.append(f"| {name} | {card['dialogues_per_split'][name]} | {card['exchanges_per_split'][name]} |")
    lines += ["", "| source | raw | kept |", "| --- | ---: | ---: |"]
    for source, raw in card["raw_dialogues_per_source"].items():
        lines.append(f"| {source} | {raw} | {card['dialogues_per_source'].get(source, 0)} |")
    lines += ["", "## Length (words)", "", "| role | min | mean | median | p95 | max |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for role, values in card["length_words"].items():
        if values:
            lines.append(f"| {role} | {values['min']} | {values['mean']} | {values['median']} | {values['p95']} | {values['max']} |")
    lines += ["", "## Removed (dialogues) and why", "", "| reason | count |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in card["removed"].items()] or ["| (nothing) | 0 |"]
    lines += ["", "## Changed by cleaning (occurrences)", "", "| rule | count |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in card["changed"].items()]
    lines += ["", "## Source notes", "", "| note | count |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in card["source_notes"].items()]
    lines += ["", "## Per intent", "", "| intent | train | validation | test |", "| --- | ---: | ---: | ---: |"]
    for intent, counts in card["per_intent"].items():
        lines.append(f"| {intent} | {counts['train']} | {counts['validation']} | {counts['test']} |")
    return "\n".join(lines) + "\n"


def _serialise(dialogues: List[Dialogue]) -> str:
    return "".join(d.json(sort_keys=True) + "\n" for d in dialogues) if dialogues else ""


def write_split(directory: Path, name: str, dialogues: List[Dialogue]) -> None:
    """One split of a dataset directory: ``<name>.jsonl`` (every dialogue) and ``<name>.csv``
    (Bitext columns, the single-exchange Bitext and domain dialogues) - what ``nebras train`` and
    ``nebras evaluate`` read."""
    (directory / f"{name}.jsonl").write_text(_serialise(dialogues), encoding="utf-8")
    with (directory / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for dialogue in dialogues:
            row = csv_row(dialogue) if dialogue.source in CSV_SOURCES else None
            if row:
                writer.writerow(row)


def prepare(
    bitext_dir: Optional[Path | str] = None,
    out_dir: Optional[Path | str] = None,
    settings: Optional[DataSettings] = None,
    logs: Sequence[Path | str] = (),
    domain: Optional[Path | str] = None,
    stories: Sequence[Path | str] = (),
    progress: bool = True,
) -> PreparedDataset:
    """Run the whole pipeline and write the versioned dataset; returns where it went."""
    settings = settings or DataSettings()
    bitext_path = Path(bitext_dir) if bitext_dir else paths.bitext_dir()
    if bitext_path is not None and not bitext_path.is_dir():
        raise FileNotFoundError(f"Bitext directory {bitext_path} does not exist")
    source_stats: Counter = Counter()
    raw = collect(
        bitext_path, settings, [Path(p) for p in logs], Path(domain) if domain else None,
        [Path(p) for p in stories], source_stats,
    )
    if not raw:
        raise ValueError("no dialogues from any source: give --bitext DIR, stories or --logs FILE")
    raw_counts = Counter(d.source for d in raw)
    stats = cleaning.CleaningStats()
    removed: Counter = Counter()
    cleaned: List[Dialogue] = []
    from tqdm.auto import tqdm

    for dialogue in tqdm(raw, desc="clean + scrub", unit="dialogue", disable=not progress):
        dialogue = clean_dialogue(dialogue, stats)
        problem = _length_problem(dialogue, settings)
        if problem:
            removed[problem] += 1
            continue
        cleaned.append(dialogue)
    kept, duplicates = remove_duplicates(cleaned, settings.near_duplicate_threshold)
    removed.update(reason for _, reason, _ in duplicates)
    splits = stratified_split(kept, settings.validation_fraction, settings.test_fraction, settings.seed)

    payloads = {name: _serialise(items) for name, items in splits.items()}
    version = hashlib.sha256("".join(payloads[n] for n in SPLITS).encode("utf-8")).hexdigest()[:VERSION_LENGTH]
    inputs = {"bitext_dir": str(bitext_path) if bitext_path else "", "bitext_files": ",".join(settings.bitext_files)}
    card = build_card(splits, raw_counts, removed, stats.counts, source_stats, settings, inputs)
    card["version"] = version

    target = Path(out_dir) if out_dir else paths.datasets_dir()
    directory = target / version
    directory.mkdir(parents=True, exist_ok=True)
    for name in SPLITS:
        write_split(directory, name, splits[name])
    (directory / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")
    (directory / CARD_MD).write_text(card_markdown(version, card), encoding="utf-8")
    logger.info("dataset %s written to %s (%s)", version, directory, card["dialogues_per_split"])
    return PreparedDataset(version=version, directory=directory, splits=splits, card=card)


def load_split(directory: Path | str, name: str) -> List[Dialogue]:
    """The dialogues of one split of a prepared dataset directory."""
    from nebras_bot.data.records import read_jsonl

    path = Path(directory) / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; run `nebras data prepare` first")
    with path.open(encoding="utf-8") as handle:
        return list(read_jsonl(handle))


def latest_dataset(root: Optional[Path] = None) -> Path:
    """The most recently written dataset directory under ``models/datasets/``."""
    root = root or paths.datasets_dir()
    candidates = [p for p in root.glob("*/") if (p / CARD_JSON).is_file()] if root.is_dir() else []
    if not candidates:
        raise FileNotFoundError(f"no prepared dataset under {root}; run `nebras data prepare` first")
    return max(candidates, key=lambda p: (p / CARD_JSON).stat().st_mtime)


def ensure_dataset(root: Optional[Path] = None, progress: bool = True) -> Path:
    """The newest prepared dataset; on a fresh machine, prepare one first and return it.

    The sources are what ``nebras data prepare`` uses by default: Bitext from
    ``NEBRAS_BITEXT_DIR`` when set, the assistant's stories (``./data``) and, without Bitext, the
    domain's responses paired with the NLU examples.
    """
    try:
        return latest_dataset(root)
    except FileNotFoundError:
        pass
    from nebras_bot.data.templates import default_domain_path

    bitext_path = paths.bitext_dir()
    stories = [paths.home() / "data"] if (paths.home() / "data").is_dir() else []
    logger.info(
        "no prepared dataset yet: preparing one from %s",
        f"Bitext ({bitext_path}) and the Rasa stories" if bitext_path else "the Rasa stories and domain responses",
    )
    dataset = prepare(bitext_path, root, domain=default_domain_path(), stories=stories, progress=progress)
    return dataset.directory
