"""Settings of the generation stage: one typed object, the only place where defaults live.

Precedence, lowest first (one place: :meth:`GenerationSettings.from_options` for the last two,
:meth:`GenerationSettings.with_model_settings` for the model's block):

1. the defaults of the fields below;
2. the loaded model's ``nebras.json`` (written by ``nebras train``): its ``prompt`` block, its
   ``generation`` block and its ``exemplars`` count; only :data:`MODEL_KEYS` (how the model was
   trained to be prompted, decoded and guarded; never serving choices such as the timeout);
3. the environment, prefix ``NEBRAS_GEN_`` (``NEBRAS_GEN_MAX_NEW_TOKENS``, ``NEBRAS_GEN_TIMEOUT_S``, ...);
4. explicit options: the ``nlg:`` keys of ``endpoints.yml``, or keyword arguments in code.

A field set by the environment or explicitly is in ``__fields_set__`` and is never replaced by the
model's value. A bad value or an unknown key in ``nebras.json`` is an error naming the file
(:class:`ModelSettingsError`): that model is not loaded (serving keeps templated replies, or the
model it had; ``nebras evaluate`` stops), rather than being served with settings nobody chose.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional

from pydantic import BaseSettings, Field, PrivateAttr, ValidationError, validator

from nebras_bot.generation.guard import DEFAULT_MAX_REPEATED_NGRAM
from nebras_bot.generation.prompt import PromptSettings

DEFAULT_MODEL = "models/nlg/current"
MODE_REPHRASE = "rephrase"
MODE_GENERATE = "generate"
MODES = (MODE_REPHRASE, MODE_GENERATE)
FAST_PATHS = ("off", "fp32", "int8", "bf16", "w8", "w4", "auto")  # nebras_bot.generation.fastpath
RERANK_ALWAYS = "always"  # sample candidates for every reply
RERANK_REFUSED = "refused"  # only when the greedy reply is refused (placeholders, guard, topic check)
RERANK_WHEN = (RERANK_ALWAYS, RERANK_REFUSED)
DEVICE_AUTO = "auto"  # the first CUDA device when torch sees one, else the CPU (nebras_bot.generation.device)
DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")

# Keys accepted in endpoints.yml that are spelled differently from the fields (kept short there).
OPTION_ALIASES = {
    "model_source": "model",
    "source": "model",
    "history_turns": "max_history_turns",
    "timeout": "timeout_s",
}

# The fields a model's nebras.json may set: how it was trained to be prompted (``prompt`` block,
# ``exemplars``), decoded and guarded (``generation`` block).
MODEL_PROMPT_KEYS = ("max_history_turns", "max_prompt_tokens", "max_field_chars")
MODEL_GENERATION_KEYS = (
    "max_history_turns", "max_prompt_tokens", "max_field_chars", "exemplars",
    "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "num_beams", "repetition_penalty",
    "no_repeat_ngram_size", "min_chars", "max_chars", "max_repeated_ngram", "rerank_samples", "rerank_evidence",
    "rerank_when",
)
MODEL_KEYS = MODEL_GENERATION_KEYS
METADATA_PROMPT = "prompt"
METADATA_GENERATION = "generation"
METADATA_EXEMPLARS = "exemplars"
METADATA_RETRIEVAL = "retrieval"


class ModelSettingsError(ValueError):
    """A model directory's nebras.json holds generation settings that cannot be used."""


