"""A Rasa training-data importer that merges Bitext's ``intents.csv`` into the NLU data.

Configured in ``config.yml`` next to Rasa's own file importer::

    importers:
      - name: RasaFileImporter
      - name: nebras_bot.data.importer.BitextImporter
        directory: null              # default: $NEBRAS_BITEXT_DIR
        max_examples_per_intent: 150 # bounds training time; null = all rows
        holdout_fraction: 0.2        # rows kept for NLU evaluation, never trained on
        seed: 13

Each Bitext row (``instruction``, ``intent``, ``entity_type``, ``entity_value``, offsets) becomes
one Rasa NLU example. About a third of Bitext's entity offsets are wrong, so the entity span is
recovered in order: the offsets as given; the offsets when the text there is the value up to case
or leading zeros; a case-insensitive search for the value; otherwise the example is kept without
the entity (counted and logged). Bitext entity types are mapped to Nebras's names
(:data:`ENTITY_TYPE_MAP`); unknown types are dropped.

The importer contributes NLU data only (empty domain, stories and config), and when no Bitext
directory is configured or present it logs a warning and contributes nothing, so the hand-written
data alone trains a working bot.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Text, Tuple, Union

from rasa.shared.core.domain import Domain
from rasa.shared.core.training_data.structures import StoryGraph
from rasa.shared.importers.importer import TrainingDataImporter
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nebras_bot import entities as ent
from nebras_bot.data import bitext
from nebras_bot.paths import ENV_BITEXT_DIR

logger = logging.getLogger(__name__)

# Config keys (``importers:`` entry in config.yml) and their defaults, in one place.
KEY_DIRECTORY = "directory"
KEY_MAX_EXAMPLES = "max_examples_per_intent"
KEY_HOLDOUT_FRACTION = "holdout_fraction"
KEY_SEED = "seed"
DEFAULTS: Dict[str, Any] = {
    KEY_DIRECTORY: None,
    KEY_MAX_EXAMPLES: None,
    KEY_HOLDOUT_FRACTION: 0.0,
    KEY_SEED: 13,
}

# Bitext entity types (this sample and the full public dataset) -> Nebras entity names.
ENTITY_TYPE_MAP: Dict[str, str] = {
    "order_id": ent.ORDER_ID,
    "order_number": ent.ORDER_ID,
    "invoice_id": ent.INVOICE_ID,
    "invoice_number": ent.INVOICE_ID,
    "refund_amount": ent.REFUND_AMOUNT,
    "account_type": ent.ACCOUNT_TYPE,
    "account_category": ent.ACCOUNT_TYPE,
    "person_name": ent.PERSON_NAME,
    "delivery_city": ent.DELIVERY_CITY,
    "delivery_country": ent.DELIVERY_COUNTRY,
    "email": ent.EMAIL,
    "email_address": ent.EMAIL,
}


@dataclass(frozen=True)
class EntitySpan:
    """Where an entity sits in an example's text, and its (possibly normalised) value."""

    start: int
    end: int
    value: str
    entity: str
    how: str  # "offsets", "offsets_normalised", "search"


@dataclass
class ConversionStats:
    """What happened to the rows: reported in the log and returned for tests/evaluation."""

    rows: int = 0
    trained: int = 0
    held_out: int = 0
    capped: int = 0
    entities: Counter = field(default_factory=Counter)  # by recovery method, plus "dropped"
    unknown_entity_types: Counter = field(default_factory=Counter)


@dataclass
class BitextSplit:
    """Bitext rows split deterministically into trained-on rows and held-out rows."""

    train: List[bitext.BitextRow]
    holdout: List[bitext.BitextRow]
    stats: ConversionStats


def _unit_hash(seed: int, text: str) -> float:
    """A stable number in [0, 1) for ``text``: identical messages always land on the same side."""
    digest = hashlib.sha1(f"{seed}:{text.strip().lower()}".encode("utf-8")).hexdigest()
    return int(digest[:12], 16) / float(16**12)


