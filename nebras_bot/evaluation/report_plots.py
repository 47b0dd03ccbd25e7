"""The report's figures: matplotlib (Agg) rendered to PNG and embedded as base64 data URIs."""
from __future__ import annotations

import base64
import io
from typing import Dict, List, Mapping, Optional, Sequence

TEXT_METRICS: tuple[str, ...] = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")
SYSTEMS: tuple[tuple[str, str], ...] = (
    ("model", "Nebras model"),
    ("tfidf_retrieval", "TF-IDF retrieval"),
    ("intent_template", "Intent template"),
)
COLOURS = {"model": "#2f6db5", "tfidf_retrieval": "#e39b2d", "intent_template": "#8a8a8a"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def to_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _render(figure) -> str:
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return to_data_uri(buffer.getvalue())


def systems_table(metrics: Mapping) -> Dict[str, Mapping]:
    """``{system key: metrics}`` for the model and each baseline present."""
    baselines = metrics.get("baselines") or {}
    table = {"model": metrics}
    table.update({k: baselines[k] for k, _ in SYSTEMS[1:] if isinstance(baselines.get(k), Mapping)})
    return table


def metrics_vs_baselines(metrics: Mapping) -> Optional[str]:
    table = systems_table(metrics)
    if not any(isinstance(metrics.get(m), (int, float)) for m in TEXT_METRICS):
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(table)
    for offset, (key, label) in enumerate((k, l) for k, l in SYSTEMS if k in table):
        values = [float(table[key].get(m) or 0.0) for m in TEXT_METRICS]
        positions = [i + (offset - (len(table) - 1) / 2) * width for i in range(len(TEXT_METRICS))]
        bars = axis.bar(positions, values, width, label=label, color=COLOURS[key])
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_xticks(range(len(TEXT_METRICS)))
    axis.set_xticklabels(["BLEU", "chrF", "ROUGE-1", "ROUGE-2", "ROUGE-L"])
    axis.set_ylabel("score (0-100)")
    axis.set_title("Reply quality: model vs baselines")
    top = max([float(table[k].get(m) or 0.0) for k in table for m in TEXT_METRICS] + [1.0])
    axis.set_ylim(0, top * 1.25)
    axis.legend(fontsize=8, ncol=3, loc="upper center")
    return _render(figure)


def per_intent(metrics: Mapping, key: str = "per_intent") -> Optional[str]:
    rows = metrics.get(key) or {}
    if not rows:
        return None
    plt = _pyplot()
    intents = sorted(rows)
    figure, axis = plt.subplots(figsize=(8, max(2.5, 0.28 * len(intents) + 1)))
    positions = range(len(intents))
    axis.barh([p - 0.2 for p in positions], [rows[i].get("bleu", 0) for i in intents], 0.4, label="BLEU",
              color="#2f6db5")
    axis.barh([p + 0.2 for p in positions], [rows[i].get("rougeL", 0) for i in intents], 0.4, label="ROUGE-L",
              color="#5bb381")
    axis.set_yticks(list(positions))
    axis.set_yticklabels(intents, fontsize=7)
    axis.invert_yaxis()
    axis.set_xlabel("score (0-100)")
    axis.set_title("Per-intent BLEU and ROUGE-L (model)")
    axis.legend(fontsize=8, loc="lower right")
    return _render(figure)


def latency_histogram(latencies_ms: Sequence[float], title: str = "Reply latency") -> Optional[str]:
    if not latencies_ms:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.hist(latencies_ms, bins=min(40, max(5, len(latencies_ms) // 3)), color="#2f6db5")
    axis.set_xlabel("milliseconds")
    axis.set_ylabel("replies")
    axis.set_title(title)
    return _render(figure)


def horizontal_counts(counts: Mapping[str, int], title: str, colour: str = "#c0504d") -> Optional[str]:
    if not counts:
        return None
    plt = _pyplot()
    labels = sorted(counts, key=lambda k: -counts[k])[:25]
    figure, axis = plt.subplots(figsize=(7, max(2.0, 0.3 * len(labels) + 1)))
    axis.barh(labels, [counts[k] for k in labels], color=colour)
    axis.invert_yaxis()
    axis.set_xlabel("count")
    axis.set_title(title)
    return _render(figure)


def curves(series: List[tuple[str, Sequence[float], Sequence[float]]], title: str, ylabel: str) -> Optional[str]:
    """Line plot of ``(label, x, y)`` series; None when all are empty."""
    series = [s for s in series if len(s[1])]
    if not series:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.2))
    for label, xs, ys in series:
        axis.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
    axis.set_xlabel("step")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _render(figure)


def dialogue_checks(checks: Mapping[str, Mapping]) -> Optional[str]:
    rows = {k: v for k, v in checks.items() if v.get("total")}
    if not rows:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 2.8))
    labels = list(rows)
    rates = [100.0 * rows[k]["passed"] / rows[k]["total"] for k in labels]
    bars = axis.bar(labels, rates, color="#5bb381")
    axis.bar_label(bars, labels=[f"{rows[k]['passed']}/{rows[k]['total']}" for k in labels], fontsize=8)
    axis.set_ylim(0, 110)
    axis.set_ylabel("pass rate (%)")
    axis.set_title("Multi-turn checks")
    return _render(figure)
