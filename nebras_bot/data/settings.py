"""Settings of the data stage (``nebras data prepare``), from ``NEBRAS_DATA_*`` environment variables."""
from __future__ import annotations

from typing import Tuple

from pydantic import BaseSettings, Field, validator

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
# NLU examples paired with the domain's utter_<intent> replies: "auto" adds them only when there is
# no Bitext directory (a fresh machine still gets a trainable dataset), "always" or "never".
DOMAIN_RESPONSES_AUTO = "auto"
DOMAIN_RESPONSES_ALWAYS = "always"
DOMAIN_RESPONSES_NEVER = "never"
# Responses whose rules become training exchanges (every NLU example of the rule's intent -> the
# response's text variants): the generated reply to out-of-scope messages, which Bitext never shows.
DEFAULT_RULE_RESPONSES: Tuple[str, ...] = ("utter_generative",)


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
    domain_responses: str = DOMAIN_RESPONSES_AUTO
    rule_responses: Tuple[str, ...] = DEFAULT_RULE_RESPONSES

    @validator("domain_responses")
    def _known_mode(cls, value: str) -> str:  # noqa: N805
        if value not in (DOMAIN_RESPONSES_AUTO, DOMAIN_RESPONSES_ALWAYS, DOMAIN_RESPONSES_NEVER):
            raise ValueError("domain_responses must be auto, always or never")
        return value

    class Config:
        env_prefix = "NEBRAS_DATA_"