def split_rows(
    rows: Sequence[bitext.BitextRow],
    holdout_fraction: float = 0.0,
    seed: int = 13,
    max_examples_per_intent: Optional[int] = None,
) -> BitextSplit:
    """Split rows into train / hold-out by a seeded hash of the message text.

    The hold-out is decided before the per-intent cap, so capping the training rows never moves a
    held-out row into training. The cap keeps, per intent, the rows with the lowest hash (a
    deterministic, seed-dependent sample).
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    if max_examples_per_intent is not None and max_examples_per_intent < 1:
        raise ValueError(f"max_examples_per_intent must be >= 1, got {max_examples_per_intent}")
    stats = ConversionStats(rows=len(rows))
    train_by_intent: Dict[str, List[Tuple[float, bitext.BitextRow]]] = defaultdict(list)
    holdout: List[bitext.BitextRow] = []
    for row in rows:
        # A second, independent hash for the cap so that it is not correlated with the hold-out.
        if _unit_hash(seed, row.instruction) < holdout_fraction:
            holdout.append(row)
        else:
            train_by_intent[row.intent].append((_unit_hash(seed + 1, row.instruction), row))
    train: List[bitext.BitextRow] = []
    for intent in sorted(train_by_intent):
        ranked = sorted(train_by_intent[intent], key=lambda pair: pair[0])
        if max_examples_per_intent is not None and len(ranked) > max_examples_per_intent:
            stats.capped += len(ranked) - max_examples_per_intent
            ranked = ranked[:max_examples_per_intent]
        train.extend(row for _, row in ranked)
    stats.trained, stats.held_out = len(train), len(holdout)
    return BitextSplit(train=train, holdout=holdout, stats=stats)


def _strip_zeros(text: str) -> str:
    return text.lstrip("0") or text


def locate_entity(row: bitext.BitextRow) -> Optional[EntitySpan]:
    """Find the row's entity in its instruction, repairing wrong offsets; None if impossible."""
    entity = ENTITY_TYPE_MAP.get(row.entity_type.strip().lower())
    value = row.entity_value.strip()
    if not entity or not value:
        return None
    text = row.instruction
    start, end = row.start_offset, row.end_offset
    if start is not None and end is not None and 0 <= start < end <= len(text):
        surface = text[start:end]
        if surface == value:
            return EntitySpan(start, end, value, entity, "offsets")
        if surface.strip() and (
            surface.lower() == value.lower() or _strip_zeros(surface) == _strip_zeros(value)
        ):
            # Keep the literal text for ids ("00123842"), the canonical value for names/types.
            normalised = surface if surface.isdigit() else value
            return EntitySpan(start, end, normalised, entity, "offsets_normalised")
    found = text.lower().find(value.lower())
    if found >= 0:
        return EntitySpan(found, found + len(value), value, entity, "search")
    return None


def row_to_message(row: bitext.BitextRow, stats: Optional[ConversionStats] = None) -> Message:
    """One Bitext row as a Rasa NLU training example (intent + annotated entity when found)."""
    entities: List[Dict[str, Any]] = []
    if row.entity_type:
        span = locate_entity(row)
        if span is None:
            if stats is not None:
                if row.entity_type.strip().lower() not in ENTITY_TYPE_MAP:
                    stats.unknown_entity_types[row.entity_type] += 1
                stats.entities["dropped"] += 1
        else:
            entities.append(
                {"start": span.start, "end": span.end, "value": span.value, "entity": span.entity}
            )
            if stats is not None:
                stats.entities[span.how] += 1
    return Message.build(text=row.instruction, intent=row.intent, entities=entities)


def rows_to_training_data(
    rows: Iterable[bitext.BitextRow], stats: Optional[ConversionStats] = None
) -> TrainingData:
    """Bitext rows as Rasa ``TrainingData`` (used by the importer and by the NLU evaluation)."""
    return TrainingData(training_examples=[row_to_message(row, stats) for row in rows])


