#!/usr/bin/env python
"""Quality gate: fail (exit 1) when the evaluated model falls below its baselines or thresholds.

Reads the ``metrics.json`` that ``nebras evaluate --out DIR`` writes (the model's metrics at the top
level, the baselines computed in the same run under ``baselines``) and checks:

- ``--beat BASELINE`` (repeatable; default ``intent_template``): for every metric in
  ``--metrics`` (default ``bleu,rougeL``) the model scores at least the baseline's value plus
  ``--margin`` (points, default 0);
- ``--min METRIC=VALUE`` / ``--max METRIC=VALUE`` (repeatable): absolute floors and ceilings, e.g.
  ``--max fallback_rate=0.5 --max perplexity=60``.

Prints one line per check and a verdict; appends a Markdown table to ``$GITHUB_STEP_SUMMARY`` when
that variable is set (GitHub Actions); ``--json PATH`` writes the result for other tools.
Exit codes: 0 passed, 1 a check failed, 2 unusable input (missing/unreadable file, unknown
baseline or metric): a gate that cannot check does not pass.

    python scripts/quality_gate.py results/evaluation/metrics.json \\
        --beat intent_template --metrics bleu,rougeL --max fallback_rate=0.6
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

DEFAULT_BASELINES = ("intent_template",)
DEFAULT_METRICS = ("bleu", "rougeL")
SUMMARY_ENV = "GITHUB_STEP_SUMMARY"
EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class GateInputError(ValueError):
    """The metrics cannot be checked (missing file, metric or baseline)."""


@dataclass
class Check:
    name: str
    value: float
    bound: float
    kind: str  # ">=" or "<="
    passed: bool

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"[{verdict}] {self.name}: {self.value:.4g} {self.kind} {self.bound:.4g}"


def parse_bound(text: str) -> Tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise GateInputError(f"expected METRIC=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise GateInputError(f"{text!r}: {value!r} is not a number") from None


def _number(metrics: Mapping[str, object], name: str, where: str) -> float:
    if name not in metrics:
        raise GateInputError(f"metric {name!r} is missing from {where} (have: {', '.join(sorted(metrics))})")
    value = metrics[name]
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(float(value)):
        raise GateInputError(f"metric {name!r} of {where} is not a number: {value!r}")
    return float(value)


def evaluate_gate(
    metrics: Mapping[str, object],
    beat: Sequence[str] = DEFAULT_BASELINES,
    metric_names: Sequence[str] = DEFAULT_METRICS,
    margin: float = 0.0,
    minimums: Optional[Mapping[str, float]] = None,
    maximums: Optional[Mapping[str, float]] = None,
) -> List[Check]:
    """Every check of the gate; raises ``GateInputError`` when one cannot be made."""
    checks: List[Check] = []
    baselines = metrics.get("baselines") or {}
    if not isinstance(baselines, Mapping):
        raise GateInputError("'baselines' is not an object")
    for baseline in beat:
        if baseline not in baselines:
            raise GateInputError(f"baseline {baseline!r} is not in the metrics (have: {', '.join(sorted(baselines))})")
        for name in metric_names:
            value = _number(metrics, name, "the model")
            bound = _number(baselines[baseline], name, f"baseline {baseline!r}") + margin
            checks.append(Check(f"{name} vs {baseline}" + (f" + {margin:g}" if margin else ""), value, bound,
                                ">=", value >= bound))
    for name, bound in (minimums or {}).items():
        value = _number(metrics, name, "the model")
        checks.append(Check(name, value, bound, ">=", value >= bound))
    for name, bound in (maximums or {}).items():
        value = _number(metrics, name, "the model")
        checks.append(Check(name, value, bound, "<=", value <= bound))
    if not checks:
        raise GateInputError("the gate has nothing to check")
    return checks


def load_metrics(path: Path) -> Dict[str, object]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GateInputError(f"{path} does not exist (run `nebras evaluate --out DIR` first)") from None
    except (OSError, ValueError) as error:
        raise GateInputError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise GateInputError(f"{path} does not hold a JSON object")
    return data


def markdown(checks: Sequence[Check], source: Path) -> str:
    passed = all(c.passed for c in checks)
    rows = "\n".join(f"| {c.name} | {c.value:.4g} | {c.kind} {c.bound:.4g} | {'✅' if c.passed else '❌'} |"
                     for c in checks)
    return (f"### Quality gate: {'passed' if passed else 'FAILED'}\n\n`{source}`\n\n"
            f"| check | model | bound | |\n|---|---|---|---|\n{rows}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by `nebras evaluate`")
    parser.add_argument("--beat", action="append", default=None,
                        help=f"baseline the model must reach (repeatable; default {', '.join(DEFAULT_BASELINES)})")
    parser.add_argument("--metrics", dest="metric_names", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metrics compared with the baselines (default %(default)s)")
    parser.add_argument("--margin", type=float, default=0.0, help="points above the baseline required (default 0)")
    parser.add_argument("--min", dest="minimums", action="append", default=[], metavar="METRIC=VALUE")
    parser.add_argument("--max", dest="maximums", action="append", default=[], metavar="METRIC=VALUE")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="write the checks as JSON")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = load_metrics(args.metrics)
        checks = evaluate_gate(
            metrics,
            beat=args.beat if args.beat is not None else DEFAULT_BASELINES,
            metric_names=[m.strip() for m in args.metric_names.split(",") if m.strip()],
            margin=args.margin,
            minimums=dict(parse_bound(b) for b in args.minimums),
            maximums=dict(parse_bound(b) for b in args.maximums),
        )
    except GateInputError as error:
        print(f"quality gate: cannot check: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for check in checks:
        print(check.line())
    passed = all(c.passed for c in checks)
    failed = sum(not c.passed for c in checks)
    print(f"quality gate: {'passed' if passed else f'FAILED ({failed} of {len(checks)} checks)'} (n={metrics.get('n')})")
    summary = os.environ.get(SUMMARY_ENV)
    if summary:
        with open(summary, "a", encoding="utf-8") as out:
            out.write(markdown(checks, args.metrics))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"passed": passed, "checks": [asdict(c) for c in checks]}, indent=2))
    return EXIT_PASS if passed else EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
