"""``nebras evaluate``: score the deployed reply path on a Bitext-format CSV, against two baselines.

For each row the reply is produced exactly as serving produces the first reply of a conversation:
the message is the only user turn, intent and entities come from the CSV (or from a Rasa model
with ``nlu``), the domain's ``utter_<intent>`` text is the template, and B's
``ResponseGenerator.reply`` builds the prompt (with retrieval when the model has an exemplar index),
generates, fills placeholders and applies the guard, falling back to the template when needed.

With ``prior_exchange`` (``--prior-exchange``) every row follows an earlier exchange on another
subject instead: another row of the CSV with another intent (drawn with a fixed seed), its message
and reference reply first in the history and its entity in the slots, as when a customer changes
the subject mid-conversation. The scores then say whether replies answer the latest message.

Outputs ``predictions.jsonl`` (one object per row) and ``metrics.json`` (returned as a dict); the
fields are listed in ``docs/evaluation.md``.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence

from nebras_bot.evaluation import textmetrics
from nebras_bot.evaluation.baselines import TfidfRetrievalBaseline, fill_known
from nebras_bot.evaluation.settings import (
    METRICS_FILE,
    NON_EMPTY_DATA_COLUMNS,
    PREDICTIONS_FILE,
    REQUIRED_DATA_COLUMNS,
    REQUIRED_TRAIN_COLUMNS,
    EvaluationSettings,
)
from nebras_bot.generation.prompt import PromptContext, PromptTurn, after_exchange

logger = logging.getLogger(__name__)


class EvaluationInputError(ValueError):
    """A ``--data``/``--train``/``--model``/domain input that cannot be used; the message says why."""


@dataclass(frozen=True)
class EvalRow:
    instruction: str
    intent: str
    entity_type: str
    entity_value: str  # the value as it appears in the instruction (offsets repaired), or ""
    reference: str  # the CSV response, placeholders filled from the row's entity

    @property
    def entities(self) -> Dict[str, str]:
        """The row's entity as ``{type: value}`` (empty without one)."""
        return {self.entity_type: self.entity_value} if self.entity_value else {}


def resolve_entity_value(instruction: str, value: str, start: str, end: str) -> str:
    """The entity value as written in the message. Bitext offsets and values are each sometimes
    wrong: prefer the offset span when it contains the value (a truncated value), else the value
    when the message contains it, else the span, else the value as given."""
    value = (value or "").strip()
    span = ""
    try:
        s, e = int(float(start)), int(float(end))
        if 0 <= s < e <= len(instruction):
            span = instruction[s:e].strip()
    except (TypeError, ValueError):
        pass
    if span and value and value in span:
        return span
    if value and value in instruction:
        return value
    return span or value


