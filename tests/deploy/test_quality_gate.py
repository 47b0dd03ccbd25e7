"""scripts/quality_gate.py: the nightly job's pass/fail decision on `nebras evaluate`'s metrics.json."""
from __future__ import annotations

import json
import runpy
import subprocess
import sys

import pytest

from .conftest import ROOT

SCRIPT = ROOT / "scripts" / "quality_gate.py"
gate = runpy.run_path(str(SCRIPT))


def metrics(bleu=30.0, rouge=40.0, fallback=0.2, template=(25.0, 35.0), tfidf=(35.0, 45.0)) -> dict:
    return {
        "n": 100, "bleu": bleu, "rougeL": rouge, "chrf": 50.0, "fallback_rate": fallback, "perplexity": 20.0,
        "baselines": {"intent_template": {"bleu": template[0], "rougeL": template[1]},
                      "tfidf_retrieval": {"bleu": tfidf[0], "rougeL": tfidf[1]}},
    }


def run(tmp_path, data, *args, env=None):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return subprocess.run([sys.executable, str(SCRIPT), str(path), *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("bleu,rouge,beat,margin,expected", [
    (30.0, 40.0, ["intent_template"], 0.0, True),          # above the template on both
    (24.9, 40.0, ["intent_template"], 0.0, False),         # BLEU under the template
    (30.0, 34.0, ["intent_template"], 0.0, False),         # ROUGE-L under the template
    (25.0, 35.0, ["intent_template"], 0.0, True),          # equal is enough
    (25.5, 36.0, ["intent_template"], 1.0, False),         # but not with a margin
    (30.0, 40.0, ["intent_template", "tfidf_retrieval"], 0.0, False),  # retrieval is stronger
    (36.0, 46.0, ["intent_template", "tfidf_retrieval"], 0.0, True),
])
def test_model_against_baselines(bleu, rouge, beat, margin, expected):
    checks = gate["evaluate_gate"](metrics(bleu, rouge), beat=beat, margin=margin)
    assert len(checks) == 2 * len(beat)
    assert all(c.passed for c in checks) is expected


def test_absolute_floors_and_ceilings():
    checks = gate["evaluate_gate"](metrics(fallback=0.7), beat=[], minimums={"chrf": 45.0},
                                   maximums={"fallback_rate": 0.5, "perplexity": 25.0})
    verdicts = {c.name: c.passed for c in checks}
    assert verdicts == {"chrf": True, "fallback_rate": False, "perplexity": True}


@pytest.mark.parametrize("data,kwargs,message", [
    ({"bleu": 1.0, "rougeL": 1.0}, {}, "baseline 'intent_template' is not in the metrics"),
    (metrics(), {"metric_names": ["meteor"]}, "metric 'meteor' is missing from the model"),
    ({**metrics(), "bleu": "high"}, {}, "not a number"),
    ({**metrics(), "bleu": float("nan")}, {}, "not a number"),
    (metrics(), {"beat": [], "minimums": {}, "maximums": {}}, "nothing to check"),
])
def test_unusable_input_is_an_error_not_a_pass(data, kwargs, message):
    with pytest.raises(gate["GateInputError"], match=message):
        gate["evaluate_gate"](data, **kwargs)


def test_cli_passes_and_writes_the_step_summary_and_json(tmp_path):
    summary = tmp_path / "summary.md"
    out = tmp_path / "gate.json"
    env = {"GITHUB_STEP_SUMMARY": str(summary), "PATH": "/usr/bin:/bin"}
    result = run(tmp_path, metrics(), "--max", "fallback_rate=0.5", "--json", str(out), env=env)
    assert result.returncode == 0, result.stderr
    assert "[PASS] bleu vs intent_template: 30 >= 25" in result.stdout
    assert result.stdout.strip().endswith("quality gate: passed (n=100)")
    assert "Quality gate: passed" in summary.read_text() and "| fallback_rate | 0.2 | <= 0.5 | ✅ |" in summary.read_text()
    assert json.loads(out.read_text())["passed"] is True


def test_cli_fails_below_the_baseline(tmp_path):
    result = run(tmp_path, metrics(bleu=10.0), "--beat", "intent_template", "--beat", "tfidf_retrieval")
    assert result.returncode == 1
    assert "[FAIL] bleu vs intent_template: 10 >= 25" in result.stdout
    assert "FAILED (3 of 4 checks)" in result.stdout  # rougeL 40 >= template 35 passes


@pytest.mark.parametrize("content,args,message", [
    ("{not json", [], "not readable JSON"),
    ("[1, 2]", [], "does not hold a JSON object"),
    (json.dumps(metrics()), ["--max", "fallback_rate"], "expected METRIC=VALUE"),
    (json.dumps(metrics()), ["--min", "bleu=abc"], "is not a number"),
])
def test_cli_bad_input_exits_2_with_the_reason(tmp_path, content, args, message):
    result = run(tmp_path, content, *args)
    assert result.returncode == 2 and message in result.stderr


def test_cli_missing_file_exits_2(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nope.json")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "run `nebras evaluate --out DIR` first" in result.stderr


def test_gate_reads_what_nebras_evaluate_writes():
    """The gate's default metric and baseline names are keys `nebras evaluate` writes (issue 5 contract)."""
    source = "".join(p.read_text() for p in (ROOT / "nebras_bot" / "evaluation").glob("*.py"))
    for name in [*gate["DEFAULT_METRICS"], *gate["DEFAULT_BASELINES"], "tfidf_retrieval", "fallback_rate"]:
        assert f'"{name}"' in source, name
