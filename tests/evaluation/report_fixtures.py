"""Inputs for the report tests: a results/ tree, a training run and a data card under a tmp NEBRAS_HOME."""
from __future__ import annotations

import json
import math
from pathlib import Path

from nebras_bot.evaluation import textmetrics


def _png(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(2, 2))
    axis.imshow([[5, 1], [0, 7]])
    figure.savefig(path)
    plt.close(figure)


def build_home(home: Path) -> dict:
    """Write every input ``nebras report`` reads; returns the evaluation metrics written."""
    evaluation = home / "results" / "evaluation"
    evaluation.mkdir(parents=True)
    rows = [
        ("track_order", "where is order 123", "Your order 123 is on its way.", "Order 123 is on its way.", False, 120.0),
        ("track_order", "track 555", "Order 555 ships today.", "Your order 555 ships today.", False, 180.0),
        ("recover_password", "forgot password", "Use the reset link.", "Click 'Forgot password'.", True, 15.0),
        ("cancel_order", "cancel 77", "Order 77 is cancelled.", "Order 77 is cancelled.", False, 240.0),
    ]
    predictions = [{"intent": i, "instruction": m, "reference": r, "prediction": p, "fallback": f, "latency_ms": l,
                    "reason": "unknown_number: 9" if f else None} for i, m, r, p, f, l in rows]
    preds, refs = [p["prediction"] for p in predictions], [p["reference"] for p in predictions]
    values = ["123", "555", None, "77"]
    metrics = {
        "n": len(rows), **textmetrics.text_metrics(preds, refs, values),
        "per_intent": textmetrics.per_group([p["intent"] for p in predictions], preds, refs),
        "perplexity": 12.5, "bits_per_byte": 0.93, "fallback_rate": 0.25, "fallback_reasons": {"unknown_number": 1},
        "latency_ms_p50": textmetrics.percentile([r[5] for r in rows], 50),
        "latency_ms_p95": textmetrics.percentile([r[5] for r in rows], 95),
        "model": "models/nlg/current", "model_version": "v-test-1", "intent_source": "csv",
        "baselines": {
            "intent_template": {**textmetrics.text_metrics(["Sorry."] * 4, refs, values), "missing_templates": {}},
            "tfidf_retrieval": textmetrics.text_metrics(["Order 1 ships."] * 4, refs, values),
        },
    }
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    (evaluation / "predictions.jsonl").write_text("\n".join(json.dumps(p) for p in predictions) + "\n")

    run = home / "models" / "nlg" / "v-test-1"
    run.mkdir(parents=True)
    (run / "nebras.json").write_text(json.dumps({"version": "v-test-1", "base_model": "gpt2-scratch:tiny",
                                                 "recipe": "test", "retrieval": True,
                                                 "metrics": {"val_loss": 2.1}}))
    log = [{"step": s, "loss": 6 * math.exp(-s / 40) + 1, "lr": 1e-4, "tokens_per_s": 900 + s} for s in range(0, 200, 10)]
    log += [{"step": s, "val_loss": 6 * math.exp(-s / 40) + 1.3} for s in range(0, 200, 50)]
    (run / "training_log.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")

    card = home / "models" / "datasets" / "d-test"
    card.mkdir(parents=True)
    (card / "data_card.json").write_text(json.dumps({
        "version": "d-test", "licence": "CDLA-Sharing-1.0",
        "splits": {"train": {"bitext": 90, "rasa_stories": 10}, "validation": {"bitext": 10, "rasa_stories": 2}},
        "removed": {"exact_duplicates": 4, "near_duplicates": 2},
    }))

    results = home / "results"
    (results / "intent_report.json").write_text(json.dumps({
        "track_order": {"precision": 1.0, "recall": 0.9, "f1-score": 0.947, "support": 10, "confused_with": {}},
        "greet": {"precision": 0.9, "recall": 1.0, "f1-score": 0.947, "support": 9, "confused_with": {}},
        "accuracy": 0.95, "weighted avg": {"precision": 0.95, "recall": 0.95, "f1-score": 0.947, "support": 19},
    }))
    _png(results / "intent_confusion_matrix.png")
    (results / "story_report.json").write_text(json.dumps({
        "action_order_status": {"precision": 1.0, "recall": 1.0, "f1-score": 1.0, "support": 3},
        "accuracy": 1.0, "conversation_accuracy": {"accuracy": 1.0, "correct": 5, "with_warnings": 0, "total": 5},
    }))
    _png(results / "story_confusion_matrix.png")
    (results / "failed_test_stories.yml").write_text("# None of the test stories failed - all good!")
    (results / "dialogues.json").write_text(json.dumps({
        "conversations": 2, "conversations_passed": 1, "turns": 5, "turns_passed": 4, "pass_rate": 0.9,
        "context_retention": 0.5, "empty_replies": 0, "errors": 0,
        "checks": {"non_empty": {"passed": 5, "total": 5, "pass_rate": 1.0},
                   "context_retention": {"passed": 1, "total": 2, "pass_rate": 0.5}},
        "latency_ms": {"p50": 80.0, "p95": 300.0, "max": 320.0},
        "failures": [{"conversation": "order", "turn": 3, "check": "context_retention", "detail": "order_id=1",
                      "bot": "Which order?"}],
    }))
    return metrics