def read_rows(path: Path | str, required: Sequence[str], non_empty: Sequence[str] = ("instruction",)) -> List[Dict[str, str]]:
    """CSV rows as dicts; raises :class:`EvaluationInputError` naming the problem.

    Missing columns, an unreadable file (not UTF-8, not CSV) and rows whose ``non_empty`` columns
    are blank (with their line numbers) are errors; blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise EvaluationInputError(f"CSV file {path} not found")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = set(reader.fieldnames or ())
            missing = [c for c in required if c not in columns]
            if missing:
                raise EvaluationInputError(
                    f"{path}: missing column(s) {', '.join(missing)}; a Bitext-format CSV needs "
                    f"{', '.join(required)} (found: {', '.join(sorted(columns)) or 'no header'})"
                )
            rows, blank = [], []
            for record in reader:
                row = {k: (v or "") for k, v in record.items() if isinstance(k, str)}
                if not any(v.strip() for v in row.values()):
                    continue
                if any(not row.get(c, "").strip() for c in non_empty):
                    blank.append(reader.line_num)
                    continue
                rows.append(row)
    except UnicodeDecodeError as error:
        raise EvaluationInputError(f"{path}: not a UTF-8 text file ({error})") from error
    except csv.Error as error:
        raise EvaluationInputError(f"{path}: not a readable CSV file ({error})") from error
    if blank:
        shown = ", ".join(str(n) for n in blank[:10]) + (" ..." if len(blank) > 10 else "")
        raise EvaluationInputError(
            f"{path}: {len(blank)} row(s) with an empty {' / '.join(non_empty)} (line(s) {shown}); fix or remove them"
        )
    if not rows:
        raise EvaluationInputError(f"{path}: no rows with an instruction")
    return rows


def eval_rows(records: Sequence[Dict[str, str]]) -> List[EvalRow]:
    rows = []
    for record in records:
        instruction = record["instruction"].strip()
        entity_type = record.get("entity_type", "").strip()
        value = resolve_entity_value(
            instruction, record.get("entity_value", ""), record.get("start_offset", ""), record.get("end_offset", "")
        ) if entity_type else ""
        values = {entity_type: value} if entity_type and value else {}
        rows.append(EvalRow(instruction, record["intent"].strip(), entity_type, value,
                            fill_known(record["response"].strip(), values)))
    return rows


class Replier(Protocol):
    """What serving uses to answer (``nebras_bot.generation.generator.ResponseGenerator``)."""

    def reply(self, context: PromptContext, template: Optional[str], values: Dict[str, str]) -> Any: ...


def first_turn_context(instruction: str, intent: Optional[str], entities: Dict[str, str],
                       template: Optional[str]) -> PromptContext:
    """The context serving has for a conversation's first message (slots filled from its entities)."""
    return PromptContext(history=[PromptTurn("user", instruction)], intent=intent, entities=dict(entities),
                         slots=dict(entities), template=template)


PRIOR_SEED = 13  # which rows come before which with --prior-exchange (fixed: runs are comparable)


def prior_rows(rows: Sequence[EvalRow], seed: int = PRIOR_SEED) -> List[EvalRow]:
    """For each row, another row of another intent (drawn with ``seed``): its earlier exchange."""
    if len({row.intent for row in rows}) < 2:
        raise EvaluationInputError("--prior-exchange needs rows of at least two intents (the earlier exchange "
                                   "is on another subject)")
    others = {intent: [row for row in rows if row.intent != intent] for intent in {row.intent for row in rows}}
    rng = random.Random(seed)
    return [others[row.intent][rng.randrange(len(others[row.intent]))] for row in rows]


def _metrics_block(rows_preds: Sequence[str], rows: Sequence[EvalRow], per_intent: bool = True) -> Dict[str, Any]:
    references = [r.reference for r in rows]
    block: Dict[str, Any] = textmetrics.text_metrics(rows_preds, references, [r.entity_value or None for r in rows])
    if per_intent:
        block["per_intent"] = textmetrics.per_group([r.intent for r in rows], rows_preds, references)
    return block


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="row", disable=not enabled)


