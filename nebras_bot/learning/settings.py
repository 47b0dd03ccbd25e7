"""Settings of the continuous-learning loop (``nebras learn``), from ``NEBRAS_LEARN_*`` variables."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseSettings

from nebras_bot import paths

# Metrics where a lower value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"perplexity", "bits_per_byte", "fallback_rate", "latency_ms_p50", "latency_ms_p95"})


class LearningSettings(BaseSettings):
    # --- harvest --------------------------------------------------------------------------------
    # Rasa's SQL tracker store. None: read `tracker_store` (type SQL) from endpoints.yml, if any.
    tracker_db_url: Optional[str] = None
    endpoints_file: str = "endpoints.yml"
    # Rasa's pika event broker (RabbitMQ). Consumed only when enabled (or --broker is given).
    broker_enabled: bool = False
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672/%2F"
    broker_queue: str = "rasa_production_events"
    broker_max_messages: int = 100_000
    # User messages below this NLU confidence (or predicted as nlu_fallback) go to the review file.
    low_confidence: float = 0.5
    # --- curate ---------------------------------------------------------------------------------
    base_dataset: Optional[str] = None  # dataset dir; default: the current model's, else the newest
    new_eval_fraction: float = 0.25  # share of new examples held out to score "new data"
    replay_examples: int = 200  # base training examples mixed into fine-tuning (against forgetting)
    new_example_repeats: int = 3  # new examples are repeated this often in the fine-tuning set
    min_new_examples: int = 1  # fewer new examples than this: nothing to learn, no training
    # --- train ----------------------------------------------------------------------------------
    # None: the current model's own recipe (its recipe.json), with the fine-tuning overrides below.
    recipe: Optional[str] = None
    max_minutes: float = 20.0  # training budget for one run
    finetune_lr: float = 3e-4
    finetune_max_steps: int = 300
    finetune_warmup_steps: int = 10
    finetune_eval_every: int = 50
    finetune_patience: int = 3
    # --- evaluate & decide ------------------------------------------------------------------------
    score_metric: str = "bits_per_byte"
    # The candidate's validation score may be worse than the current model's by at most this
    # fraction (0.02 = 2 %); its new-data score must be better by more than min_new_gain (fraction).
    validation_tolerance: float = 0.02
    min_new_gain: float = 0.0
    eval_limit: Optional[int] = 200  # validation rows scored per model (None: all)
    generate_in_eval: bool = False  # False: score references only (no sampling; fast and stable)
    domain: Optional[str] = None  # Rasa domain for templates (default: the project's domain.yml)
    # --- files ----------------------------------------------------------------------------------
    state_dir: Optional[str] = None  # default var/learning

    class Config:
        env_prefix = "NEBRAS_LEARN_"

    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else paths.var_dir() / "learning"

    def lock_path(self) -> Path:
        return self.state_path() / "learn.lock"

    def exports_path(self) -> Path:
        return self.state_path() / "exports"

    def runs_registry_path(self) -> Path:
        """Every completed run's record lives next to the model versions it decided about."""
        return paths.nlg_models_dir() / "runs"

    def higher_is_better(self) -> bool:
        return self.score_metric not in LOWER_IS_BETTER
