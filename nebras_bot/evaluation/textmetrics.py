"""Text metrics for generated replies: BLEU, chrF, ROUGE, length ratio, distinct-n, entity recall.

BLEU and chrF are sacrebleu's corpus scores (BLEU with its default ``13a`` tokenisation); ROUGE is
Google's ``rouge-score`` F1 with the Porter stemmer, averaged over rows and scaled by 100 — the same
libraries Hugging Face ``evaluate``'s hub metrics wrap, used directly so everything works offline.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Optional, Sequence

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL")

_ROUGE_SCORER = None


def _rouge_scorer():
    global _ROUGE_SCORER
    if _ROUGE_SCORER is None:
        from rouge_score import rouge_scorer

        _ROUGE_SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    return _ROUGE_SCORER


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")


def _corpus_bleu(predictions: Sequence[str], references: Sequence[str]):
    """sacrebleu's corpus BLEU result (tokenize='13a', one reference per row); None for no rows."""
    _check_lengths(predictions, references)
    if not predictions:
        return None
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize="13a")


def _bleu_and_length_ratio(predictions: Sequence[str], references: Sequence[str]) -> tuple[float, float]:
    """Corpus BLEU (0-100) and its length ratio, from one sacrebleu pass (0.0, 0.0 for no rows)."""
    score = _corpus_bleu(predictions, references)
    if score is None:
        return 0.0, 0.0
    return float(score.score), (float(score.sys_len) / float(score.ref_len) if score.ref_len else 0.0)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (tokenize='13a', one reference per row), 0-100."""
    return _bleu_and_length_ratio(predictions, references)[0]


def length_ratio(predictions: Sequence[str], references: Sequence[str]) -> float:
    """BLEU's length ratio: words of all predictions / words of all references (sacrebleu's ``13a``
    tokens). Below 1 corpus BLEU is multiplied by its brevity penalty ``exp(1 - 1/ratio)``, so
    replies shorter than the references lose BLEU even when every word is right."""
    return _bleu_and_length_ratio(predictions, references)[1]


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus chrF (character n-gram F-score, default settings), 0-100."""
    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def rouge_rows(predictions: Sequence[str], references: Sequence[str]) -> List[Dict[str, float]]:
    """Per-row ROUGE-1/2/L F1 (stemmed), 0-100."""
    _check_lengths(predictions, references)
    scorer = _rouge_scorer()
    rows = []
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(reference, prediction)  # rouge-score's order: (target, prediction)
        rows.append({name: 100.0 * scores[name].fmeasure for name in ROUGE_TYPES})
    return rows


def rouge(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """ROUGE-1/2/L F1 with stemming, averaged over rows, ×100."""
    rows = rouge_rows(predictions, references)
    if not rows:
        return {name: 0.0 for name in ROUGE_TYPES}
    return {name: sum(r[name] for r in rows) / len(rows) for name in ROUGE_TYPES}


def template_carry(predictions: Sequence[str], templates: Sequence[Optional[str]]) -> Optional[float]:
    """How much of its template a reply carries: mean ROUGE-L recall (stemmed, 0-100) of each
    template within its prediction, over the rows that have a template (None when none has one).
    100 means every template's words appear in order in its reply; a reply that ignores its
    template scores what it shares with it by chance."""
    _check_lengths(predictions, templates)
    pairs = [(prediction, template) for prediction, template in zip(predictions, templates) if template]
    if not pairs:
        return None
    scorer = _rouge_scorer()
    return 100.0 * sum(scorer.score(template, prediction)["rougeL"].recall for prediction, template in pairs) / len(pairs)


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n: unique n-grams / all n-grams over all texts (whitespace, lower-cased); 0 if none."""
    total = 0
    unique = set()
    for text in texts:
        tokens = text.lower().split()
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        unique.update(grams)
    return len(unique) / total if total else 0.0


def entity_recall(
    predictions: Sequence[str], references: Sequence[str], entity_values: Sequence[Optional[str]]
) -> Optional[float]:
    """Among rows whose reference contains the message's entity value, the share of predictions
    that contain it too (case-insensitive). None when no row qualifies."""
    _check_lengths(predictions, references)
    if len(entity_values) != len(predictions):
        raise ValueError("one entity value (or None) per row is required")
    relevant = hits = 0
    for prediction, reference, value in zip(predictions, references, entity_values):
        value = (value or "").strip().lower()
        if not value or value not in reference.lower():
            continue
        relevant += 1
        hits += value in prediction.lower()
    return hits / relevant if relevant else None


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def text_metrics(
    predictions: Sequence[str], references: Sequence[str], entity_values: Sequence[Optional[str]]
) -> Dict[str, Optional[float]]:
    """The text metrics shared by the model and the baselines."""
    bleu_score, ratio = _bleu_and_length_ratio(predictions, references)  # one corpus BLEU pass for both
    metrics: Dict[str, Optional[float]] = {
        "bleu": bleu_score,
        "chrf": chrf(predictions, references),
        "length_ratio": ratio,
    }
    metrics.update(rouge(predictions, references))
    metrics["distinct_1"] = distinct_n(predictions, 1)
    metrics["distinct_2"] = distinct_n(predictions, 2)
    metrics["entity_recall"] = entity_recall(predictions, references, entity_values)
    return metrics


def per_group(
    groups: Sequence[str], predictions: Sequence[str], references: Sequence[str]
) -> Dict[str, Dict[str, float]]:
    """BLEU and ROUGE-L per group (e.g. per intent): ``{group: {n, bleu, rougeL}}``."""
    _check_lengths(predictions, references)
    rouge_l = [r["rougeL"] for r in rouge_rows(predictions, references)]
    by_group: Dict[str, List[int]] = {}
    for index, group in enumerate(groups):
        by_group.setdefault(group, []).append(index)
    result = {}
    for group, indices in sorted(by_group.items()):
        preds = [predictions[i] for i in indices]
        refs = [references[i] for i in indices]
        result[group] = {
            "n": len(indices),
            "bleu": bleu(preds, refs),
            "rougeL": sum(rouge_l[i] for i in indices) / len(indices),
        }
    return result
