"""``nebras learn``: harvest -> curate -> fine-tune -> evaluate -> decide -> record (and promote).

Safe to run on a schedule: a lock file keeps runs from overlapping; the candidate is trained into a
hidden temporary directory under ``models/nlg/`` and moved into the registry only when it is
promoted, as the very last step, so a crash at any point leaves the registry and the ``current``
link as they were (the harvest store is idempotent, and the run watermark only moves when a run
completes, so the next run picks the same material up again).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional

from sqlalchemy.engine import Engine

from nebras_bot import paths
from nebras_bot.learning import backends
from nebras_bot.learning.conversations import nlu_review_yaml, stories_yaml
from nebras_bot.learning.curate import FINETUNE_DIR, NEW_SPLIT, CuratedDataset, base_dataset, curate
from nebras_bot.learning.harvest import harvest
from nebras_bot.learning.lock import RunLock
from nebras_bot.learning.settings import LearningSettings
from nebras_bot.learning.store import HarvestStore
from nebras_bot.support.scrub import scrub

logger = logging.getLogger(__name__)

RUN_WATERMARK = "learn.harvest_id"
RUNS_FILE = "learning_runs.jsonl"
CANDIDATE_PREFIX = ".candidate-"
PROMOTED, REFUSED, NOTHING_NEW, NO_MODEL, FAILED = "promoted", "refused", "nothing_new", "no_current_model", "failed"
KEPT_METRICS = ("n", "bleu", "rougeL", "chrf", "perplexity", "bits_per_byte", "fallback_rate", "entity_recall")


@dataclass
class RunRecord:
    run_id: str
    started_at: str
    decision: str = ""
    reasons: List[str] = field(default_factory=list)
    finished_at: Optional[str] = None
    inputs: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    candidate_version: Optional[str] = None
    promoted_version: Optional[str] = None
    previous_version: Optional[str] = None
    exports: Dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def relative_change(current: float, candidate: float, higher_is_better: bool) -> float:
    """How much better the candidate is, as a fraction of the current value (negative: worse)."""
    scale = abs(current) or 1e-9
    return (candidate - current) / scale if higher_is_better else (current - candidate) / scale


def decide(metrics: Dict[str, Dict[str, Dict[str, Any]]], settings: LearningSettings) -> List[str]:
    """Reasons to refuse the candidate (empty: promote). ``metrics[model][split][metric]``."""
    name, higher = settings.score_metric, settings.higher_is_better()
    values = {(m, s): (metrics.get(m, {}).get(s) or {}).get(name) for m in ("current", "candidate")
              for s in ("validation", NEW_SPLIT)}
    missing = [f"{m}/{s}" for (m, s), v in values.items() if v is None]
    if missing:
        return [f"{name} could not be computed for {', '.join(missing)}"]
    reasons = []
    validation = relative_change(values["current", "validation"], values["candidate", "validation"], higher)
    if validation < -settings.validation_tolerance:
        reasons.append(f"validation {name} worse by {-validation:.1%} "
                       f"({values['current', 'validation']:.4g} -> {values['candidate', 'validation']:.4g}; "
                       f"tolerance {settings.validation_tolerance:.1%})")
    new = relative_change(values["current", NEW_SPLIT], values["candidate", NEW_SPLIT], higher)
    if not new > settings.min_new_gain:
        reasons.append(f"new-data {name} did not improve enough ({values['current', NEW_SPLIT]:.4g} -> "
                       f"{values['candidate', NEW_SPLIT]:.4g}; change {new:+.1%}, needed > {settings.min_new_gain:+.1%})")
    return reasons


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def append_record(record: RunRecord) -> Path:
    """Append the run to ``models/nlg/learning_runs.jsonl`` (the registry's run history)."""
    path = paths.nlg_models_dir() / RUNS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(record), ensure_ascii=False, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return path


def run_history(limit: Optional[int] = None) -> List[Dict[str, Any]]:
    path = paths.nlg_models_dir() / RUNS_FILE
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[-limit:] if limit else lines


def write_exports(curated: CuratedDataset, run_id: str, settings: LearningSettings) -> Dict[str, str]:
    """The NLU review file and the harvested conversations as Rasa stories."""
    directory = settings.exports_path() / run_id
    exports = {}
    if curated.review:
        review = [dict(m, text=scrub(m["text"])) for m in curated.review]
        _atomic_write(directory / "nlu_review.yml", nlu_review_yaml(review))
        exports["nlu_review"] = str(directory / "nlu_review.yml")
    if curated.conversations:
        for conversation in curated.conversations:
            for event in conversation.events:
                if event.get("text"):
                    event["text"] = scrub(str(event["text"]))
        _atomic_write(directory / "stories.yml", stories_yaml(curated.conversations))
        exports["stories"] = str(directory / "stories.yml")
    return exports


def _clean_stale_candidates() -> None:
    root = paths.nlg_models_dir()
    for stale in root.glob(f"{CANDIDATE_PREFIX}*") if root.is_dir() else []:
        logger.warning("removing %s left by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


def _version_of(model_dir: Path) -> str:
    meta = model_dir / "nebras.json"
    if meta.is_file():
        return str(json.loads(meta.read_text(encoding="utf-8")).get("version") or model_dir.name)
    return model_dir.name


def _evaluate_both(current: Path, candidate: Path, curated: CuratedDataset, work: Path, settings: LearningSettings,
                   evaluator: backends.Evaluator) -> Dict[str, Dict[str, Dict[str, Any]]]:
    assert curated.directory is not None
    train_csv = curated.directory / "train.csv"
    results: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for label, model in (("current", current), ("candidate", candidate)):
        results[label] = {}
        for split in ("validation", NEW_SPLIT):
            data = curated.directory / f"{split}.csv"
            metrics = evaluator(model=model, data=data, train=train_csv, out=work / "eval" / label / split,
                                settings=settings)
            results[label][split] = {k: metrics.get(k) for k in KEPT_METRICS if k in metrics}
    return results


def learn(
    settings: Optional[LearningSettings] = None,
    *,
    engine: Optional[Engine] = None,
    tracker_url: Optional[str] = None,
    broker: Optional[bool] = None,
    from_start: bool = False,
    trainer: backends.Trainer = backends.train_candidate,
    evaluator: backends.Evaluator = backends.evaluate_model,
    registry: Optional[backends.Registry] = None,
) -> RunRecord:
    """One run of the continuous-learning loop; returns (and records) what it did and why.

    A run that fails with an exception is recorded as ``failed`` (with the error) and re-raised; the
    registry, the ``current`` link and the run watermark stay as they were, so the next run picks
    the same material up again.
    """
    settings = settings or LearningSettings()
    registry = registry or backends.TrainingRegistry()
    with RunLock(settings.lock_path()):
        started = time.perf_counter()
        record = RunRecord(run_id=datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
                           started_at=_now())
        try:
            return _run(record, started, settings, engine, tracker_url, broker, from_start, trainer, evaluator,
                        registry)
        except Exception as error:
            record.decision, record.reasons = FAILED, [f"{type(error).__name__}: {error}"]
            record.finished_at, record.duration_s = _now(), round(time.perf_counter() - started, 1)
            append_record(record)
            logger.error("learning run %s failed (registry and current model unchanged): %s", record.run_id, error)
            raise


def _run(record: RunRecord, started: float, settings: LearningSettings, engine: Optional[Engine],
         tracker_url: Optional[str], broker: Optional[bool], from_start: bool, trainer: backends.Trainer,
         evaluator: backends.Evaluator, registry: backends.Registry) -> RunRecord:
    _clean_stale_candidates()
    store = HarvestStore(engine)
    report = harvest(store, settings, tracker_url=tracker_url, broker=broker)
    after = 0 if from_start else int(store.watermark(RUN_WATERMARK, "0"))
    upto = store.max_id()
    current = registry.current()
    record.previous_version = _version_of(current) if current else None
    base = base_dataset(settings, current)
    curated = curate(store, after, settings, base=base)
    record.exports = write_exports(curated, record.run_id, settings)
    record.inputs = {"harvest": report.as_dict(), "harvest_after_id": after, "harvest_upto_id": upto,
                     "base_dataset": base.name, "dataset_version": curated.version,
                     "current_model": record.previous_version, "recipe": settings.recipe,
                     "max_minutes": settings.max_minutes, "score_metric": settings.score_metric,
                     "validation_tolerance": settings.validation_tolerance,
                     "learning": curated.card.get("learning", {})}
    if curated.directory is None:
        record.decision, record.reasons = NOTHING_NEW, ["no new examples after curation"]
    elif current is None:
        record.decision, record.reasons = NO_MODEL, ["no current model to fine-tune: run `nebras train` first"]
    else:
        _train_evaluate_decide(record, curated, current, settings, trainer, evaluator, registry)
    record.finished_at, record.duration_s = _now(), round(time.perf_counter() - started, 1)
    append_record(record)
    store.save_watermark(RUN_WATERMARK, str(upto))
    logger.info("learning run %s: %s %s", record.run_id, record.decision, "; ".join(record.reasons))
    return record


def _train_evaluate_decide(record: RunRecord, curated: CuratedDataset, current: Path, settings: LearningSettings,
                           trainer: backends.Trainer, evaluator: backends.Evaluator,
                           registry: backends.Registry) -> None:
    assert curated.directory is not None
    root = paths.nlg_models_dir()
    work = root / f"{CANDIDATE_PREFIX}{record.run_id}"
    work.mkdir(parents=True)
    try:
        candidate = trainer(data=curated.directory / FINETUNE_DIR, base=current, out=work / "model", settings=settings)
        record.candidate_version = _version_of(candidate)
        if not curated.new_eval:
            record.metrics = {}
            reasons = ["no held-out new examples to measure the candidate on (too few new examples)"]
        else:
            record.metrics = _evaluate_both(current, candidate, curated, work, settings, evaluator)
            reasons = decide(record.metrics, settings)
        record.reasons = reasons
        if reasons:
            record.decision = REFUSED
            return
        version = record.candidate_version
        target = root / version
        if target.exists():
            version = f"{version}-{record.run_id}"
            target = root / version
        _stamp(candidate, record, curated, version)
        os.replace(candidate, target)  # same file system: an atomic rename into the registry
        try:
            registry.promote(version)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # never leave an unpromoted version behind
            raise
        record.decision, record.promoted_version = PROMOTED, version
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stamp(candidate: Path, record: RunRecord, curated: CuratedDataset, version: str) -> None:
    meta_path = candidate / "nebras.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    meta.update({"version": version, "dataset_version": curated.version,
                 "learning_run": {"run_id": record.run_id, "parent": record.previous_version,
                                  "metrics": record.metrics}})
    _atomic_write(meta_path, json.dumps(meta, indent=2, sort_keys=True))
