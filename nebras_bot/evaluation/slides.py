"""``nebras report --slides``: the headline results as a short self-contained HTML slide deck.

One ``<section class="slide">`` per slide, full-screen with scroll snapping; arrow keys / PageUp /
PageDown / space move between slides; printing gives one slide per page.
"""
from __future__ import annotations

import datetime as _dt
from typing import List, Mapping, Optional

from nebras_bot.evaluation import report_plots as plots
from nebras_bot.evaluation.report import (
    HEADLINE_HEADER,
    ReportInputs,
    esc,
    fmt,
    headline_rows,
    image,
    table,
)
from nebras_bot.evaluation.report_inputs import TRAIN_LOSS_KEYS, VAL_LOSS_KEYS

STYLE = """
html,body{margin:0;height:100%;font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#1d2733}
body{overflow-y:scroll;scroll-snap-type:y mandatory}
.slide{box-sizing:border-box;height:100vh;padding:4vh 6vw;scroll-snap-align:start;display:flex;flex-direction:column;
 justify-content:center;border-bottom:1px solid #e4e8ee}
.slide h1{font-size:2.6rem;margin:.2rem 0} .slide h2{font-size:1.9rem;color:#2f6db5;margin:.2rem 0 1rem}
.slide img{max-height:60vh;max-width:100%;object-fit:contain} .big{font-size:1.4rem}
table{border-collapse:collapse;font-size:1.05rem} th,td{border:1px solid #d5dbe3;padding:.3rem .7rem;text-align:right}
th:first-child,td:first-child{text-align:left} thead th{background:#eef3f9}
.better{color:#1f7a3a;font-weight:600} .worse{color:#b23a3a} .missing{color:#8a6d1d}
.counter{position:fixed;right:1rem;bottom:.6rem;color:#8894a3;font-size:.85rem}
@media print{body{overflow:visible}.slide{page-break-after:always;height:auto;min-height:95vh}.counter{display:none}}
"""
SCRIPT = """
const slides=[...document.querySelectorAll('.slide')];const counter=document.querySelector('.counter');
function current(){let best=0;slides.forEach((s,i)=>{if(Math.abs(s.getBoundingClientRect().top)<
 Math.abs(slides[best].getBoundingClientRect().top))best=i});return best}
function go(i){i=Math.max(0,Math.min(slides.length-1,i));slides[i].scrollIntoView();counter.textContent=(i+1)+' / '+slides.length}
document.addEventListener('keydown',e=>{if(['ArrowDown','ArrowRight','PageDown',' '].includes(e.key)){e.preventDefault();go(current()+1)}
 if(['ArrowUp','ArrowLeft','PageUp'].includes(e.key)){e.preventDefault();go(current()-1)}});
document.addEventListener('scroll',()=>{counter.textContent=(current()+1)+' / '+slides.length});
counter.textContent='1 / '+slides.length;
"""


def _slide(key: str, title: str, body: str) -> str:
    return f'<section class="slide" id="slide-{key}"><h2>{esc(title)}</h2>{body}</section>'


def _not_available(what: str) -> str:
    return f'<p class="missing big">{esc(what)} not available for this run.</p>'


def _headline_sentence(metrics: Mapping) -> str:
    base = (metrics.get("baselines") or {}).get("tfidf_retrieval") or {}
    parts = []
    for key, label in (("bleu", "BLEU"), ("rougeL", "ROUGE-L")):
        model, other = metrics.get(key), base.get(key)
        if isinstance(model, (int, float)) and isinstance(other, (int, float)) and other:
            parts.append(f"{label} {model:.1f} vs {other:.1f} ({100 * (model - other) / other:+.0f}%)")
    return ("Against TF-IDF retrieval: " + "; ".join(parts) + ".") if parts else ""


def render_slides(inputs: ReportInputs) -> str:
    evaluation, training = inputs.evaluation, inputs.training
    metrics = evaluation.metrics if evaluation else {}
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    slides: List[str] = [
        '<section class="slide" id="slide-title"><h1>Nebras: generated customer-support replies</h1>'
        f'<p class="big">Model {esc(metrics.get("model_version") or "–")} · {fmt(metrics.get("n"))} test messages · {created}</p>'
        f'<p class="big">{esc(_headline_sentence(metrics))}</p></section>'
    ]
    if evaluation:
        slides.append(_slide("headline", "Reply quality against baselines", table(HEADLINE_HEADER, headline_rows(metrics))))
        slides.append(_slide("chart", "BLEU, chrF and ROUGE", image(plots.metrics_vs_baselines(metrics), "metrics vs baselines")))
        slides.append(_slide("serving", "Fluency, safety and speed", table(["", ""], [
            ["perplexity of references", metrics.get("perplexity")], ["bits per byte", metrics.get("bits_per_byte")],
            ["fallback rate (guard / errors)", metrics.get("fallback_rate")],
            ["latency p50 (ms)", metrics.get("latency_ms_p50")], ["latency p95 (ms)", metrics.get("latency_ms_p95")],
        ])))
    else:
        slides.append(_slide("headline", "Reply quality against baselines", _not_available("An evaluation run")))
    loss: Optional[str] = None
    if training:
        loss = plots.curves([("train", *training.series(TRAIN_LOSS_KEYS)), ("validation", *training.series(VAL_LOSS_KEYS))],
                            "Training and validation loss", "loss")
    slides.append(_slide("training", "Training", image(loss, "loss curves") or _not_available("A training log")))
    rows = []
    if inputs.rasa and inputs.rasa.intent_report:
        report = inputs.rasa.intent_report
        rows.append(["intent accuracy (rasa test)", report.get("accuracy")])
        rows.append(["intent weighted F1", (report.get("weighted avg") or {}).get("f1-score")])
    if inputs.rasa and inputs.rasa.story_report:
        conv = inputs.rasa.story_report.get("conversation_accuracy")
        rows.append(["test-story conversation accuracy", conv.get("accuracy") if isinstance(conv, Mapping) else None])
    if inputs.dialogues:
        rows.append(["multi-turn check pass rate", inputs.dialogues.get("pass_rate")])
        rows.append(["context retention", inputs.dialogues.get("context_retention")])
        rows.append(["empty replies", inputs.dialogues.get("empty_replies")])
    slides.append(_slide("conversation", "Understanding and multi-turn context",
                         table(["", ""], rows) if rows else _not_available("rasa test / multi-turn results")))
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Nebras results</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style></head><body>"
            f"{''.join(slides)}<div class='counter'></div><script>{SCRIPT}</script></body></html>")
