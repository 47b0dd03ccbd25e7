"""``nebras report``: one self-contained HTML file (plots embedded as base64 PNG) from the latest
evaluation, training run, data card, ``rasa test`` results and multi-turn dialogue evaluation.

Every section is always present (``<section id=...>``); a section whose input is missing says which
command produces it. ``--slides`` also writes a short slide deck of the headline results
(``nebras_bot.evaluation.slides``).
"""
from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from nebras_bot import paths
from nebras_bot.evaluation import report_plots as plots
from nebras_bot.evaluation.report_inputs import (
    LR_KEYS,
    TOKENS_PER_S_KEYS,
    TRAIN_LOSS_KEYS,
    VAL_LOSS_KEYS,
    Evaluation,
    RasaTestResults,
    TrainingRun,
    find_data_card,
    find_dialogue_results,
    find_evaluation,
    find_rasa_results,
    find_all_evaluations,
    find_training_run,
    model_dir_of,
)

SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Reply quality against baselines"),
    ("runs", "All evaluation runs"),
    ("per-intent", "Per-intent BLEU and ROUGE-L"),
    ("latency", "Latency"),
    ("fallbacks", "Fallbacks"),
    ("training", "Training"),
    ("data-card", "Data card"),
    ("rasa-test", "Rasa NLU and dialogue tests"),
    ("dialogues", "Multi-turn conversations"),
    ("examples", "Example replies"),
)
HEADLINE_METRICS: tuple[tuple[str, str], ...] = (
    ("bleu", "BLEU"), ("chrf", "chrF"), ("rouge1", "ROUGE-1"), ("rouge2", "ROUGE-2"), ("rougeL", "ROUGE-L"),
    ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"), ("entity_recall", "entity recall"),
)
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1000px;
 padding:1.5rem;color:#1d2733;line-height:1.45}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #2f6db5;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem} th,td{border:1px solid #d5dbe3;padding:.25rem .55rem;
 text-align:right;vertical-align:top} th:first-child,td:first-child{text-align:left} thead th{background:#eef3f9}
.missing{background:#fff6e5;border-left:4px solid #e39b2d;padding:.5rem .8rem}
.meta{color:#5b6878;font-size:.9rem} img{max-width:100%;height:auto;margin:.4rem 0}
nav a{margin-right:.8rem;font-size:.9rem} pre{background:#f4f6f8;padding:.6rem;overflow:auto;font-size:.8rem}
.better{color:#1f7a3a;font-weight:600} .worse{color:#b23a3a}
"""


def esc(value: Any) -> str:
    return html.escape(str(value))


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 1e6 else f"{value:.3g}"
    return esc(value)


def table(header: List[str], rows: List[List[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{fmt(c) if not isinstance(c, Markup) else c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """Already-escaped HTML for a table cell."""


def image(uri: Optional[str], alt: str) -> str:
    return f'<img src="{uri}" alt="{esc(alt)}">' if uri else ""


def missing(what: str, how: str) -> str:
    return f'<p class="missing">No {esc(what)} found. Produce it with <code>{esc(how)}</code>.</p>'


def relative(model: Optional[float], baseline: Optional[float]) -> Markup:
    if not isinstance(model, (int, float)) or not isinstance(baseline, (int, float)) or baseline == 0:
        return Markup("–")
    change = 100.0 * (model - baseline) / abs(baseline)
    css = "better" if change >= 0 else "worse"
    return Markup(f'<span class="{css}">{change:+.1f}%</span>')


def headline_rows(metrics: Mapping) -> List[List[Any]]:
    systems = plots.systems_table(metrics)
    rows = []
    for key, label in HEADLINE_METRICS:
        row: List[Any] = [label] + [systems.get(k, {}).get(key) for k, _ in plots.SYSTEMS]
        row.append(relative(metrics.get(key), systems.get("tfidf_retrieval", {}).get(key)))
        rows.append(row)
    return rows


HEADLINE_HEADER = ["metric", "Nebras model", "TF-IDF retrieval", "intent template", "model vs TF-IDF"]


# --------------------------------------------------------------------------- sections


def section_summary(evaluation: Optional[Evaluation]) -> str:
    if evaluation is None:
        return missing("evaluation run (metrics.json)", "nebras evaluate --model ... --data ... --train ... --out results/evaluation")
    m = evaluation.metrics
    info = table(["run", ""], [
        ["rows evaluated", m.get("n")], ["model", m.get("model")], ["model version", m.get("model_version")],
        ["data", m.get("data")], ["intent/entities from", m.get("intent_source", "csv")],
        ["perplexity (references)", m.get("perplexity")], ["bits per byte", m.get("bits_per_byte")],
        ["fallback rate", m.get("fallback_rate")], ["evaluated at", m.get("created_at")],
    ])
    chart = image(plots.metrics_vs_baselines(m), "metrics vs baselines")
    return info + table(HEADLINE_HEADER, headline_rows(m)) + chart


def section_runs(runs: List[Evaluation], home: Optional[Path] = None) -> str:
    """One row per evaluation under results/ (e.g. the recipe comparison), with the TF-IDF baseline."""
    if not runs:
        return missing("evaluation runs under results/", "nebras evaluate --out results/<name>")
    rows = []
    for run in runs:
        m, tfidf = run.metrics, (run.metrics.get("baselines") or {}).get("tfidf_retrieval", {})
        name = run.directory.name if home is None else _relative_to(run.directory, home)
        rows.append([name, m.get("model_version"), m.get("n"), m.get("intent_source", "csv"), m.get("bleu"),
                     m.get("rougeL"), m.get("entity_recall"), m.get("perplexity"), m.get("bits_per_byte"),
                     m.get("fallback_rate"), tfidf.get("bleu"), tfidf.get("rougeL"),
                     relative(m.get("bleu"), tfidf.get("bleu")), relative(m.get("rougeL"), tfidf.get("rougeL"))])
    header = ["run", "model version", "n", "NLU", "BLEU", "ROUGE-L", "entity recall", "perplexity", "bits/byte",
              "fallback rate", "TF-IDF BLEU", "TF-IDF ROUGE-L", "BLEU vs TF-IDF", "ROUGE-L vs TF-IDF"]
    return "<p>Every <code>metrics.json</code> under results/, oldest first.</p>" + table(header, rows)


def _relative_to(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def section_per_intent(evaluation: Optional[Evaluation]) -> str:
    if evaluation is None or not evaluation.metrics.get("per_intent"):
        return missing("per-intent scores", "nebras evaluate")
    rows_by_intent = evaluation.metrics["per_intent"]
    base = (evaluation.metrics.get("baselines") or {}).get("tfidf_retrieval", {}).get("per_intent", {})
    rows = [[i, r.get("n"), r.get("bleu"), r.get("rougeL"), base.get(i, {}).get("bleu"), base.get(i, {}).get("rougeL")]
            for i, r in sorted(rows_by_intent.items())]
    return image(plots.per_intent(evaluation.metrics), "per-intent scores") + table(
        ["intent", "n", "BLEU", "ROUGE-L", "TF-IDF BLEU", "TF-IDF ROUGE-L"], rows)


def section_latency(evaluation: Optional[Evaluation], dialogues: Optional[Mapping]) -> str:
    parts = []
    if evaluation is not None:
        m = evaluation.metrics
        latencies = [float(p["latency_ms"]) for p in evaluation.predictions if isinstance(p.get("latency_ms"), (int, float))]
        parts.append(table(["", "ms"], [["p50", m.get("latency_ms_p50")], ["p95", m.get("latency_ms_p95")]]))
        parts.append(image(plots.latency_histogram(latencies, "Reply latency, offline evaluation"), "latency histogram"))
    if dialogues:
        lat = dialogues.get("latency_ms") or {}
        parts.append("<p>Live assistant (multi-turn run): "
                     f"p50 {fmt(lat.get('p50'))} ms, p95 {fmt(lat.get('p95'))} ms, max {fmt(lat.get('max'))} ms.</p>")
    return "".join(parts) or missing("latency measurements", "nebras evaluate / nebras evaluate-dialogues")


def section_fallbacks(evaluation: Optional[Evaluation]) -> str:
    if evaluation is None:
        return missing("evaluation run", "nebras evaluate")
    reasons = evaluation.metrics.get("fallback_reasons") or {}
    rate = evaluation.metrics.get("fallback_rate")
    text = (f"<p>{fmt(100 * rate if rate is not None else None, 1)}% of replies were the templated fallback "
            "(guard rejection, timeout, error or no model).</p>")
    if not reasons:
        return text + "<p>No fallbacks in this run.</p>"
    return text + image(plots.horizontal_counts(reasons, "Fallback reasons"), "fallback reasons") + table(
        ["reason", "count"], sorted(([k, v] for k, v in reasons.items()), key=lambda r: -r[1]))


def section_training(run: Optional[TrainingRun]) -> str:
    if run is None:
        return missing("training run (models/nlg/<version>/ with a training log)", "nebras train --recipe ...")
    loss = plots.curves([("train loss", *run.series(TRAIN_LOSS_KEYS)), ("validation loss", *run.series(VAL_LOSS_KEYS))],
                        "Training and validation loss", "loss (nats/token)")
    speed = plots.curves([("tokens/s", *run.series(TOKENS_PER_S_KEYS))], "Training throughput", "tokens per second")
    lr = plots.curves([("learning rate", *run.series(LR_KEYS))], "Learning-rate schedule", "learning rate")
    meta = {k: v for k, v in run.metadata.items() if not isinstance(v, (dict, list))}
    nested = {k: v for k, v in run.metadata.items() if isinstance(v, dict)}
    parts = [f'<p class="meta">Run: {esc(run.directory)}; log: {esc(run.log_path or "none")} '
             f"({len(run.log)} records)</p>"]
    if meta:
        parts.append(table(["field", "value"], [[k, v] for k, v in sorted(meta.items())]))
    for name, values in sorted(nested.items()):
        parts.append(f"<h3>{esc(name)}</h3>" + render_value(values))
    parts.append(image(loss, "loss curves") or missing("loss values in the training log", "nebras train"))
    parts.append(image(speed, "tokens per second") or missing("tokens/s in the training log", "nebras train"))
    parts.append(image(lr, "learning rate"))
    return "".join(parts)


def render_value(value: Any, depth: int = 0) -> str:
    """A generic rendering of JSON: scalars in a table, nested mappings as sub-tables."""
    if isinstance(value, Mapping):
        scalars = [[k, v] for k, v in value.items() if not isinstance(v, (Mapping, list))]
        inner = [(k, v) for k, v in value.items() if isinstance(v, (Mapping, list))]
        matrix = inner and all(isinstance(v, Mapping) and all(not isinstance(x, (Mapping, list)) for x in v.values())
                               for _, v in inner)
        out = table(["field", "value"], scalars) if scalars else ""
        if matrix and len(inner) > 1:
            columns = sorted({c for _, v in inner for c in v})
            out += table([""] + columns, [[k] + [v.get(c) for c in columns] for k, v in inner])
        else:
            for key, sub in inner:
                tag = "h3" if depth == 0 else "h4"
                out += f"<{tag}>{esc(key)}</{tag}>" + render_value(sub, depth + 1)
        return out
    if isinstance(value, list):
        if value and all(not isinstance(v, (Mapping, list)) for v in value):
            return "<p>" + ", ".join(esc(v) for v in value) + "</p>"
        return f"<pre>{esc(json.dumps(value, indent=1)[:4000])}</pre>"
    return f"<p>{fmt(value)}</p>"


def section_data_card(card: Optional[Mapping]) -> str:
    if card is None:
        return missing("data card (models/datasets/<version>/data_card.json)", "nebras data prepare")
    return render_value(card)


def _classification_rows(report: Mapping) -> List[List[Any]]:
    rows = []
    for name, values in report.items():
        if isinstance(values, Mapping) and "precision" in values:
            rows.append([name, values.get("precision"), values.get("recall"), values.get("f1-score"), values.get("support")])
    summary = [r for r in rows if r[0] in ("micro avg", "macro avg", "weighted avg")]
    return sorted([r for r in rows if r not in summary], key=lambda r: r[0]) + summary


def section_rasa_test(results: Optional[RasaTestResults]) -> str:
    if results is None:
        return missing("rasa test results (results/intent_report.json, story_report.json)",
                       "rasa test --stories tests --out results")
    parts = []
    if results.intent_report:
        weighted = (results.intent_report.get("weighted avg") or {}).get("f1-score")
        parts.append(f"<h3>Intent classification</h3><p>Accuracy {fmt(results.intent_report.get('accuracy'), 3)}, "
                     f"weighted F1 {fmt(weighted, 3)}.</p>")
        parts.append(table(["intent", "precision", "recall", "F1", "support"], _classification_rows(results.intent_report)))
    else:
        parts.append(missing("intent report", "rasa test nlu"))
    if results.confusion_png:
        parts.append("<h3>Intent confusion matrix</h3>" + image(plots.to_data_uri(results.confusion_png), "confusion matrix"))
    if results.story_report:
        parts.append("<h3>Story (dialogue policy) results</h3>")
        parts.append(f"<p>Action accuracy {fmt(results.story_report.get('accuracy'), 3)}; conversation accuracy "
                     f"{fmt(results.story_report.get('conversation_accuracy', {}).get('accuracy') if isinstance(results.story_report.get('conversation_accuracy'), Mapping) else None, 3)}.</p>")
        parts.append(table(["action", "precision", "recall", "F1", "support"], _classification_rows(results.story_report)))
        if results.story_confusion_png:
            parts.append(image(plots.to_data_uri(results.story_confusion_png), "action confusion matrix"))
    else:
        parts.append(missing("story report", "rasa test core --stories tests"))
    if results.failed_stories is not None:
        failed = results.failed_stories.count("- story:")
        parts.append(f"<p>Failed test stories: {failed}.</p>")
        if failed:
            parts.append(f"<pre>{esc(results.failed_stories[:4000])}</pre>")
    return "".join(parts)


def section_dialogues(result: Optional[Mapping]) -> str:
    if result is None:
        return missing("multi-turn evaluation (results/dialogues.json)",
                       "nebras evaluate-dialogues --conversations tests/dialogues/conversations.yml --url http://localhost:5005")
    checks = result.get("checks") or {}
    rows = [[k, v.get("passed"), v.get("total"), v.get("pass_rate")] for k, v in checks.items()]
    head = (f"<p>{result.get('conversations_passed')}/{result.get('conversations')} conversations and "
            f"{result.get('turns_passed')}/{result.get('turns')} turns passed every check; "
            f"context retention {fmt(result.get('context_retention'), 3)}; empty replies {result.get('empty_replies')}; "
            f"errors {result.get('errors')}.</p>")
    failures = [[f.get("conversation"), f.get("turn"), f.get("check"), f.get("detail"), f.get("bot")]
                for f in (result.get("failures") or [])[:30]]
    out = head + table(["check", "passed", "total", "pass rate"], rows) + image(plots.dialogue_checks(checks), "checks")
    if failures:
        out += "<h3>Failed checks</h3>" + table(["conversation", "turn", "check", "detail", "bot said"], failures)
    return out


def section_examples(evaluation: Optional[Evaluation], count: int = 8) -> str:
    if evaluation is None or not evaluation.predictions:
        return missing("predictions.jsonl", "nebras evaluate")
    step = max(1, len(evaluation.predictions) // count)
    rows = [[p.get("intent"), p.get("instruction"), p.get("prediction"), p.get("reference"), p.get("fallback")]
            for p in evaluation.predictions[::step][:count]]
    return table(["intent", "message", "Nebras reply", "reference", "fallback"], rows)


# --------------------------------------------------------------------------- assembly


@dataclass
class ReportInputs:
    evaluation: Optional[Evaluation]
    training: Optional[TrainingRun]
    data_card: Optional[Dict[str, Any]]
    rasa: Optional[RasaTestResults]
    dialogues: Optional[Dict[str, Any]]
    runs: List[Evaluation] = field(default_factory=list)


def gather(evaluation_dir: Optional[Path] = None, model_dir: Optional[Path] = None, data_card: Optional[Path] = None,
           rasa_results: Optional[Path] = None, dialogues: Optional[Path] = None) -> ReportInputs:
    """Load every input; the training run defaults to the evaluated model's directory, then the
    promoted model, then the newest finished ``models/nlg/<version>``."""
    evaluation = find_evaluation(evaluation_dir)
    return ReportInputs(
        evaluation=evaluation,
        training=find_training_run(model_dir or model_dir_of(evaluation)),
        data_card=find_data_card(data_card),
        rasa=find_rasa_results(rasa_results),
        dialogues=find_dialogue_results(dialogues),
        runs=find_all_evaluations(),
    )


def render_report(inputs: ReportInputs) -> str:
    bodies = {
        "summary": section_summary(inputs.evaluation),
        "runs": section_runs(inputs.runs, paths.home() / "results"),
        "per-intent": section_per_intent(inputs.evaluation),
        "latency": section_latency(inputs.evaluation, inputs.dialogues),
        "fallbacks": section_fallbacks(inputs.evaluation),
        "training": section_training(inputs.training),
        "data-card": section_data_card(inputs.data_card),
        "rasa-test": section_rasa_test(inputs.rasa),
        "dialogues": section_dialogues(inputs.dialogues),
        "examples": section_examples(inputs.evaluation),
    }
    nav = "".join(f'<a href="#{key}">{esc(title)}</a>' for key, title in SECTIONS)
    sections = "".join(f'<section id="{key}"><h2>{esc(title)}</h2>{bodies[key]}</section>' for key, title in SECTIONS)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Nebras evaluation report</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body>"
            f"<h1>Nebras evaluation report</h1><p class='meta'>Generated {created} by <code>nebras report</code>.</p>"
            f"<nav>{nav}</nav>{sections}</body></html>")


def write_report(out_dir: Path, inputs: ReportInputs, slides: bool = False) -> List[Path]:
    """Write ``report.html`` (and ``slides.html`` when asked) into ``out_dir``; returns the paths."""
    from nebras_bot.evaluation.settings import REPORT_FILE, SLIDES_FILE

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / REPORT_FILE]
    written[0].write_text(render_report(inputs), encoding="utf-8")
    if slides:
        from nebras_bot.evaluation.slides import render_slides

        written.append(out_dir / SLIDES_FILE)
        written[1].write_text(render_slides(inputs), encoding="utf-8")
    return written
