"""The loop's collaborators: training (``nebras_bot.training``), evaluation
(``nebras_bot.evaluation``) and the model registry. Each is a small function here, so the pipeline
reads as the six steps and tests can swap one (for example a trainer that crashes)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Protocol

from nebras_bot import paths
from nebras_bot.learning.settings import LearningSettings

logger = logging.getLogger(__name__)


class Trainer(Protocol):
    def __call__(self, *, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path: ...


class Evaluator(Protocol):
    def __call__(self, *, model: Path, data: Path, train: Path, out: Path, settings: LearningSettings) -> Dict[str, Any]: ...


def train_candidate(*, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path:
    """Fine-tune from the current model with ``nebras train`` (bounded by ``max_minutes``)."""
    from nebras_bot.training.trainer import train

    return Path(train(recipe=settings.recipe, data=data, base=str(base), out=out, max_minutes=settings.max_minutes))


@dataclass
class _Result:
    text: str
    generated: bool = False
    reason: Optional[str] = "reference_only"
    latency_ms: float = 0.0
    model_version: Optional[str] = None


class ReferenceScorer:
    """A replier that does not generate: the evaluation then scores the references' likelihood
    (perplexity, bits per byte) under the model, which is deterministic and cheap on a CPU."""

    def __init__(self, model: Path):
        from nebras_bot.generation.loader import load_causal_lm

        self.loaded = load_causal_lm(model)
        self.model_version = self.loaded.version

    def reply(self, context: Any, template: Optional[str], values: Dict[str, str]) -> _Result:
        return _Result(text=template or "", model_version=self.model_version)


def evaluate_model(*, model: Path, data: Path, train: Path, out: Path, settings: LearningSettings) -> Dict[str, Any]:
    """``nebras evaluate`` (D's ``run_evaluation``) of one model on one CSV."""
    from nebras_bot.evaluation.evaluate import run_evaluation

    generator = None if settings.generate_in_eval else ReferenceScorer(model)
    started = time.perf_counter()
    metrics = run_evaluation(model=model, data=data, train=train, out=out, limit=settings.eval_limit,
                             generator=generator, show_progress=False)
    logger.info("evaluated %s on %s in %.1fs: %s=%s", model, data.name, time.perf_counter() - started,
                settings.score_metric, metrics.get(settings.score_metric))
    return metrics


class Registry(Protocol):
    def current(self) -> Optional[Path]: ...

    def promote(self, version: str) -> None: ...


class TrainingRegistry:
    """``nebras_bot.training.registry`` (engineer C): versions under ``models/nlg/`` and ``current``."""

    def current(self) -> Optional[Path]:
        link = paths.current_nlg_model()
        return link.resolve() if link.exists() else None

    def promote(self, version: str) -> None:
        from nebras_bot.training import registry

        registry.promote(version)
