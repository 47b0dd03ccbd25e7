"""Settings of the data stage (``nebras data prepare``), from ``NEBRAS_DATA_*`` environment variables."""
from __future__ import annotations

from typing import Tuple

from pydantic import BaseSettings, Field

# Defaults in one place.
DEFAULT_SEED = 13
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.1
DEFAULT_NEAR_DUPLICATE_THRESHOLD = 0.92
DEFAULT_MIN_REPLY_WORDS = 3
DEFAULT_MAX_REPLY_WORDS = 320
DEFAULT_MAX_INSTRUCTION_WORDS = 120
# responses.csv holds real agent replies; intents.csv holds one fixed reply per intent (the role
# of a domain template), so by default only responses.csv becomes generation training data.
DEFAULT_BITEXT_FILES: Tuple[str, ...] = ("responses.csv",)


class DataSettings(BaseSettings):
    """How ``nebras data prepare`` cleans, deduplicates and splits the sources."""

    seed: int = DEFAULT_SEED
    validation_fraction: float = Field(DEFAULT_VALIDATION_FRACTION, ge=0.0, lt=0.5)
    test_fraction: float = Field(DEFAULT_TEST_FRACTION, ge=0.0, lt=0.5)
    near_duplicate_threshold: float = Field(DEFAULT_NEAR_DUPLICATE_THRESHOLD, gt=0.0, le=1.0)
    min_reply_words: int = DEFAULT_MIN_REPLY_WORDS
    max_reply_words: int = DEFAULT_MAX_REPLY_WORDS
    max_instruction_words: int = DEFAULT_MAX_INSTRUCTION_WORDS
    bitext_files: Tuple[str, ...] = DEFAULT_BITEXT_FILES
    include_stories: bool = True

    class Config:
        env_prefix = "NEBRAS_DATA_"
