"""Training recipes: one typed object, read from YAML (``nebras_bot/training/recipes/<name>.yaml``).

``nebras train --recipe NAME|PATH`` loads a recipe; command-line flags override single fields.
Every field has its default here, so a recipe file only states what differs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from pydantic import BaseModel, Field, validator

from nebras_bot.data.records import SOURCES
from nebras_bot.generation.retrieval import DEFAULT_POOL, ORDER_SIMILARITY, check_order

RECIPES_DIR = Path(__file__).parent / "recipes"
DEFAULT_RECIPE = "default"
METHOD_FULL = "full"
METHOD_LORA = "lora"


class LoraSettings(BaseModel):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    # None: every linear projection of the attention and MLP blocks (peft picks by name per model).
    target_modules: Optional[List[str]] = None


class PromptRecipe(BaseModel):
    """Prompt limits; the defaults equal ``PromptSettings()``, which the generator also uses."""

    max_history_turns: int = 6
    max_prompt_tokens: int = 384
    max_field_chars: int = 600


class Recipe(BaseModel):
    name: str = "custom"
    description: str = ""
    # --- model
    base: str = "gpt2-scratch:small"  # any source of nebras_bot.generation.loader
    model_config_overrides: Dict[str, Any] = Field(default_factory=dict)  # gpt2-scratch only
    method: str = METHOD_FULL
    lora: LoraSettings = Field(default_factory=LoraSettings)
    # --- data
    retrieval: bool = True
    exemplars: int = Field(2, ge=0)
    # similarity: the replies of the nearest training messages; central: of the exemplar_pool
    # nearest, the most typical replies (nebras_bot.generation.retrieval). Saved with the index.
    exemplar_order: str = ORDER_SIMILARITY
    exemplar_pool: int = Field(DEFAULT_POOL, ge=1)
    prompt: PromptRecipe = Field(default_factory=PromptRecipe)
    max_length: int = Field(768, ge=16)
    packing: bool = True
    # Share of training examples whose prompt template is a sketch of their own reply (2-4 of its
    # sentences) instead of the domain's template: teaches the model to carry a template's
    # content into its reply (dataset.sketch_templates). Validation prompts are never sketched.
    template_sketch_share: float = Field(0.0, ge=0, le=1)
    # Share of the single-turn training examples whose history starts with an exchange of another
    # intent (its message, reply and entities as slots): teaches the model to answer the latest
    # message after a change of subject (dataset.add_prior_exchanges). Validation is never changed.
    prior_exchange_share: float = Field(0.0, ge=0, le=1)
    # Training copies per dialogue of a source ({source: copies}; unnamed sources: 1): the Rasa
    # project's own few dialogues (rasa_rules: out-of-scope messages, rasa_stories) are otherwise
    # a handful among thousands of Bitext rows, and a 45-minute run sees most of them never
    # (dataset.repeat_sources). Validation is never repeated.
    source_repeats: Dict[str, int] = Field(default_factory=dict)
    max_train_examples: Optional[int] = None  # for quick runs and tests
    # --- optimisation
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, ge=0)
    warmup_steps: int = Field(50, ge=0)
    max_steps: int = Field(3000, ge=1)
    # --- control
    max_minutes: Optional[float] = Field(None, gt=0)
    # wall: minutes on the clock; process: CPU minutes of this process (fair comparisons on a
    # shared machine: every run gets the same compute whatever else is running).
    budget_clock: str = "wall"
    eval_every: int = Field(100, ge=1)
    eval_batches: int = Field(16, ge=1)
    final_eval_batches: Optional[int] = Field(None, ge=1)  # None: the whole validation split
    early_stopping_patience: int = Field(5, ge=0)  # evaluations without improvement; 0 = off
    checkpoint_every: int = Field(200, ge=1)
    log_every: int = Field(10, ge=1)
    bf16: str = "auto"  # auto | true | false
    seed: int = 13
    threads: Optional[int] = None  # torch intra-op threads (None: torch's default)
    # --- what the generator should use with this model (written to nebras.json)
    generation: Dict[str, Any] = Field(default_factory=dict)

    @validator("method")
    def _known_method(cls, value: str) -> str:  # noqa: N805
        if value not in (METHOD_FULL, METHOD_LORA):
            raise ValueError(f"method must be {METHOD_FULL!r} or {METHOD_LORA!r}, not {value!r}")
        return value

    @validator("source_repeats")
    def _known_sources(cls, value: Dict[str, int]) -> Dict[str, int]:  # noqa: N805
        unknown = sorted(set(value) - set(SOURCES))
        if unknown:
            raise ValueError(f"source_repeats: unknown source(s) {unknown}; expected some of {list(SOURCES)}")
        low = {name: copies for name, copies in value.items() if copies < 1}  # already ints (pydantic)
        if low:
            raise ValueError(f"source_repeats: copies must be >= 1, got {low}")
        return value

    @validator("budget_clock")
    def _known_clock(cls, value: str) -> str:  # noqa: N805
        if value not in ("wall", "process"):
            raise ValueError("budget_clock must be wall or process")
        return value

    @validator("exemplar_order")
    def _known_exemplar_order(cls, value: str) -> str:  # noqa: N805
        return check_order(value)

    @validator("bf16")
    def _known_bf16(cls, value: Any) -> str:  # noqa: N805
        value = str(value).lower()
        if value not in ("auto", "true", "false"):
            raise ValueError("bf16 must be auto, true or false")
        return value

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Recipe":
        data = self.dict()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return Recipe(**data)


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe file: an existing path, or ``recipes/<name>.yaml`` shipped with the package."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
        return candidate
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    raise FileNotFoundError(f"no recipe {name_or_path!r}: not a YAML file and not one of {known}")


def load_recipe(name_or_path: str | Path | Recipe = DEFAULT_RECIPE) -> Recipe:
    """A ``Recipe`` from a shipped name, a YAML path, or an existing ``Recipe``."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    import yaml

    path = recipe_path(name_or_path)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return Recipe(**data)
    except Exception as error:
        raise ValueError(f"{path}: invalid recipe: {error}") from error
