"""Reading Bitext customer-support CSVs (local files) and the full public dataset (hub, optional).

Both files in ``NEBRAS_BITEXT_DIR`` share Bitext's columns: ``context, role, instruction, intent,
entity_type, entity_value, start_offset, end_offset, category, tags, response``. ``instruction``
is the customer's message; ``start_offset``/``end_offset`` locate ``entity_value`` in it.

The data is licensed CDLA-Sharing-1.0 by Bitext Innovations; keep that attribution wherever the
rows or anything derived from them travel. This module never copies the files anywhere.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional

logger = logging.getLogger(__name__)

INTENTS_FILE = "intents.csv"
RESPONSES_FILE = "responses.csv"
REQUIRED_COLUMNS = ("instruction", "intent")
ATTRIBUTION = (
    "Bitext customer-support dataset (bitext/customer-support-llm-chatbot-training-dataset), "
    "Bitext Innovations, licensed under CDLA-Sharing-1.0"
)
# The full public dataset, for users who can reach the Hugging Face hub.
HUB_DATASET_ID = "bitext/Bitext-customer-support-llm-chatbot-training-dataset"
HUB_DATASET_FILE = "Bitext_Sample_Customer_Support_Training_Dataset_27K_responses-v11.csv"


@dataclass(frozen=True)
class BitextRow:
    """One Bitext row. ``entity_type``/``entity_value``/offsets are empty/None when absent."""

    instruction: str
    intent: str
    response: str = ""
    category: str = ""
    tags: str = ""
    entity_type: str = ""
    entity_value: str = ""
    start_offset: Optional[int] = None
    end_offset: Optional[int] = None

    @property
    def entity_span_ok(self) -> bool:
        """True when the offsets point at ``entity_value`` inside ``instruction``."""
        if not self.entity_value or self.start_offset is None or self.end_offset is None:
            return False
        return self.instruction[self.start_offset : self.end_offset] == self.entity_value


def _int_or_none(value: Optional[str]) -> Optional[int]:
    value = (value or "").strip()
    try:
        return int(float(value)) if value else None
    except ValueError:
        return None


def read_csv(path: Path | str) -> List[BitextRow]:
    """Read a CSV in Bitext's column format. Raises ``ValueError`` naming a missing column."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {sorted(columns)}")
        rows = [
            BitextRow(
                instruction=(record.get("instruction") or "").strip(),
                intent=(record.get("intent") or "").strip(),
                response=(record.get("response") or "").strip(),
                category=(record.get("category") or "").strip(),
                tags=(record.get("tags") or "").strip(),
                entity_type=(record.get("entity_type") or "").strip(),
                entity_value=record.get("entity_value") or "",
                start_offset=_int_or_none(record.get("start_offset")),
                end_offset=_int_or_none(record.get("end_offset")),
            )
            for record in reader
        ]
    return [row for row in rows if row.instruction and row.intent]


def iter_dir(directory: Path | str, filename: str) -> Iterator[BitextRow]:
    """Rows of ``directory/filename``; logs and yields nothing when the file is absent."""
    path = Path(directory) / filename
    if not path.is_file():
        logger.warning("Bitext file %s not found; skipping it", path)
        return iter(())
    return iter(read_csv(path))


def download_full_dataset(cache_dir: Path | str) -> Path:
    """Download the full public Bitext CSV (about 27k rows) from the Hugging Face hub.

    Works only where the hub is reachable; raises ``RuntimeError`` with a clear message otherwise.
    The returned CSV has the same columns and can be passed to :func:`read_csv`.
    """
    try:
        from huggingface_hub import hf_hub_download

        return Path(
            hf_hub_download(
                repo_id=HUB_DATASET_ID,
                filename=HUB_DATASET_FILE,
                repo_type="dataset",
                cache_dir=str(cache_dir),
            )
        )
    except Exception as error:  # network, auth, offline mode: all end the same way for the user
        raise RuntimeError(
            f"could not download {HUB_DATASET_ID} from the Hugging Face hub ({error}). "
            "Without hub access, point NEBRAS_BITEXT_DIR at a local copy of the CSVs instead."
        ) from error
