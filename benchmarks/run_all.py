"""``make bench``: run every benchmark (each in its own process) and print the summary table.

``python -m benchmarks.run_all [--only bench_generation,bench_training] [--quick]``

Each benchmark writes ``benchmarks/results/<name>.json``; the summary reads them back, so it
shows exactly what was recorded. ``--quick`` passes smaller sizes (a smoke run, not a result).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Dict, List

from benchmarks import common

BENCHMARKS = ("bench_generation", "bench_concurrency", "bench_overhead", "bench_training", "bench_memory")
QUICK_ARGS: Dict[str, List[str]] = {
    "bench_generation": ["--prompts", "3", "--bleu-rows", "6"],
    "bench_concurrency": ["--conversations", "8", "--turns", "1", "--rounds", "1"],
    "bench_overhead": ["--conversations", "5"],
    "bench_training": ["--examples", "24", "--rounds", "1"],
    "bench_memory": ["--turns", "1000", "--warmup-turns", "200", "--sample-every", "100"],
}
TIMEOUT_S = 1800


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    status: Dict[str, str] = {}
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        command = [sys.executable, "-m", f"benchmarks.{name}", *(QUICK_ARGS[name] if args.quick else [])]
        started = time.perf_counter()
        try:
            code = subprocess.run(command, env=env, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        status[name] = f"exit {code}, {time.perf_counter() - started:.0f} s"
    rows = []
    for name in names:
        path = common.RESULTS_DIR / f"{name}.json"
        if not path.is_file():
            rows.append([name, "-", "-", "no result", status[name]])
            continue
        result = json.loads(path.read_text())
        rows.append([name, result["ratio"], result["target"], "PASS" if result.get("passed") else "FAIL", status[name]])
    common.print_table("Benchmark summary (benchmarks/results/*.json)", ["benchmark", "ratio", "target", "verdict", "run"], rows)
    return 0 if all(r[3] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
