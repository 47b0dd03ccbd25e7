"""Recipe comparison (docs/training.md, "Choosing the shipped default by measurement").

Trains every ``compare-*`` recipe on the same prepared dataset under the same CPU budget
(``budget_clock: process``: CPU seconds of the training process, so a busy shared machine does not
change what each run gets), then scores each model with ``nebras evaluate`` on the same stratified
validation subset, and writes a JSON + Markdown table (model vs. the TF-IDF retrieval baseline that
``nebras evaluate`` computes in the same run).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/compare_recipes.py \
        --minutes 6 --rows 100 --out results/compare

Runs of one invocation are sequential (``--recipes`` picks a subset, so two lanes can share the
machine's idle CPU; the process-time budget keeps them comparable); a finished model (``models/nlg/<version>``) or evaluation
(``<out>/<recipe>/metrics.json``) is reused, so the script can be re-run after an interruption.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
RECIPES = (
    "compare-gpt2-retrieval",
    "compare-gpt2",
    "compare-smollm2-lora-retrieval",
    "compare-smollm2-lora",
)
TABLE_KEYS = ("bleu", "rougeL", "chrf", "perplexity", "entity_recall", "fallback_rate", "latency_ms_p50")


def stratified_subset(source: Path, target: Path, rows: int, seed: int) -> int:
    """``rows`` rows of ``source`` (a Bitext-format CSV), the same share of every intent."""
    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        data = list(reader)
    by_intent: Dict[str, List[dict]] = defaultdict(list)
    for row in data:
        by_intent[row["intent"]].append(row)
    rng = random.Random(seed)
    share = min(1.0, rows / max(1, len(data)))
    chosen: List[dict] = []
    for intent in sorted(by_intent):
        group = by_intent[intent]
        rng.shuffle(group)
        chosen += group[: max(1, round(len(group) * share))]
    rng.shuffle(chosen)
    chosen = chosen[:rows]
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(chosen)
    return len(chosen)


def run(command: List[str], log: Path) -> int:
    print(f"$ {' '.join(command)}  (log: {log})", flush=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        return subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="prepared dataset directory (default: newest under models/datasets)")
    parser.add_argument("--minutes", type=float, default=6.0, help="CPU minutes of training per recipe")
    parser.add_argument("--rows", type=int, default=100, help="validation rows scored per model")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "compare")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES))
    parser.add_argument("--timeout", type=float, default=600.0, help="per-reply generation limit in evaluation (s)")
    parser.add_argument("--eval-limit", type=int, help="score only the first N subset rows (slow models); "
                        "written to <out>/<recipe>@<N>")
    parser.add_argument("--wait", action="store_true",
                        help="when <version>.partial exists, wait for that (running) training instead of restarting it")
    args = parser.parse_args()

    from nebras_bot.data.prepare import latest_dataset

    data = args.data or latest_dataset()
    args.out.mkdir(parents=True, exist_ok=True)
    subset = args.out / f"validation-{args.rows}.csv"
    n = stratified_subset(data / "validation.csv", subset, args.rows, args.seed)
    print(f"dataset {data.name}; {n} validation rows in {subset}", flush=True)
    nebras = str(Path(sys.executable).parent / "nebras")
    for recipe in args.recipes:
        version = f"{recipe}-{data.name}-{args.minutes:g}cpumin"
        model = ROOT / "models" / "nlg" / version
        log = args.out / f"{recipe}.log"
        started = time.time()
        partial = model.with_name(model.name + ".partial")
        while args.wait and partial.is_dir() and not model.is_dir():
            time.sleep(30)
        if not model.is_dir():
            if partial.is_dir():
                import shutil

                shutil.rmtree(partial)
            code = run([nebras, "train", "--recipe", recipe, "--data", str(data), "--max-minutes", str(args.minutes),
                        "--version", version, "--no-progress"], log)
            if code != 0:
                print(f"{recipe}: training failed ({code}), see {log}", flush=True)
                continue
        evaluation = args.out / (f"{recipe}@{args.eval_limit}" if args.eval_limit else recipe)
        if not (evaluation / "metrics.json").is_file():
            limit = ["--limit", str(args.eval_limit)] if args.eval_limit else []
            code = run([nebras, "evaluate", "--model", str(model), "--data", str(subset), "--train",
                        str(data / "train.csv"), "--out", str(evaluation), "--timeout", str(args.timeout),
                        "--no-progress", *limit], log)
            if code != 0:
                print(f"{recipe}: evaluation failed ({code}), see {log}", flush=True)
                continue
        metrics = json.loads((evaluation / "metrics.json").read_text())
        print(f"{recipe}: done in {time.time() - started:.0f} s wall; bleu={metrics.get('bleu')} "
              f"rougeL={metrics.get('rougeL')} (tfidf bleu={metrics['baselines']['tfidf_retrieval'].get('bleu')})",
              flush=True)
        write_table(args, data, n)
    return 0


def _evaluations(out: Path) -> List[str]:
    """Evaluation sizes present under ``out``: "" (the whole subset) and "@N" (first N rows)."""
    sizes = {""}
    for path in out.glob("*@*/metrics.json"):
        sizes.add("@" + path.parent.name.split("@", 1)[1])
    return sorted(sizes)


def write_table(args: argparse.Namespace, data: Path, n: int) -> None:
    """The table over every recipe evaluated so far (several lanes may share ``--out``)."""
    tables, everything = [], {}
    for size in _evaluations(args.out):
        results = {}
        for recipe in RECIPES:
            version = f"{recipe}-{data.name}-{args.minutes:g}cpumin"
            model, evaluation = ROOT / "models" / "nlg" / version, args.out / f"{recipe}{size}"
            if (evaluation / "metrics.json").is_file() and (model / "metrics.json").is_file():
                results[recipe] = {
                    "version": version,
                    "training": json.loads((model / "metrics.json").read_text()),
                    "metrics": json.loads((evaluation / "metrics.json").read_text()),
                }
        everything[size or "all"] = results
        rows = size[1:] if size else str(n)
        tables.append(_table(args, data, rows, results))
    (args.out / "comparison.json").write_text(json.dumps(everything, indent=2) + "\n", encoding="utf-8")
    (args.out / "comparison.md").write_text("\n\n".join(tables), encoding="utf-8")


def _table(args: argparse.Namespace, data: Path, rows: str, results: dict) -> str:
    lines = [
        f"Dataset {data.name}; {rows} stratified validation rows; {args.minutes:g} CPU-minutes of training each "
        "(budget_clock: process, 1 torch thread).",
        "",
        "| recipe | steps | epochs | train CPU min | wall min | val loss | BLEU | ROUGE-L | chrF | perplexity "
        "| entity recall | fallback | p50 ms | TF-IDF BLEU | TF-IDF ROUGE-L | BLEU vs TF-IDF | ROUGE-L vs TF-IDF |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for recipe, row in results.items():
        m, t = row["metrics"], row["training"]
        base = m["baselines"]["tfidf_retrieval"]

        def ratio(key: str) -> str:
            if not base.get(key) or m.get(key) is None:
                return "-"
            return f"{100 * (m[key] / base[key] - 1):+.0f}%"

        def fmt(value, digits=2) -> str:
            return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"

        lines.append(
            f"| {recipe} | {t.get('steps')} | {fmt(t.get('epochs'))} | {fmt(t.get('train_minutes'))} | "
            f"{fmt(t.get('wall_minutes'))} | {fmt(t.get('val_loss'), 3)} | {fmt(m.get('bleu'))} | {fmt(m.get('rougeL'))} | "
            f"{fmt(m.get('chrf'))} | {fmt(m.get('perplexity'))} | {fmt(m.get('entity_recall'))} | "
            f"{fmt(m.get('fallback_rate'))} | {fmt(m.get('latency_ms_p50'), 0)} | {fmt(base.get('bleu'))} | "
            f"{fmt(base.get('rougeL'))} | {ratio('bleu')} | {ratio('rougeL')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