def run_evaluation(
    model: Path | str,
    data: Path | str,
    train: Path | str,
    out: Path | str,
    nlu: Any = None,
    limit: Optional[int] = None,
    domain: Path | str | None = None,
    settings: Optional[EvaluationSettings] = None,
    generator: Optional[Replier] = None,
    show_progress: bool = True,
    timeout_s: Optional[float] = None,
    prior_exchange: bool = False,
) -> Dict[str, Any]:
    """Evaluate ``model`` on ``data``; write predictions.jsonl and metrics.json into ``out``.

    ``generator`` replaces the ResponseGenerator built from ``model`` (it must then expose the
    loaded model for perplexity as ``generator.loaded`` or perplexity is reported as None).
    ``nlu`` is a Rasa model archive, or an already loaded parser with ``parse(text)`` (a
    :class:`~nebras_bot.evaluation.nlu.RasaNLU`, left open for its owner).
    ``timeout_s`` overrides serving's per-reply time limit (``NEBRAS_GEN_TIMEOUT_S``).
    ``prior_exchange``: every row follows an exchange on another subject (:func:`prior_rows`).
    Raises :class:`EvaluationInputError` for unusable inputs and
    ``serving_path.ModelUnavailableError`` when the model cannot be loaded.
    Returns the metrics dict (the content of metrics.json).
    """
    from nebras_bot.evaluation.serving_path import (
        build_generator, generation_mode, loaded_model, project_templates, prompt_for, reply_inputs,
    )
    from nebras_bot.generation.generator import LAST_RESORT_TEXT, templated_text

    settings = settings or EvaluationSettings()
    started = time.perf_counter()
    rows = eval_rows(read_rows(data, REQUIRED_DATA_COLUMNS, NON_EMPTY_DATA_COLUMNS))
    limit = limit if limit is not None else settings.limit
    if limit is not None:
        rows = rows[: max(0, int(limit))]
    priors: List[Optional[EvalRow]] = prior_rows(rows) if prior_exchange else [None] * len(rows)
    train_rows = read_rows(train, REQUIRED_TRAIN_COLUMNS, REQUIRED_TRAIN_COLUMNS)
    try:
        templates = project_templates(domain, settings)
    except FileNotFoundError as error:
        raise EvaluationInputError(f"{error}; pass --domain or run from the project root") from error
    tfidf = TfidfRetrievalBaseline([r["instruction"] for r in train_rows], [r["response"] for r in train_rows],
                                   ngram_max=settings.tfidf_ngram_max)
    parser, own_parser = None, False
    if nlu is not None and hasattr(nlu, "parse"):
        parser = nlu  # an already loaded parser (e.g. a RasaNLU shared by several runs); not closed here
    elif nlu:
        from nebras_bot.evaluation.nlu import RasaNLU

        parser, own_parser = RasaNLU(nlu), True
    generator = generator or build_generator(model, timeout_s=timeout_s)
    mode = generation_mode(generator)

    predictions, records, contexts = [], [], []
    reasons: Counter = Counter()
    nlu_correct = 0
    try:
        with _progress(len(rows), "generating", show_progress) as bar:
            for row, prior in zip(rows, priors):
                intent, entities = row.intent, row.entities
                confidence = None
                if parser is not None:
                    parsed = parser.parse(row.instruction)
                    intent, entities, confidence = parsed.intent or "nlu_fallback", parsed.entities, parsed.confidence
                    nlu_correct += intent == row.intent
                generative = fill_known(templates.generative, entities) if templates.generative else None
                prompt_template, template = reply_inputs(templates.template(intent, entities), generative, mode)
                context = first_turn_context(row.instruction, intent, entities, prompt_template)
                if prior is not None:
                    after_exchange(context, PromptTurn("user", prior.instruction), prior.reference, prior.entities)
                tick = time.perf_counter()
                try:
                    result = generator.reply(context, template, dict(entities))
                    text, generated, reason = result.text, bool(result.generated), result.reason
                    latency = getattr(result, "latency_ms", None)
                    rejected = None if generated else getattr(result, "raw", None)
                    candidates = getattr(result, "candidates", None)
                except Exception as error:  # an error on one row is a fallback, not a lost run
                    logger.exception("generation failed for %r", row.instruction)
                    text, generated, reason, latency = template or LAST_RESORT_TEXT, False, f"error: {type(error).__name__}", None
                    rejected = candidates = None
                latency = float(latency) if latency is not None else (time.perf_counter() - tick) * 1000.0
                fallback = not generated
                if fallback:
                    reasons[_reason_label(reason)] += 1
                predictions.append(text)
                contexts.append(context)
                records.append({
                    "instruction": row.instruction, "intent": row.intent, "reference": row.reference,
                    "prediction": text, "fallback": fallback, "latency_ms": round(latency, 3),
                    "reason": reason, "rejected": rejected, "entity_type": row.entity_type, "entity_value": row.entity_value,
                    "predicted_intent": intent, "nlu_confidence": confidence, "entities": entities,
                    "prompt_template": prompt_template,
                    "prior_instruction": prior.instruction if prior else None,
                    **({"candidates": candidates, "chosen": getattr(result, "chosen", None),
                          "fallback_text": templated_text(template)}
                       if candidates else {}),
                })
                bar.update(1)
    finally:
        if own_parser:
            parser.close()

    baseline_template = [templates.reply(r["predicted_intent"], r["entities"]) for r in records]
    baseline_tfidf = tfidf.replies_for([r.instruction for r in rows], [r["entities"] for r in records])
    for record, t, f in zip(records, baseline_template, baseline_tfidf):
        record["baseline_intent_template"], record["baseline_tfidf_retrieval"] = t, f

    perplexity = _perplexity(generator, model, rows, contexts, settings, show_progress, loaded_model, prompt_for)
    latencies = [r["latency_ms"] for r in records]
    metrics: Dict[str, Any] = {
        "n": len(rows),
        **_metrics_block(predictions, rows),
        "perplexity": perplexity.perplexity if perplexity else None,
        "bits_per_byte": perplexity.bits_per_byte if perplexity else None,
        "fallback_rate": (sum(r["fallback"] for r in records) / len(records)) if records else 0.0,
        "fallback_reasons": dict(reasons),
        # generated replies only: a fallback *is* its template
        "template_carry": textmetrics.template_carry(
            [r["prediction"] for r in records if not r["fallback"]],
            [r["prompt_template"] for r in records if not r["fallback"]]),
        "latency_ms_p50": textmetrics.percentile(latencies, 50),
        "latency_ms_p95": textmetrics.percentile(latencies, 95),
        "baselines": {
            "intent_template": {**_metrics_block(baseline_template, rows),
                                "missing_templates": dict(templates.missing)},
            "tfidf_retrieval": _metrics_block(baseline_tfidf, rows),
        },
        "model": str(model),
        "model_version": getattr(generator, "model_version", None) or _version_of(generator),
        "data": str(data),
        "train": str(train),
        "prior_exchange": prior_exchange,
        "intent_source": "nlu" if parser is not None else "csv",
        "nlu_model": str(getattr(parser, "path", nlu)) if parser is not None else None,
        "nlu_intent_accuracy": (nlu_correct / len(rows)) if parser is not None and rows else None,
        "perplexity_tokens": perplexity.tokens if perplexity else 0,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.perf_counter() - started, 2),
    }
    _write(Path(out), records, metrics)
    return metrics