def resolve_directory(directory: Optional[Union[str, Path]], base: Optional[Path] = None) -> Optional[Path]:
    """The configured directory (relative to ``base``), else ``$NEBRAS_BITEXT_DIR``, else None."""
    value = str(directory).strip() if directory else os.environ.get(ENV_BITEXT_DIR, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_absolute() and directory and base is not None:
        path = base / path
    return path.resolve()


class BitextImporter(TrainingDataImporter):
    """Contributes Bitext ``intents.csv`` rows as NLU examples; nothing else."""

    def __init__(
        self,
        config_file: Optional[Text] = None,
        domain_path: Optional[Text] = None,
        training_data_paths: Optional[Union[List[Text], Text]] = None,
        directory: Optional[Text] = DEFAULTS[KEY_DIRECTORY],
        max_examples_per_intent: Optional[int] = DEFAULTS[KEY_MAX_EXAMPLES],
        holdout_fraction: float = DEFAULTS[KEY_HOLDOUT_FRACTION],
        seed: int = DEFAULTS[KEY_SEED],
        **kwargs: Any,
    ) -> None:
        base = Path(config_file).resolve().parent if config_file else None
        self.directory = resolve_directory(directory, base)
        self.max_examples_per_intent = (
            int(max_examples_per_intent) if max_examples_per_intent is not None else None
        )
        self.holdout_fraction = float(holdout_fraction or 0.0)
        self.seed = int(seed)
        self.stats: Optional[ConversionStats] = None
        self._nlu_data: Optional[TrainingData] = None

    def get_domain(self) -> Domain:
        """The domain comes from domain.yml (RasaFileImporter)."""
        return Domain.empty()

    def get_stories(self, exclusion_percentage: Optional[int] = None) -> StoryGraph:
        """Bitext has no stories."""
        return StoryGraph([])

    def get_conversation_tests(self) -> StoryGraph:
        """Bitext has no test stories."""
        return StoryGraph([])

    def get_config(self) -> Dict:
        """The configuration comes from config.yml (RasaFileImporter)."""
        return {}

    def get_config_file_for_auto_config(self) -> Optional[Text]:
        """No auto-config from this importer."""
        return None

    def load_split(self) -> Optional[BitextSplit]:
        """The train/hold-out split of the configured CSV, or None (logged) when there is none."""
        if self.directory is None:
            logger.warning(
                "BitextImporter: no Bitext data configured (set %s or the importer's `%s`); "
                "training on the hand-written NLU data only.",
                ENV_BITEXT_DIR,
                KEY_DIRECTORY,
            )
            return None
        csv_path = self.directory / bitext.INTENTS_FILE
        if not csv_path.is_file():
            logger.warning(
                "BitextImporter: %s not found; training on the hand-written NLU data only.",
                csv_path,
            )
            return None
        rows = bitext.read_csv(csv_path)
        return split_rows(rows, self.holdout_fraction, self.seed, self.max_examples_per_intent)

    def get_nlu_data(self, language: Optional[Text] = "en") -> TrainingData:
        """Bitext training rows as NLU examples (empty when no data is configured)."""
        if self._nlu_data is not None:
            return self._nlu_data
        split = self.load_split()
        if split is None:
            self._nlu_data = TrainingData()
            return self._nlu_data
        self.stats = split.stats
        self._nlu_data = rows_to_training_data(split.train, self.stats)
        logger.info(
            "BitextImporter: %d of %d rows from %s added as NLU examples "
            "(%d held out for evaluation, %d over the per-intent cap of %s); entities: %s%s. %s",
            split.stats.trained,
            split.stats.rows,
            self.directory,
            split.stats.held_out,
            split.stats.capped,
            self.max_examples_per_intent,
            dict(self.stats.entities),
            f"; unknown entity types dropped: {dict(self.stats.unknown_entity_types)}"
            if self.stats.unknown_entity_types
            else "",
            bitext.ATTRIBUTION,
        )
        return self._nlu_data
