"""Settings of the generation stage: one typed object, the only place where defaults live.

Read from the environment with the prefix ``NEBRAS_GEN_`` (``NEBRAS_GEN_MODEL``,
``NEBRAS_GEN_TIMEOUT_S``, ...); the Rasa NLG class overrides them with the ``nlg:`` keyword
arguments of ``endpoints.yml`` (see :meth:`GenerationSettings.from_options`).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

from pydantic import BaseSettings, Field, validator

from nebras_bot.generation.prompt import PromptSettings

DEFAULT_MODEL = "models/nlg/current"
MODE_REPHRASE = "rephrase"
MODE_GENERATE = "generate"
MODES = (MODE_REPHRASE, MODE_GENERATE)
FAST_PATHS = ("off", "fp32", "int8", "bf16")  # nebras_bot.generation.fastpath

# Keys accepted in endpoints.yml that are spelled differently from the fields (kept short there).
OPTION_ALIASES = {
    "model_source": "model",
    "source": "model",
    "history_turns": "max_history_turns",
    "timeout": "timeout_s",
}


class GenerationSettings(BaseSettings):
    """How replies are generated, checked and fallen back from."""

    # --- model
    model: str = Field(DEFAULT_MODEL, description="loader source: a directory, 'smollm2', 'gpt2-scratch[:preset]', a hub id")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads for generation")
    use_retrieval: bool = Field(True, description="put exemplar replies from the model's exemplars/ index into the prompt")
    exemplars: int = Field(2, ge=0, description="how many exemplar replies to retrieve")

    # --- speed (nebras_bot.generation.fastpath / batching; measured in docs/performance.md)
    fast_path: str = Field("off", description="off: model.generate; fp32|int8|bf16: Nebras's greedy loop with prompt reuse on the model in that precision")
    batching: bool = Field(False, description="decode concurrent greedy replies together in micro-batches")
    batch_max_size: int = Field(8, ge=1, description="most replies decoded in one micro-batch")
    batch_wait_ms: float = Field(10.0, ge=0, description="how long the first request waits for others to join its batch")

    # --- what the NLG does
    mode: str = Field(MODE_REPHRASE, description="rephrase: rewrite the templated reply in context; generate: write it from context")
    rephrase_all: bool = Field(False, description="rephrase every response, not only those with metadata rephrase: true")

    # --- prompt
    max_history_turns: int = Field(6, ge=0)
    max_prompt_tokens: int = Field(384, ge=32)

    # --- decoding
    max_new_tokens: int = Field(60, ge=1, le=512)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.15, ge=1.0)
    no_repeat_ngram_size: int = Field(4, ge=0)
    seed: Optional[int] = Field(None, description="seed for sampling (None: not seeded)")

    # --- safety nets
    timeout_s: float = Field(3.0, gt=0, description="per-reply time limit; over it the templated reply is sent")
    min_chars: int = Field(2, ge=1)
    max_chars: int = Field(600, ge=10)
    max_repeated_ngram: int = Field(2, ge=1, description="a 4-word sequence may appear at most this often")

    class Config:
        env_prefix = "NEBRAS_GEN_"

    @validator("mode", "fast_path")
    def _known_choice(cls, value: str, field) -> str:  # noqa: N805 - pydantic validator
        allowed = {"mode": MODES, "fast_path": FAST_PATHS}[field.name]
        value = str(value).strip().lower()
        if value not in allowed:
            raise ValueError(f"{field.name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    @classmethod
    def from_options(cls, options: Optional[Mapping[str, Any]] = None) -> "GenerationSettings":
        """Environment defaults overridden by explicit options (e.g. ``endpoint_config.kwargs``).

        Unknown keys are a clear error, so a typo in ``endpoints.yml`` does not pass silently.
        """
        values: dict[str, Any] = {}
        for key, value in (options or {}).items():
            name = OPTION_ALIASES.get(key, key)
            if name not in cls.__fields__:
                known = sorted(set(cls.__fields__) | set(OPTION_ALIASES))
                raise ValueError(f"unknown generation option {key!r}; known options: {', '.join(known)}")
            if value is not None:
                values[name] = value
        return cls(**values)

    def prompt_settings(self) -> PromptSettings:
        return PromptSettings(
            max_history_turns=self.max_history_turns,
            max_prompt_tokens=self.max_prompt_tokens,
            max_exemplars=self.exemplars if self.use_retrieval else 0,
        )