def _reason_label(reason: Optional[str]) -> str:
    from nebras_bot.monitoring.metrics import fallback_reason_label

    return fallback_reason_label(reason) if reason else "unknown"


def _version_of(generator: Any) -> Optional[str]:
    loaded = getattr(generator, "loaded", None)
    return getattr(loaded, "version", None)


def _perplexity(generator, model, rows, contexts, settings, show_progress, loaded_model, prompt_for):
    from nebras_bot.evaluation.perplexity import score
    from nebras_bot.generation.prompt import END, sanitize

    loaded = loaded_model(generator, model)
    if loaded is None:
        logger.warning("no language model available: perplexity and bits per byte are not computed")
        return None
    pairs = [(prompt_for(generator, context, loaded), " " + sanitize(row.reference) + END)
             for row, context in zip(rows, contexts)]
    with _progress(len(pairs), "perplexity", show_progress) as bar:
        return score(loaded.model, loaded.tokenizer, pairs, batch_size=settings.perplexity_batch_size,
                     max_tokens=settings.perplexity_max_tokens, progress=bar.update)


def _write(out: Path, records: List[Dict[str, Any]], metrics: Dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / PREDICTIONS_FILE).open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("wrote %s and %s", out / PREDICTIONS_FILE, out / METRICS_FILE)
