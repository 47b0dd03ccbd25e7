"""What consensus reranking changed in one ``nebras evaluate`` run (docs/training.md).

An evaluation with ``NEBRAS_GEN_RERANK_SAMPLES=N`` keeps every candidate of every row in
``predictions.jsonl`` (candidate 0 is the greedy reply, the others sampled; each with the text that
would be sent or the reason it was refused). Greedy decoding is deterministic, so the same run also
says what greedy decoding alone would have sent. This script scores, against the references:

- ``greedy``: candidate 0 when it passed, else the templated reply (what ``rerank_samples: 0`` sends);
- ``reranked``: what was sent (the most typical candidate that passed);
- ``rescue``: candidate 0 when it passed, else what was sent (sampling only for a refused greedy
  reply: the choice among the samples is the same, since refused candidates are never compared);
- ``oracle``: the passed candidate with the best ROUGE-L against the reference (an upper bound for
  any way of choosing among these candidates, not a method);
- ``tfidf``: the TF-IDF retrieval baseline of the same run.

Usage::

    python scripts/rerank_report.py results/eval/<run> [--out results/eval/<run>/rerank.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nebras_bot.evaluation import textmetrics  # noqa: E402


def scores(predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    return {
        "bleu": round(textmetrics.bleu(predictions, references), 2),
        "rougeL": round(textmetrics.rouge(predictions, references)["rougeL"], 2),
        "chrf": round(textmetrics.chrf(predictions, references), 2),
        "length_ratio": round(textmetrics.length_ratio(predictions, references), 3),
    }


def _greedy(record: dict) -> str:
    first = record["candidates"][0]
    return first["text"] if first["text"] is not None else record["fallback_text"]


def _oracle(record: dict) -> str:
    passed = [c["text"] for c in record["candidates"] if c["text"] is not None]
    if not passed:
        return record["prediction"]
    rouge = textmetrics.rouge_rows(passed, [record["reference"]] * len(passed))
    return passed[max(range(len(passed)), key=lambda i: (rouge[i]["rougeL"], -i))]


def report(records: List[dict]) -> Dict[str, dict]:
    """The table for the records of one run (each must carry ``candidates``)."""
    missing = sum("candidates" not in r for r in records)
    if missing:
        raise ValueError(f"{missing} of {len(records)} rows have no candidates: evaluate with NEBRAS_GEN_RERANK_SAMPLES > 0")
    references = [r["reference"] for r in records]
    choices = {
        "greedy": [_greedy(r) for r in records],
        "reranked": [r["prediction"] for r in records],
        "rescue": [r["candidates"][0]["text"] if r["candidates"][0]["text"] is not None else r["prediction"]
                   for r in records],
        "oracle": [_oracle(r) for r in records],
        "tfidf": [r["baseline_tfidf_retrieval"] for r in records],
    }
    table = {name: scores(predictions, references) for name, predictions in choices.items()}
    table["greedy"]["fallback_rate"] = round(sum(r["candidates"][0]["text"] is None for r in records) / len(records), 3)
    table["reranked"]["fallback_rate"] = round(sum(bool(r["fallback"]) for r in records) / len(records), 3)
    table["rescue"]["fallback_rate"] = table["reranked"]["fallback_rate"]
    table["reranked"]["sampled_sent"] = sum(bool(r.get("chosen")) for r in records)
    table["reranked"]["latency_ms_p50"] = textmetrics.percentile([r["latency_ms"] for r in records], 50)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="an evaluation directory (predictions.jsonl)")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    path = args.run / "predictions.jsonl"
    if not path.is_file():
        parser.error(f"{path} not found")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        table = report(records)
    except ValueError as error:
        parser.error(str(error))
    print(f"{len(records)} rows")
    print(f"{'choice':<10}{'BLEU':>8}{'ROUGE-L':>10}{'chrF':>8}{'len':>7}  other")
    for name, values in table.items():
        other = {k: v for k, v in values.items() if k not in ("bleu", "rougeL", "chrf", "length_ratio")}
        print(f"{name:<10}{values['bleu']:>8.2f}{values['rougeL']:>10.2f}{values['chrf']:>8.2f}"
              f"{values['length_ratio']:>7.2f}  {other or ''}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(table, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
