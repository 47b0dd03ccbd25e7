"""The loop's collaborators: training (``nebras_bot.training``), evaluation
(``nebras_bot.evaluation``) and the model registry. Each is a small function here, so the pipeline
reads as the six steps and tests can swap one (for example a trainer that crashes)."""
from __future__ import annotations

import json
import logging
import shutil
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


def finetune_recipe(current: Path, settings: LearningSettings):
    """The recipe the current model was trained with (or ``settings.recipe``), set up to fine-tune."""
    from nebras_bot.training.recipe import Recipe, load_recipe

    if settings.recipe:
        recipe = load_recipe(settings.recipe)
    elif (current / "recipe.json").is_file():
        recipe = Recipe(**json.loads((current / "recipe.json").read_text(encoding="utf-8")))
    else:
        recipe = load_recipe()
    return recipe.with_overrides({
        "name": "learn", "lr": settings.finetune_lr, "warmup_steps": settings.finetune_warmup_steps,
        "max_steps": settings.finetune_max_steps, "eval_every": settings.finetune_eval_every,
        "early_stopping_patience": settings.finetune_patience, "max_minutes": settings.max_minutes,
        "checkpoint_every": max(settings.finetune_max_steps, 1), "max_train_examples": None,
    })


def train_candidate(*, data: Path, base: Path, out: Path, settings: LearningSettings) -> Path:
    """Fine-tune from the current model with ``nebras train`` (bounded by ``max_minutes``), then
    rebuild its exemplar index over the whole new training split (base + new examples)."""
    from nebras_bot.training.trainer import train

    candidate = Path(train(finetune_recipe(base, settings), data_dir=data, base=str(base), out_dir=out,
                           max_minutes=settings.max_minutes, progress=True))
    full_dataset = data.parent if (data.parent / "train.jsonl").is_file() else data
    if (candidate / "exemplars").is_dir() or (base / "exemplars").is_dir():
        rebuild_exemplars(candidate, full_dataset)
    return candidate


def rebuild_exemplars(model_dir: Path, dataset_dir: Path) -> None:
    from nebras_bot.data.prepare import load_split
    from nebras_bot.data.templates import intent_templates
    from nebras_bot.generation.retrieval import ExemplarIndex
    from nebras_bot.training import dataset as ds

    examples = ds.exchanges(load_split(dataset_dir, "train"), intent_templates())
    index = ExemplarIndex.build([e.query for e in examples], [e.reply for e in examples], [e.intent for e in examples])
    shutil.rmtree(model_dir / "exemplars", ignore_errors=True)
    index.save(model_dir / "exemplars")


@dataclass
class _Result:
    text: str
    generated: bool = False
    reason: Optional[str] = "reference_only"
    latency_ms: float = 0.0
    model_version: Optional[str] = None


class ReferenceScorer:
    """The serving generator without sampling: the evaluation then scores the references'
    likelihood (perplexity, bits per byte) under the model with the exact serving prompt
    (retrieval included), which is deterministic and cheap on a CPU."""

    def __init__(self, model: Path):
        from nebras_bot.evaluation.serving_path import build_generator

        self._generator = build_generator(model)
        self.loaded = self._generator.loaded
        self.model_version = getattr(self.loaded, "version", None)

    def build_prompt(self, context: Any) -> str:
        return self._generator.build_prompt(context)

    def reply(self, context: Any, template: Optional[str], values: Dict[str, str]) -> _Result:
        return _Result(text=template or "", model_version=self.model_version)


def evaluate_model(*, model: Path, data: Path, train: Path, out: Path, settings: LearningSettings) -> Dict[str, Any]:
    """``nebras evaluate`` (D's ``run_evaluation``) of one model on one CSV."""
    from nebras_bot.evaluation.evaluate import run_evaluation

    generator = None if settings.generate_in_eval else ReferenceScorer(model)
    started = time.perf_counter()
    domain = Path(settings.domain) if settings.domain else None
    metrics = run_evaluation(model=model, data=data, train=train, out=out, limit=settings.eval_limit,
                             generator=generator, show_progress=False, domain=domain)
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
