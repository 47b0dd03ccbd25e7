"""Step 2 of ``nebras learn``: harvested material -> a new, versioned dataset.

The new version directory (``models/datasets/<version>/``) has the same files as ``nebras data
prepare`` writes, built on a base dataset (the current model's, else the newest):

- ``train.jsonl`` / ``train.csv``: base training data plus the new training examples;
- ``validation.*`` / ``test.*``: the base dataset's, unchanged (the fixed validation split);
- ``new.jsonl`` / ``new.csv``: new examples held out to measure learning on the new material;
- ``finetune/{train,validation}.jsonl``: what the fine-tuning run reads (new examples repeated, a
  replay sample of base examples against forgetting, a slice of validation for early stopping);
- ``data_card.json`` / ``data_card.md``: the base card plus a ``learning`` section (sources,
  counts, what was removed and why, the diff against the base version).

Curation: every text is cleaned and PII-scrubbed by the data pipeline's rules; replies rated
thumbs-down and fallback replies are dropped; agent resolutions are the targets of ticket
examples; exact and near duplicates (also against the base training data) are removed.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from nebras_bot import paths
from nebras_bot.data.records import Dialogue
from nebras_bot.learning import conversations as conv
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import SOURCE_EVENT, SOURCE_FEEDBACK, SOURCE_TICKET, HarvestStore

logger = logging.getLogger(__name__)

NEW_SPLIT = "new"
FINETUNE_DIR = "finetune"
VERSION_LENGTH = 12


@dataclass
class CuratedDataset:
    version: Optional[str]  # None: nothing new to learn from, no dataset written
    directory: Optional[Path]
    base: Path
    new_train: List[Dialogue]
    new_eval: List[Dialogue]
    review: List[Dict[str, Any]] = field(default_factory=list)
    conversations: List[conv.Conversation] = field(default_factory=list)
    card: Dict[str, Any] = field(default_factory=dict)


def base_dataset(settings: LearningSettings, current_model: Optional[Path]) -> Path:
    """The dataset the current model was trained on, else the newest prepared one."""
    from nebras_bot.data.prepare import latest_dataset

    if settings.base_dataset:
        return Path(settings.base_dataset)
    if current_model is not None and (current_model / "nebras.json").is_file():
        meta = json.loads((current_model / "nebras.json").read_text(encoding="utf-8"))
        version = meta.get("dataset_version") or meta.get("dataset")
        if version and (paths.datasets_dir() / str(version) / "train.jsonl").is_file():
            return paths.datasets_dir() / str(version)
    return latest_dataset()


def collect_new(store: HarvestStore, after_id: int, settings: LearningSettings):
    """New dialogues (tickets + conversations), thumbs-down texts, review messages, conversations."""
    rows = store.rows(after_id=0)
    bad = {" ".join(str(r["payload"]["bot_text"]).split()) for r in rows
           if r["source"] == SOURCE_FEEDBACK and r["payload"].get("rating") == "down"}
    removed: Counter = Counter()
    new_dialogues: List[Dialogue] = []
    for row in rows:
        if row["source"] == SOURCE_TICKET and row["id"] > after_id:
            dialogue = Dialogue.parse_obj(row["payload"])
            if " ".join(dialogue.turns[-1].text.split()) in bad:
                removed["thumbs_down"] += 1
                continue
            new_dialogues.append(dialogue)
    senders_with_new = {r["sender_id"] for r in rows if r["source"] == SOURCE_EVENT and r["id"] > after_id}
    conversations = conv.group_events([r for r in rows if r["source"] == SOURCE_EVENT and r["sender_id"] in senders_with_new],
                                      after_id)
    review: List[Dict[str, Any]] = []
    for conversation in conversations:
        found, dropped = conv.dialogues(conversation, bad_replies=bad, threshold=settings.low_confidence)
        new_dialogues.extend(found)
        removed.update({k: v for k, v in dropped.items() if v})
        review.extend(conv.low_confidence_messages(conversation, settings.low_confidence))
    # Thumbs-up replies with their message are examples too (the conversation may not be harvested).
    for row in rows:
        p = row["payload"]
        if row["source"] == SOURCE_FEEDBACK and row["id"] > after_id and p.get("rating") == "up" and p.get("user_text"):
            new_dialogues.append(Dialogue(
                id=f"feedback-{row['id']}", source="conversations",
                turns=[{"role": "user", "text": p["user_text"], "intent": p.get("intent")},
                       {"role": "agent", "text": p["bot_text"], "generated": p.get("generated"),
                        "model_version": p.get("model_version")}]))
    return new_dialogues, removed, review, conversations


def _clean(dialogues: List[Dialogue], removed: Counter) -> List[Dialogue]:
    from nebras_bot.data import cleaning
    from nebras_bot.data.prepare import clean_dialogue

    stats = cleaning.CleaningStats()
    cleaned = []
    for dialogue in dialogues:
        dialogue = clean_dialogue(dialogue, stats)
        if not any(True for _ in dialogue.exchanges()) or any(not t.text.strip() for t in dialogue.turns):
            removed["empty_or_no_exchange"] += 1
            continue
        cleaned.append(dialogue)
    for rule, count in stats.counts.items():
        removed[f"changed:{rule}"] += count
    return cleaned


def _dedup(new: List[Dialogue], base_train: List[Dialogue], removed: Counter) -> List[Dialogue]:
    from nebras_bot.data.dedup import dedup_key, dialogue_text, remove_duplicates

    seen = {dedup_key(dialogue_text(d)) for d in base_train}
    fresh = []
    for dialogue in new:
        if dedup_key(dialogue_text(dialogue)) in seen:
            removed["already_in_base"] += 1
        else:
            fresh.append(dialogue)
    kept, duplicates = remove_duplicates(fresh)
    removed.update(reason for _, reason, _ in duplicates)
    return kept


def _split_new(dialogues: List[Dialogue], fraction: float, seed: int = 13):
    from nebras_bot.data.split import stratified_split

    if len(dialogues) < 2 or fraction <= 0:
        return list(dialogues), []
    parts = stratified_split(dialogues, fraction, 0.0, seed)
    return parts["train"], parts["validation"]


def _serialise(dialogues: List[Dialogue]) -> str:
    return "".join(d.json(sort_keys=True) + "\n" for d in dialogues)


def _write_csv(path: Path, dialogues: List[Dialogue], base_csv: Optional[Path] = None) -> int:
    from nebras_bot.data.prepare import CSV_COLUMNS, csv_row

    rows = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        if base_csv is not None and base_csv.is_file():
            with base_csv.open(newline="", encoding="utf-8") as source:
                for row in csv.DictReader(source):
                    writer.writerow({k: row.get(k, "") for k in CSV_COLUMNS})
                    rows += 1
        for dialogue in dialogues:
            for history, agent in dialogue.exchanges():
                single = Dialogue(id=dialogue.id, source=dialogue.source, turns=[history[-1], agent], meta=dialogue.meta)
                row = csv_row(single)
                if row:
                    writer.writerow(row)
                    rows += 1
    return rows


def curate(store: HarvestStore, after_id: int, settings: LearningSettings, *, base: Path,
           out_root: Optional[Path] = None) -> CuratedDataset:
    """Build the new dataset version (``version`` None when there is nothing new to learn from)."""
    from nebras_bot.data.prepare import CARD_JSON, CARD_MD, load_split

    raw, removed, review, conversations = collect_new(store, after_id, settings)
    base_train = load_split(base, "train")
    cleaned = _clean(raw, removed)
    new = _dedup(cleaned, base_train, removed)
    new_train, new_eval = _split_new(new, settings.new_eval_fraction)
    if len(new) < settings.min_new_examples:
        logger.info("nothing new to learn from (%d new examples; need %d)", len(new), settings.min_new_examples)
        return CuratedDataset(None, None, base, new_train, new_eval, review, conversations,
                              {"learning": {"raw_new_dialogues": len(raw), "new_dialogues": len(new),
                                            "removed": dict(sorted(removed.items()))}})

    validation = load_split(base, "validation")
    rng = random.Random(len(base_train))
    replay = rng.sample(base_train, min(settings.replay_examples, len(base_train)))
    payloads = {
        "train": _serialise(base_train + new_train),
        # the fixed splits are copied byte for byte
        "validation": (base / "validation.jsonl").read_text(encoding="utf-8"),
        "test": (base / "test.jsonl").read_text(encoding="utf-8") if (base / "test.jsonl").is_file() else "",
        NEW_SPLIT: _serialise(new_eval),
    }
    version = hashlib.sha256("".join(payloads[k] for k in sorted(payloads)).encode("utf-8")).hexdigest()[:VERSION_LENGTH]
    root = out_root or paths.datasets_dir()
    directory = root / version
    staging = root / f".{version}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / FINETUNE_DIR).mkdir(parents=True)
    for name, payload in payloads.items():
        (staging / f"{name}.jsonl").write_text(payload, encoding="utf-8")
    for name in ("validation", "test"):
        if (base / f"{name}.csv").is_file():
            shutil.copyfile(base / f"{name}.csv", staging / f"{name}.csv")
    csv_counts = {"train": _write_csv(staging / "train.csv", new_train, base / "train.csv"),
                  NEW_SPLIT: _write_csv(staging / f"{NEW_SPLIT}.csv", new_eval)}
    finetune = new_train * max(1, settings.new_example_repeats) + replay
    random.Random(version).shuffle(finetune)
    (staging / FINETUNE_DIR / "train.jsonl").write_text(_serialise(finetune), encoding="utf-8")
    (staging / FINETUNE_DIR / "validation.jsonl").write_text(_serialise(validation[:200]), encoding="utf-8")

    base_card = json.loads((base / CARD_JSON).read_text(encoding="utf-8")) if (base / CARD_JSON).is_file() else {}
    learning = {
        "base_version": base.name,
        "harvest_after_id": after_id,
        "raw_new_dialogues_per_source": dict(Counter(d.source for d in raw)),
        "new_dialogues": len(new),
        "new_train": len(new_train),
        "new_eval": len(new_eval),
        "finetune_examples": len(finetune),
        "replay_examples": len(replay),
        "removed": dict(sorted(removed.items())),
        "csv_rows": csv_counts,
        "diff": {
            "train_dialogues": {"base": len(base_train), "new": len(base_train) + len(new_train)},
            "intents_added": sorted({conv_intent(d) for d in new} - {conv_intent(d) for d in base_train}),
            "per_intent_added": dict(Counter(conv_intent(d) for d in new_train)),
        },
    }
    card = dict(base_card, version=version, learning=learning)
    card.setdefault("dialogues_per_split", {})
    card["dialogues_per_split"] = {**card["dialogues_per_split"], "train": len(base_train) + len(new_train),
                                   NEW_SPLIT: len(new_eval)}
    (staging / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=True), encoding="utf-8")
    base_md = (base / CARD_MD).read_text(encoding="utf-8") if (base / CARD_MD).is_file() else ""
    (staging / CARD_MD).write_text(card_diff_markdown(version, learning) + "\n" + base_md, encoding="utf-8")
    if directory.exists():  # same content as an earlier run: reuse it
        shutil.rmtree(staging)
    else:
        staging.rename(directory)
    logger.info("dataset %s: %d new examples (%d train, %d held out)", version, len(new), len(new_train), len(new_eval))
    return CuratedDataset(version, directory, base, new_train, new_eval, review, conversations, card)


def conv_intent(dialogue: Dialogue) -> str:
    from nebras_bot.data.dedup import group_key

    return group_key(dialogue)


def card_diff_markdown(version: str, learning: Dict[str, Any]) -> str:
    lines = [f"# Data card: dataset {version} (continuous learning)", "",
             f"Built by `nebras learn` on base dataset {learning['base_version']}.", "",
             "| | count |", "| --- | ---: |"]
    for key in ("new_dialogues", "new_train", "new_eval", "finetune_examples", "replay_examples"):
        lines.append(f"| {key.replace('_', ' ')} | {learning[key]} |")
    diff = learning["diff"]
    lines += ["", f"Training dialogues: {diff['train_dialogues']['base']} -> {diff['train_dialogues']['new']}.",
              f"Intents new to the training data: {', '.join(diff['intents_added']) or 'none'}.", "",
              "| removed / changed | count |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in learning["removed"].items()] or ["| (nothing) | 0 |"]
    lines += ["", "The base dataset's card follows.", ""]
    return "\n".join(lines)
