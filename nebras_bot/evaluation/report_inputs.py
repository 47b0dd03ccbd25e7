"""Find and load what ``nebras report`` shows: the latest evaluation, training run, data card,
``rasa test`` results and dialogue evaluation. Every loader returns None when its input is absent,
so the report can say which section is missing what.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from nebras_bot import paths
from nebras_bot.evaluation.settings import DIALOGUES_FILE, METRICS_FILE, PREDICTIONS_FILE

logger = logging.getLogger(__name__)

TRAINING_METADATA = "nebras.json"
DATA_CARD = "data_card.json"
INTENT_REPORT = "intent_report.json"
INTENT_CONFUSION = "intent_confusion_matrix.png"
INTENT_HISTOGRAM = "intent_histogram.png"
STORY_REPORT = "story_report.json"
STORY_CONFUSION = "story_confusion_matrix.png"
FAILED_STORIES = "failed_test_stories.yml"

# Training log keys accepted (the first one present wins).
STEP_KEYS = ("step", "global_step", "iter")
TRAIN_LOSS_KEYS = ("train_loss", "loss")
VAL_LOSS_KEYS = ("val_loss", "validation_loss", "eval_loss")
TOKENS_PER_S_KEYS = ("tokens_per_s", "tokens_per_sec", "tokens_per_second", "tok_per_s")
LR_KEYS = ("lr", "learning_rate")


def _read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("could not read %s: %s", path, error)
        return None


def _read_jsonl(path: Path) -> List[Dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue  # a torn last line from an interrupted run
            if isinstance(value, dict):
                records.append(value)
    return records


def _newest(candidates: List[Path]) -> Optional[Path]:
    candidates = [c for c in candidates if c.exists()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


@dataclass
class Evaluation:
    directory: Path
    metrics: Dict[str, Any]
    predictions: List[Dict[str, Any]] = field(default_factory=list)


def find_evaluation(directory: Optional[Path] = None, results: Optional[Path] = None) -> Optional[Evaluation]:
    """The given evaluation directory, or the newest ``metrics.json`` with baselines under ``results/``."""
    if directory is None:
        root = results or paths.home() / "results"
        found = list(root.rglob(METRICS_FILE)) if root.is_dir() else []
        contents = {p: _read_json(p) for p in found}
        newest = _newest([p for p, c in contents.items() if isinstance(c, dict) and "baselines" in c])
        if newest is None:
            return None
        directory = newest.parent
    metrics = _read_json(Path(directory) / METRICS_FILE)
    if not isinstance(metrics, dict):
        return None
    predictions_path = Path(directory) / PREDICTIONS_FILE
    predictions = _read_jsonl(predictions_path) if predictions_path.is_file() else []
    return Evaluation(Path(directory), metrics, predictions)


def find_all_evaluations(results: Optional[Path] = None) -> List[Evaluation]:
    """Every evaluation run (``metrics.json`` with baselines) under ``results/``, oldest first
    (metrics only, for the comparison table)."""
    root = results or paths.home() / "results"
    runs = []
    for path in sorted(root.rglob(METRICS_FILE)) if root.is_dir() else []:
        metrics = _read_json(path)
        if isinstance(metrics, dict) and "baselines" in metrics:
            runs.append((path.stat().st_mtime, Evaluation(path.parent, metrics)))
    return [run for _, run in sorted(runs, key=lambda item: item[0])]


@dataclass
class TrainingRun:
    directory: Path
    metadata: Dict[str, Any]
    log: List[Dict[str, Any]]
    log_path: Optional[Path]

    def series(self, keys: tuple) -> tuple[List[float], List[float]]:
        """``(steps, values)`` for the first of ``keys`` present in each log record."""
        steps, values = [], []
        for index, record in enumerate(self.log):
            value = next((record[k] for k in keys if isinstance(record.get(k), (int, float))), None)
            if value is None:
                continue
            step = next((record[k] for k in STEP_KEYS if isinstance(record.get(k), (int, float))), index)
            steps.append(float(step))
            values.append(float(value))
        return steps, values


def _training_log(directory: Path) -> Optional[Path]:
    logs = sorted(directory.glob("*.jsonl"))
    preferred = [p for p in logs if "log" in p.name or "train" in p.name]
    return (preferred or logs or [None])[0]


IN_PROGRESS_SUFFIX = ".partial"  # nebras_bot.training.registry.PARTIAL_SUFFIX: a run still writing


def default_training_dir() -> Optional[Path]:
    """The promoted model (``models/nlg/current``), else the newest finished version with a log."""
    current = paths.current_nlg_model()
    if current.exists() and (current.resolve() / TRAINING_METADATA).is_file():
        return current.resolve()
    registry = paths.nlg_models_dir()
    if not registry.is_dir():
        return None
    versions = [d for d in registry.iterdir()
                if d.is_dir() and not d.is_symlink() and not d.name.endswith(IN_PROGRESS_SUFFIX)]
    with_log = [d for d in versions if _training_log(d) is not None]
    return _newest(with_log or [d for d in versions if (d / TRAINING_METADATA).is_file()])


def model_dir_of(evaluation: Optional["Evaluation"]) -> Optional[Path]:
    """The trained model directory an evaluation scored, when it is one (has nebras.json or a log)."""
    model = (evaluation.metrics.get("model") if evaluation is not None else None) or ""
    if not model:
        return None
    path = Path(model) if Path(model).is_absolute() else paths.home() / model
    if path.is_dir() and ((path / TRAINING_METADATA).is_file() or _training_log(path.resolve()) is not None):
        return path.resolve()
    return None


def find_training_run(directory: Optional[Path] = None) -> Optional[TrainingRun]:
    """The given model directory, else :func:`default_training_dir` (None when there is none)."""
    if directory is None:
        directory = default_training_dir()
        if directory is None:
            return None
    directory = Path(directory).resolve()
    metadata = _read_json(directory / TRAINING_METADATA) if (directory / TRAINING_METADATA).is_file() else None
    log_path = _training_log(directory) if directory.is_dir() else None
    if log_path is None:
        nested = sorted(directory.glob("*/*.jsonl")) if directory.is_dir() else []
        log_path = nested[0] if nested else None
    log = _read_jsonl(log_path) if log_path else []
    if metadata is None and not log:
        return None
    return TrainingRun(directory, metadata if isinstance(metadata, dict) else {}, log, log_path)


def find_data_card(path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """A data card file, or the newest ``models/datasets/<version>/data_card.json``."""
    if path is None:
        root = paths.datasets_dir()
        path = _newest(list(root.glob(f"*/{DATA_CARD}"))) if root.is_dir() else None
        if path is None:
            return None
    card = _read_json(Path(path))
    return card if isinstance(card, dict) else None


@dataclass
class RasaTestResults:
    directory: Path
    intent_report: Optional[Dict[str, Any]]
    confusion_png: Optional[bytes]
    histogram_png: Optional[bytes]
    story_report: Optional[Dict[str, Any]]
    failed_stories: Optional[str]
    story_confusion_png: Optional[bytes] = None


def find_rasa_results(directory: Optional[Path] = None) -> Optional[RasaTestResults]:
    """``rasa test`` outputs under ``results/`` (its default output directory)."""
    directory = Path(directory or paths.home() / "results")

    def maybe(name: str) -> Optional[Path]:
        path = directory / name
        return path if path.is_file() else None

    intent, story = maybe(INTENT_REPORT), maybe(STORY_REPORT)
    confusion, histogram, failed = maybe(INTENT_CONFUSION), maybe(INTENT_HISTOGRAM), maybe(FAILED_STORIES)
    story_confusion = maybe(STORY_CONFUSION)
    if not any((intent, story, confusion)):
        return None
    return RasaTestResults(
        directory=directory,
        intent_report=_read_json(intent) if intent else None,
        confusion_png=confusion.read_bytes() if confusion else None,
        histogram_png=histogram.read_bytes() if histogram else None,
        story_report=_read_json(story) if story else None,
        failed_stories=failed.read_text(encoding="utf-8") if failed else None,
        story_confusion_png=story_confusion.read_bytes() if story_confusion else None,
    )


def find_dialogue_results(path: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """The JSON written by ``nebras evaluate-dialogues`` (default ``results/dialogues.json``)."""
    path = Path(path or paths.home() / "results" / DIALOGUES_FILE)
    if not path.is_file():
        return None
    result = _read_json(path)
    return result if isinstance(result, dict) and "checks" in result else None
