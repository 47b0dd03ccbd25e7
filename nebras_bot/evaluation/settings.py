"""Settings of the evaluation stage (environment variables ``NEBRAS_EVAL_*``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseSettings, Field

# Columns a ``--data`` / ``--train`` CSV must have (Bitext's column format).
REQUIRED_DATA_COLUMNS: tuple[str, ...] = ("instruction", "intent", "entity_type", "entity_value", "response")
REQUIRED_TRAIN_COLUMNS: tuple[str, ...] = ("instruction", "response")
# Columns that must hold a value in every ``--data`` row (entity columns may be blank).
NON_EMPTY_DATA_COLUMNS: tuple[str, ...] = ("instruction", "intent", "response")

PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SLIDES_FILE = "slides.html"
DIALOGUES_FILE = "dialogues.json"


class EvaluationSettings(BaseSettings):
    """Defaults for ``nebras evaluate``, ``nebras evaluate-dialogues`` and ``nebras report``."""

    # Where results land by default (relative to NEBRAS_HOME).
    results_dir: Path = Field(Path("results"), description="root of evaluation outputs")
    evaluation_subdir: str = "evaluation"
    report_subdir: str = "report"
    # The Rasa domain whose ``utter_<intent>`` responses are the intent-template baseline and the
    # template handed to the generator (a file or a directory of YAML files).
    domain: Path = Path("domain.yml")
    domain_dir: Path = Path("domain")
    # Perplexity: references scored in batches of this many rows, at most this many tokens each.
    perplexity_batch_size: int = 8
    perplexity_max_tokens: int = 512
    # TF-IDF retrieval baseline.
    tfidf_ngram_max: int = 2
    # Dialogue player.
    dialogue_timeout_s: float = 30.0
    dialogue_sender_prefix: str = "nebras-eval"
    # Rows to evaluate (None = all).
    limit: Optional[int] = None
    torch_threads: Optional[int] = None

    class Config:
        env_prefix = "NEBRAS_EVAL_"
