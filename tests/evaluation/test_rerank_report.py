"""``nebras evaluate`` keeps every reranking candidate; scripts/rerank_report.py scores greedy vs reranked vs oracle."""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import pytest

from nebras_bot.evaluation.evaluate import run_evaluation
from nebras_bot.evaluation.settings import PREDICTIONS_FILE

from .conftest import DATA_ROWS, DOMAIN_YAML, TRAIN_ROWS, write_csv

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rerank_report.py"
report = runpy.run_path(str(SCRIPT))


class RerankingReplier:
    """Candidate 0 (greedy) is refused on odd rows; a sampled candidate equal to the reference is sent."""

    def __init__(self) -> None:
        self.calls = 0

    def reply(self, context, template, values):
        from nebras_bot.generation.generator import GenerationResult

        row = DATA_ROWS[self.calls]
        self.calls += 1
        greedy_ok = self.calls % 2 == 0
        greedy = {"raw": "Thanks for asking.", "text": "Thanks for asking." if greedy_ok else None,
                  "reason": None if greedy_ok else "unknown_number: 7", "sampled": False}
        best = {"raw": "x", "text": row["response"], "reason": None, "sampled": True}
        return GenerationResult(text=row["response"], generated=True, candidates=[greedy, best], chosen=1)


@pytest.fixture()
def run(tmp_path) -> Path:
    (tmp_path / "domain.yml").write_text(DOMAIN_YAML)
    out = tmp_path / "out"
    run_evaluation(model="unused", data=write_csv(tmp_path / "data.csv", DATA_ROWS),
                   train=write_csv(tmp_path / "train.csv", TRAIN_ROWS), out=out, domain=tmp_path / "domain.yml",
                   generator=RerankingReplier(), show_progress=False)
    return out


def test_evaluate_keeps_the_candidates_and_the_fallback_text(run):
    records = [json.loads(line) for line in (run / PREDICTIONS_FILE).read_text().splitlines()]
    assert all(len(r["candidates"]) == 2 and r["chosen"] == 1 for r in records)
    assert all(r["fallback_text"] for r in records)


def test_report_scores_greedy_reranked_and_oracle(run, tmp_path, capsys):
    records = [json.loads(line) for line in (run / PREDICTIONS_FILE).read_text().splitlines()]
    table = report["report"](records)
    assert table["reranked"]["sampled_sent"] == len(records)
    assert table["oracle"]["rougeL"] == table["reranked"]["rougeL"] > 50.0  # the sent candidate is the reply
    assert table["greedy"]["bleu"] < table["rescue"]["bleu"] < table["reranked"]["bleu"]  # rescue: only odd rows
    odd = sum(1 for i in range(len(records)) if i % 2 == 0)
    assert table["greedy"]["fallback_rate"] == pytest.approx(round(odd / len(records), 3))
    assert table["reranked"]["fallback_rate"] == 0.0
    assert report["main"]([str(run), "--out", str(tmp_path / "t.json")]) == 0
    assert "reranked" in capsys.readouterr().out and json.loads((tmp_path / "t.json").read_text())["oracle"]


def test_report_refuses_a_run_without_candidates(run):
    records = [json.loads(line) for line in (run / PREDICTIONS_FILE).read_text().splitlines()]
    records[0].pop("candidates")
    with pytest.raises(ValueError, match="NEBRAS_GEN_RERANK_SAMPLES"):
        report["report"](records)