class GenerationSettings(BaseSettings):
    """How replies are generated, checked and fallen back from."""

    # --- model
    model: str = Field(DEFAULT_MODEL, description="loader source: a directory, 'smollm2', 'gpt2-scratch[:preset]', a hub id")
    torch_threads: int = Field(2, ge=1, description="torch intra-op threads for generation")
    device: str = Field(DEVICE_AUTO, description="where the model runs: auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda, cuda:N")
    use_retrieval: bool = Field(True, description="put exemplar replies from the model's exemplars/ index into the prompt")
    exemplars: int = Field(2, ge=0, description="how many exemplar replies to retrieve")

    # --- speed (nebras_bot.generation.fastpath / batching; measured in docs/performance.md)
    fast_path: str = Field("off", description="off: model.generate; fp32|int8|bf16|w8|w4: Nebras's greedy loop with prompt reuse on the model in that precision (w8/w4: int8/int4 weights, bf16 arithmetic); auto: w8 on a CPU with bf16 instructions, bf16 on a GPU with bf16, else fp32")
    corpus_drafts: bool = Field(True, description="lookup decoding also guesses from the model's training replies (its exemplar index); the replies are the same, only faster")
    hold_bf16_weights: bool = Field(True, description="w8/w4 single replies: keep a de-quantised bf16 copy of the body's weights for prompt passes (SmolLM2-135M: +212 MB, ~50 ms less per reply)")
    batching: bool = Field(False, description="decode concurrent greedy replies together in one continuous batch (requests join between decoding steps)")
    batch_max_size: int = Field(8, ge=1, description="most replies decoded together")
    batch_wait_ms: float = Field(10.0, ge=0, description="how long the first request of an idle worker waits for others before the prompt pass")

    # --- what the NLG does
    mode: str = Field(MODE_REPHRASE, description="rephrase: rewrite the templated reply in context; generate: write it from context")
    rephrase_all: bool = Field(False, description="rephrase every response, not only those with metadata rephrase: true")

    # --- prompt
    max_history_turns: int = Field(6, ge=0)
    max_prompt_tokens: int = Field(384, ge=32)
    max_field_chars: int = Field(600, ge=20, description="longest text of one prompt field (template, exemplar)")

    # --- decoding
    max_new_tokens: int = Field(60, ge=1, le=512)
    do_sample: bool = False
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    top_k: int = Field(50, ge=0)
    num_beams: int = Field(1, ge=1)
    repetition_penalty: float = Field(1.15, ge=1.0)
    no_repeat_ngram_size: int = Field(4, ge=0)
    steer_placeholders: bool = Field(
        True, description="keep {placeholders} without a value out of replies while decoding: ban their opening "
        "tokens when nothing can be filled, else decode again from before one (nebras_bot.generation.constraints)",
    )
    placeholder_retries: int = Field(2, ge=0, description="most re-decodings from before an unfillable placeholder per reply")
    seed: Optional[int] = Field(None, description="seed for sampling (None: not seeded)")
    rerank_samples: int = Field(
        0, ge=0, le=16, description="consensus reranking: also sample this many replies (temperature, top_p, "
        "top_k above) and send the candidate that passes the guard and is most like the others and the "
        "retrieved exemplar replies (0: the greedy reply only; nebras_bot.generation.rerank)",
    )
    rerank_evidence: int = Field(10, ge=0, description="exemplar replies (same intent, nearest messages) the candidates are compared with")
    rerank_when: str = Field(
        RERANK_ALWAYS, description="always: sample candidates for every reply; refused: only when the greedy reply "
        "is refused, so a reply the guard passes costs nothing more",
    )

    # --- safety nets
    timeout_s: float = Field(3.0, gt=0, description="per-reply time limit; over it the templated reply is sent")
    deadline_margin_s: float = Field(
        0.3, ge=0, description="decoding stops this long before the timeout; a reply cut there keeps its complete sentences"
    )
    min_chars: int = Field(2, ge=1)
    max_chars: int = Field(600, ge=10)
    max_repeated_ngram: int = Field(DEFAULT_MAX_REPEATED_NGRAM, ge=1, description="a 4-word sequence may appear at most this often")
    cut_repetition: bool = Field(
        True, description="a reply that starts repeating itself is cut at its last complete sentence before the "
        "repetition (and checked again) instead of being refused (nebras_bot.generation.guard.cut_repetition)",
    )
    topic_top: int = Field(3, ge=0, description="off_topic unless the recognised intent is among the reply's this many closest intents (nebras_bot.generation.topic; 0: off)")

    # the values with_model_settings took from the model's nebras.json (not a setting)
    _from_model: dict = PrivateAttr(default_factory=dict)

    class Config:
        env_prefix = "NEBRAS_GEN_"

    @validator("mode", "fast_path", "rerank_when")
    def _known_choice(cls, value: str, field) -> str:  # noqa: N805 - pydantic validator
        allowed = {"mode": MODES, "fast_path": FAST_PATHS, "rerank_when": RERANK_WHEN}[field.name]
        value = str(value).strip().lower()
        if value not in allowed:
            raise ValueError(f"{field.name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    @validator("device")
    def _device_name(cls, value: str) -> str:  # noqa: N805 - pydantic validator
        return check_device_name(value)

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

    def with_model_settings(self, metadata: Mapping[str, Any], origin: str = "nebras.json") -> "GenerationSettings":
        """These settings with the model's ``nebras.json`` values filled in where nothing more
        specific (environment, explicit option) set the field; ``origin`` names the file in errors.

        Returns ``self`` when the model has nothing to add. Raises :class:`ModelSettingsError`.
        """
        from_model = model_settings(metadata, origin)
        applied = {key: value for key, value in from_model.items() if key not in self.__fields_set__}
        if not applied:
            return self
        try:
            resolved = type(self)(**{**self.dict(), **applied})
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            raise ModelSettingsError(f"invalid generation settings in {origin}: {problems}") from error
        object.__setattr__(resolved, "__fields_set__", set(self.__fields_set__))  # still "not explicit"
        resolved._from_model = dict(applied)
        return resolved

    @property
    def from_model(self) -> dict[str, Any]:
        """The values :meth:`with_model_settings` took from the model (empty when none)."""
        return dict(self._from_model)

    def prompt_settings(self) -> PromptSettings:
        return PromptSettings(
            max_history_turns=self.max_history_turns,
            max_prompt_tokens=self.max_prompt_tokens,
            max_exemplars=self.exemplars if self.use_retrieval else 0,
            max_field_chars=self.max_field_chars,
        )


def check_device_name(value: Any) -> str:
    """``value`` normalised (lower case, stripped), or a ``ValueError`` naming the accepted forms."""
    name = str(value).strip().lower()
    if not DEVICE_NAME.match(name):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, not {value!r}")
    return name


def model_settings(metadata: Mapping[str, Any], origin: str = "nebras.json") -> dict[str, Any]:
    """The generation settings a model's ``nebras.json`` states (``prompt`` + ``generation`` blocks,
    ``exemplars`` when trained with retrieval); unknown keys are a :class:`ModelSettingsError`."""
    values: dict[str, Any] = {}
    for block, allowed in ((METADATA_PROMPT, MODEL_PROMPT_KEYS), (METADATA_GENERATION, MODEL_GENERATION_KEYS)):
        data = metadata.get(block)
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise ModelSettingsError(f"invalid generation settings in {origin}: {block!r} must be a mapping, not {data!r}")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ModelSettingsError(
                f"invalid generation settings in {origin}: unknown {block!r} key(s) {', '.join(map(repr, unknown))}; "
                f"a model may set: {', '.join(allowed)}"
            )
        values.update({key: value for key, value in data.items() if value is not None})
    if metadata.get(METADATA_RETRIEVAL) and metadata.get(METADATA_EXEMPLARS) is not None:
        values.setdefault(METADATA_EXEMPLARS, metadata[METADATA_EXEMPLARS])
    return values
